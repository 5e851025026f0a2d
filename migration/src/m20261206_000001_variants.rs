use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    VariantsState,
    Variants,
    VariantsFailureCode,
}

#[derive(DeriveIden)]
enum VariantJobs {
    Table,
    UploadId,
    State,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    Lease,
    LastError,
    CreatedAt,
    UpdatedAt,
}

/// Image variants: each completed upload's variants state and what was made, and one job
/// per upload, written in its completion's transaction and claimed with a lease.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            string_null(Uploads::VariantsState),
            text_null(Uploads::Variants),
            string_null(Uploads::VariantsFailureCode),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Uploads::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(VariantJobs::Table)
                    .col(uuid(VariantJobs::UploadId).primary_key())
                    .col(string(VariantJobs::State))
                    .col(integer(VariantJobs::Attempts).default(0))
                    .col(timestamp_with_time_zone(VariantJobs::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(VariantJobs::LockedUntil))
                    .col(uuid_null(VariantJobs::Lease))
                    .col(string_null(VariantJobs::LastError))
                    .col(timestamp_with_time_zone(VariantJobs::CreatedAt))
                    .col(timestamp_with_time_zone(VariantJobs::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("variant_jobs_due")
                    .table(VariantJobs::Table)
                    .col(VariantJobs::State)
                    .col(VariantJobs::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(VariantJobs::Table).to_owned())
            .await?;
        for column in [
            Uploads::VariantsFailureCode,
            Uploads::Variants,
            Uploads::VariantsState,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Uploads::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
