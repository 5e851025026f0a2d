use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Id,
    State,
    ChecksumSha256,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UploadCounters {
    Table,
    State,
    Shard,
    Uploads,
    Bytes,
}

#[derive(DeriveIden)]
enum UploadHourly {
    Table,
    Hour,
    Shard,
    Completed,
    Failed,
    CompletedBytes,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Detail,
}

/// What operators search by, newest first (each filter alone, and with a date range, is a
/// range scan of an index); the counters and hourly
/// rollup the state-change seam keeps, so stats never count the table; and the audit log.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // image_id, alone or with a state, is served by the lookups' index (image_id,
        // state, uploaded_at, id): an image_id's rows are few, and one index fewer keeps
        // issuing fast. Only uploads that declared a checksum enter the SHA-256 index.
        let searches: [(&str, Option<Uploads>); 3] = [
            ("idx_uploads_created_id", None),
            ("idx_uploads_state_created_id", Some(Uploads::State)),
            (
                "idx_uploads_sha256_created_id",
                Some(Uploads::ChecksumSha256),
            ),
        ];
        for (name, first) in searches {
            let mut index = Index::create();
            index.name(name).table(Uploads::Table);
            if let Some(column) = first {
                index.col(column);
            }
            index.col(Uploads::CreatedAt).col(Uploads::Id);
            if name == "idx_uploads_sha256_created_id" {
                index.and_where(Expr::col(Uploads::ChecksumSha256).is_not_null());
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UploadCounters::Table)
                    .col(string(UploadCounters::State))
                    .col(integer(UploadCounters::Shard))
                    .col(big_integer(UploadCounters::Uploads).default(0))
                    .col(big_integer(UploadCounters::Bytes).default(0))
                    .primary_key(
                        Index::create()
                            .col(UploadCounters::State)
                            .col(UploadCounters::Shard),
                    )
                    .to_owned(),
            )
            .await?;
        // The counters start from what the table holds.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO upload_counters (state, shard, uploads, bytes) \
                 SELECT state, 0, COUNT(*), COALESCE(SUM(COALESCE(file_size, declared_size)), 0) \
                 FROM uploads GROUP BY state",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UploadHourly::Table)
                    .col(big_integer(UploadHourly::Hour))
                    .col(integer(UploadHourly::Shard))
                    .col(big_integer(UploadHourly::Completed).default(0))
                    .col(big_integer(UploadHourly::Failed).default(0))
                    .col(big_integer(UploadHourly::CompletedBytes).default(0))
                    .primary_key(
                        Index::create()
                            .col(UploadHourly::Hour)
                            .col(UploadHourly::Shard),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(uuid(AuditLog::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(string(AuditLog::Actor))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::Target))
                    .col(text_null(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_at_id")
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            UploadHourly::Table.into_iden(),
            UploadCounters::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for name in [
            "idx_uploads_created_id",
            "idx_uploads_state_created_id",
            "idx_uploads_sha256_created_id",
        ] {
            manager
                .drop_index(Index::drop().name(name).table(Uploads::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
