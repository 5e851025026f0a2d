//! Lookups: one upload, an image_id's completed uploads page by page, and its newest.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ImagePage, Upload, UploadError, UploadService, UploadState};
use crate::db::UploadRow;
use crate::domain::ImageId;

impl UploadService {
    pub async fn get(&self, id: Uuid) -> Result<Upload, UploadError> {
        let row = self.row(id).await?;
        self.view(row).await
    }

    /// Completed uploads of one image_id, newest first.
    pub async fn list(
        &self,
        image_id: &ImageId,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<ImagePage, UploadError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let rows = self
            .db
            .completed_for_image(image_id.as_str(), after, limit + 1)
            .await?;
        let (rows, next_cursor) = paged(rows, limit, |row| {
            encode_cursor(
                row.uploaded_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                row.id,
            )
        });
        let mut images = Vec::with_capacity(rows.len());
        for row in rows {
            images.push(self.view(row).await?);
        }
        Ok(ImagePage {
            images,
            next_cursor,
        })
    }

    /// The newest completed upload of one image_id.
    pub async fn latest(&self, image_id: &ImageId) -> Result<Upload, UploadError> {
        let row = self
            .db
            .latest_completed(image_id.as_str())
            .await?
            .ok_or(UploadError::NoImage)?;
        self.view(row).await
    }

    /// A completed upload's URLs (its object's, its variants') are made fresh, so
    /// presigned GETs never go stale.
    pub(super) async fn view(&self, row: UploadRow) -> Result<Upload, UploadError> {
        let (s3_url, variants) = match row.state {
            UploadState::Completed => (
                Some(self.storage.object_url(&row.object_key).await?),
                self.variant_files(&row).await?,
            ),
            UploadState::Pending
            | UploadState::Failed
            | UploadState::Expired
            | UploadState::Aborted
            | UploadState::Deleted => (None, None),
        };
        Ok(Upload::from_row(row, s3_url, variants))
    }
}

/// The first `limit` of `rows` (read one over `limit`), and the cursor after the last of
/// them when there are more.
pub(super) fn paged<T>(
    mut rows: Vec<T>,
    limit: u64,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() as u64 <= limit {
        return (rows, None);
    }
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = rows.last().map(cursor_of);
    (rows, next)
}

/// A page cursor after the row at `(at, id)`.
pub(super) fn encode_cursor(at: OffsetDateTime, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.unix_timestamp_nanos()))
}

pub(super) fn decode_cursor(raw: &str) -> Result<(OffsetDateTime, Uuid), UploadError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| UploadError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| UploadError::InvalidCursor)?;
    let (at, id) = text.split_once(':').ok_or(UploadError::InvalidCursor)?;
    let at = at
        .parse::<i128>()
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .ok_or(UploadError::InvalidCursor)?;
    let id = Uuid::parse_str(id).map_err(|_| UploadError::InvalidCursor)?;
    Ok((at, id))
}
