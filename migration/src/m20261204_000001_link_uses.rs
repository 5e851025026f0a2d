use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LinkUses {
    Table,
    LinkId,
    Used,
}

/// A counter per upload link, so a link's `max_uploads` is reserved by one conditional
/// statement (parallel requests cannot all see the last free use), starting from what the
/// links have already made.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LinkUses::Table)
                    .col(uuid(LinkUses::LinkId).primary_key())
                    .col(big_integer(LinkUses::Used).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO link_uses (link_id, used) \
                 SELECT link_id, COUNT(*) FROM uploads \
                 WHERE link_id IS NOT NULL AND state IN ('pending', 'completed') \
                 GROUP BY link_id",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LinkUses::Table).to_owned())
            .await
    }
}
