use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    ImageId,
    State,
    UploadedAt,
    Id,
}

const OLD: &str = "idx_uploads_image_state_uploaded";
const NEW: &str = "idx_uploads_image_state_uploaded_id";

/// Lookups order by `uploaded_at` and then `id`: with `id` in the index the newest
/// completed upload is the index's last entry, with no sort of ties on every lookup.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(index(NEW, true).if_not_exists().to_owned())
            .await?;
        manager.drop_index(Index::drop().name(OLD).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(index(OLD, false).if_not_exists().to_owned())
            .await?;
        manager.drop_index(Index::drop().name(NEW).to_owned()).await
    }
}

fn index(name: &str, with_id: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index
        .name(name)
        .table(Uploads::Table)
        .col(Uploads::ImageId)
        .col(Uploads::State)
        .col(Uploads::UploadedAt);
    if with_id {
        index.col(Uploads::Id);
    }
    index.to_owned()
}
