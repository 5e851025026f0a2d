use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Uploads {
    Table,
    Id,
    ImageId,
    State,
    Method,
    ObjectKey,
    OriginalFilename,
    ContentType,
    DeclaredSize,
    FileSize,
    ChecksumSha256,
    Etag,
    Width,
    Height,
    Metadata,
    S3Url,
    MultipartUploadId,
    PartSize,
    PartCount,
    FailureCode,
    CreatedAt,
    ExpiresAt,
    UploadedAt,
    UpdatedAt,
}

/// The seed's operators query `images`; it is a view over completed uploads so it can never
/// disagree with the lifecycle table. Plain SQL that SQLite and Postgres both accept.
const CREATE_IMAGES_VIEW: &str = "CREATE VIEW images AS \
    SELECT image_id AS id, s3_url, object_key AS s3_key, original_filename, file_size, \
    content_type, uploaded_at, metadata \
    FROM uploads WHERE state = 'completed'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on SQLite too, so a failed first start can simply be retried.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Uploads::Table)
                    .if_not_exists()
                    .col(uuid(Uploads::Id).primary_key())
                    .col(string_len(Uploads::ImageId, 100))
                    .col(string_len(Uploads::State, 16))
                    .col(string_len(Uploads::Method, 16))
                    .col(string_uniq(Uploads::ObjectKey))
                    .col(string(Uploads::OriginalFilename))
                    .col(string(Uploads::ContentType))
                    .col(big_integer(Uploads::DeclaredSize))
                    .col(big_integer_null(Uploads::FileSize))
                    .col(string_null(Uploads::ChecksumSha256))
                    .col(string_null(Uploads::Etag))
                    .col(integer_null(Uploads::Width))
                    .col(integer_null(Uploads::Height))
                    .col(text_null(Uploads::Metadata))
                    .col(text_null(Uploads::S3Url))
                    .col(text_null(Uploads::MultipartUploadId))
                    .col(big_integer_null(Uploads::PartSize))
                    .col(integer_null(Uploads::PartCount))
                    .col(string_null(Uploads::FailureCode))
                    .col(timestamp_with_time_zone(Uploads::CreatedAt))
                    .col(timestamp_with_time_zone(Uploads::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Uploads::UploadedAt))
                    .col(timestamp_with_time_zone(Uploads::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Lookups: the newest completed uploads of one image_id.
        manager
            .create_index(
                Index::create()
                    .name("idx_uploads_image_state_uploaded")
                    .table(Uploads::Table)
                    .col(Uploads::ImageId)
                    .col(Uploads::State)
                    .col(Uploads::UploadedAt)
                    .to_owned(),
            )
            .await?;
        // The sweeper: pending uploads by expiry.
        manager
            .create_index(
                Index::create()
                    .name("idx_uploads_state_expires")
                    .table(Uploads::Table)
                    .col(Uploads::State)
                    .col(Uploads::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // A database file of the Flask service has an `images` table: keep its rows as
        // completed uploads, and its table beside them under another name.
        let seed_table = manager.has_table("images").await?;
        if seed_table {
            manager
                .rename_table(
                    Table::rename()
                        .table(Alias::new("images"), Alias::new("images_seed"))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(CREATE_IMAGES_VIEW)
            .await?;
        if seed_table {
            crate::seed_import::import(manager.get_connection()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP VIEW IF EXISTS images")
            .await?;
        manager
            .drop_table(Table::drop().table(Uploads::Table).to_owned())
            .await
    }
}
