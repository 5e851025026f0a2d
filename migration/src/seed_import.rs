//! Rows of the Flask service's `images` table become completed uploads, so lookups and the
//! `images` view show them after the switch.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

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
    Metadata,
    S3Url,
    CreatedAt,
    ExpiresAt,
    UploadedAt,
    UpdatedAt,
}

pub async fn import<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, s3_url, s3_key, original_filename, file_size, content_type, \
             CAST(uploaded_at AS TEXT) AS uploaded_at, metadata FROM images_seed",
        ))
        .await?;
    for row in rows {
        let text = |col: &str| row.try_get::<Option<String>>("", col).ok().flatten();
        let (Some(image_id), Some(key)) = (text("id"), text("s3_key")) else {
            continue;
        };
        let size = row
            .try_get::<Option<i64>>("", "file_size")
            .ok()
            .flatten()
            .unwrap_or(0);
        let uploaded_at = text("uploaded_at")
            .as_deref()
            .and_then(parse_seed_time)
            .unwrap_or_else(OffsetDateTime::now_utc);
        let insert = Query::insert()
            .into_table(Uploads::Table)
            .columns([
                Uploads::Id,
                Uploads::ImageId,
                Uploads::State,
                Uploads::Method,
                Uploads::ObjectKey,
                Uploads::OriginalFilename,
                Uploads::ContentType,
                Uploads::DeclaredSize,
                Uploads::FileSize,
                Uploads::Metadata,
                Uploads::S3Url,
                Uploads::CreatedAt,
                Uploads::ExpiresAt,
                Uploads::UploadedAt,
                Uploads::UpdatedAt,
            ])
            .values_panic([
                Uuid::now_v7().into(),
                image_id.into(),
                "completed".into(),
                "LEGACY".into(),
                key.into(),
                text("original_filename").unwrap_or_default().into(),
                text("content_type")
                    .unwrap_or_else(|| "application/octet-stream".to_owned())
                    .into(),
                size.into(),
                Some(size).into(),
                text("metadata").into(),
                text("s3_url").into(),
                uploaded_at.into(),
                uploaded_at.into(),
                Some(uploaded_at).into(),
                uploaded_at.into(),
            ])
            .on_conflict(
                OnConflict::column(Uploads::ObjectKey)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// The seed stored `datetime.utcnow()`: `2025-10-26 10:30:00.123456` or with a `T`.
fn parse_seed_time(raw: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(at.to_offset(time::UtcOffset::UTC));
    }
    let normalized = raw.trim().replacen('T', " ", 1);
    let with_fraction =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let without = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    PrimitiveDateTime::parse(&normalized, with_fraction)
        .or_else(|_| PrimitiveDateTime::parse(&normalized, without))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}
