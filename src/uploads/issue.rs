//! Issuing: a request is parsed into validated values, then signed and recorded as pending.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    IssuedUpload, Upload, UploadError, UploadMethod, UploadService, UploadState, object_key,
    staging_key, to_i64,
};
use crate::db::{self, NewUpload};
use crate::domain::{ImageFormat, ImageId, InputError, Metadata, OriginalFilename, Sha256Checksum};
use crate::metrics;
use upload_broker_types::CreateUploadRequest;

/// A file a client wants to upload directly, parsed: once one exists, it is valid.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub image_id: ImageId,
    pub filename: OriginalFilename,
    pub format: ImageFormat,
    pub size: u64,
    pub checksum: Option<Sha256Checksum>,
    /// Every part of a multipart upload carries its own SHA-256 (`checksum_algorithm`).
    pub part_checksums: bool,
    pub metadata: Option<Metadata>,
}

impl UploadService {
    /// Checks every field, in the order the refusals have always come: image_id, type,
    /// file name, size, checksums, metadata.
    pub fn parse_upload(&self, raw: &CreateUploadRequest) -> Result<UploadRequest, UploadError> {
        let image_id = ImageId::parse_new(&raw.image_id)?;
        let format = ImageFormat::from_mime(&raw.content_type)?;
        let filename = OriginalFilename::clean(&raw.filename)?;
        match filename.format()? {
            claimed if claimed == format => {}
            _ => return Err(InputError::ExtensionMismatch.into()),
        }
        let size = u64::try_from(raw.size)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or(UploadError::EmptyFile)?;
        if size > self.config.limits.max_upload_size {
            return Err(UploadError::TooLarge {
                limit: self.config.limits.max_upload_size,
            });
        }
        let part_checksums = match raw.checksum_algorithm.as_deref() {
            None => false,
            Some(alg) if alg.eq_ignore_ascii_case("SHA256") => true,
            Some(_) => {
                return Err(UploadError::InvalidParts(
                    "checksum_algorithm must be SHA256".to_owned(),
                ));
            }
        };
        let checksum = raw
            .checksum_sha256
            .as_deref()
            .map(Sha256Checksum::parse)
            .transpose()?;
        let metadata = raw
            .metadata
            .as_ref()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect()
            })
            .map(Metadata::parse)
            .transpose()?
            .filter(|m| !m.is_empty());
        Ok(UploadRequest {
            image_id,
            filename,
            format,
            size,
            checksum,
            part_checksums,
            metadata,
        })
    }

    /// Signs a PUT for exactly these bytes (or starts a multipart upload) and records the
    /// upload as pending, made with `link_id` when a link authorized it. Returning means the
    /// pending row is committed.
    pub async fn issue(
        &self,
        request: UploadRequest,
        link_id: Option<Uuid>,
    ) -> Result<IssuedUpload, UploadError> {
        self.keeping_link(link_id, self.sign_and_record(request, link_id))
            .await
    }

    async fn sign_and_record(
        &self,
        request: UploadRequest,
        link_id: Option<Uuid>,
    ) -> Result<IssuedUpload, UploadError> {
        let (image_id, format, size) = (&request.image_id, request.format, request.size);
        self.check_pending_caps(image_id, size).await?;

        let id = Uuid::now_v7();
        let key = object_key(image_id, id, format);
        let now = OffsetDateTime::now_utc();
        let mut fields = NewUpload {
            id,
            image_id: image_id.to_string(),
            method: UploadMethod::Put,
            object_key: key.clone(),
            original_filename: request.filename.as_str().to_owned(),
            content_type: format.mime().to_owned(),
            declared_size: to_i64(size),
            checksum_sha256: request.checksum.as_ref().map(|c| c.as_str().to_owned()),
            metadata: request.metadata.map(|m| m.to_json()),
            multipart_upload_id: None,
            part_size: None,
            part_count: None,
            checksum_algorithm: None,
            expires_at: self.url_expiry(now),
            link_id,
        };
        let put = if let Some(plan) = self.part_plan(size) {
            let upload_id = self
                .storage
                .create_multipart(&key, format.mime(), request.part_checksums)
                .await?;
            fields.method = UploadMethod::Multipart;
            fields.multipart_upload_id = Some(upload_id);
            fields.part_size = Some(to_i64(plan.part_size));
            fields.part_count = Some(plan.part_count);
            fields.checksum_algorithm = request.part_checksums.then(|| "SHA256".to_owned());
            fields.expires_at = now + self.config.limits.multipart_expires;
            None
        } else {
            let target = staging_key(&key);
            Some(
                self.storage
                    .presign_put(&target, format.mime(), size, request.checksum.as_ref())
                    .await?,
            )
        };
        let s3_upload = fields.multipart_upload_id.clone();
        let row = match self.db.insert(db::new_pending(fields)).await {
            Ok(row) => row,
            Err(err) => {
                // No row, so no multipart upload either.
                if let Some(upload_id) = s3_upload {
                    let _ = self.storage.abort_multipart(&key, &upload_id).await;
                }
                return Err(err.into());
            }
        };
        tracing::info!(upload_id = %id, image_id = %image_id, state = %UploadState::Pending, method = %row.method, size, "upload issued");
        metrics::upload_transition(UploadState::Pending);
        Ok(IssuedUpload {
            upload: Upload::from_row(row, None, None),
            put,
        })
    }

    /// `MAX_PENDING_PER_IMAGE` and `MAX_PENDING_BYTES_PER_IMAGE`: a new upload of `size`
    /// bytes must fit beside the image_id's pending ones.
    pub(super) async fn check_pending_caps(
        &self,
        image_id: &ImageId,
        size: u64,
    ) -> Result<(), UploadError> {
        let (max_uploads, max_bytes) = (
            self.config.limits.max_pending_per_image,
            self.config.limits.max_pending_bytes_per_image,
        );
        if max_uploads == 0 && max_bytes == 0 {
            return Ok(());
        }
        let (uploads, bytes) = self.db.pending_usage(image_id.as_str()).await?;
        if max_uploads > 0 && uploads >= max_uploads {
            return Err(UploadError::PendingCap {
                code: "too_many_pending",
                what: format!("{uploads} uploads"),
            });
        }
        if max_bytes > 0 && bytes.saturating_add(size) > max_bytes {
            return Err(UploadError::PendingCap {
                code: "pending_bytes_exceeded",
                what: format!("{bytes} bytes"),
            });
        }
        Ok(())
    }
}
