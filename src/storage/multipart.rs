//! S3 multipart uploads: create, upload or presign parts, list them, complete, abort.

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

use super::error::{classify, classify_multipart};
use super::objects::send_unsigned;
use super::presign::{SignedRequest, Unsigned};
use super::{Payload, Storage, StorageError};
use crate::domain::Sha256Checksum;

/// One part of a multipart upload, as ListParts reports it.
#[derive(Debug, Clone)]
pub struct StoredPart {
    pub part_number: i32,
    pub etag: String,
    pub size: u64,
    pub checksum_sha256: Option<String>,
}

impl Storage {
    /// Starts an S3 multipart upload; returns its upload id.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksums: bool,
    ) -> Result<String, StorageError> {
        self.bounded(async {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .set_checksum_algorithm(part_checksums.then_some(ChecksumAlgorithm::Sha256))
                .send()
                .await
                .map_err(classify)?;
            out.upload_id().map(str::to_owned).ok_or_else(|| {
                StorageError::Refused("CreateMultipartUpload returned no upload id".to_owned())
            })
        })
        .await
    }

    /// Uploads one part (not signed, as `put`); returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Payload,
    ) -> Result<String, StorageError> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number);
        let out = send_unsigned!(request, body)?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Refused("UploadPart returned no ETag".to_owned()))
    }

    /// A presigned UploadPart URL that accepts exactly `size` bytes (and, when given, only
    /// bytes with this SHA-256).
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        size: u64,
        checksum: Option<&Sha256Checksum>,
    ) -> Result<SignedRequest, StorageError> {
        let length = size.to_string();
        let headers = upload_part_headers(&length, checksum);
        let part = part_number.to_string();
        self.presign_upload(&Unsigned {
            method: "PUT",
            key,
            query: &[
                ("partNumber", part.as_str()),
                ("uploadId", upload_id),
                ("x-id", "UploadPart"),
            ],
            headers: &headers,
        })
        .await
    }

    /// Every part the store holds for a multipart upload (all pages of ListParts).
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StorageError> {
        self.bounded(async {
            let mut parts = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_parts()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .set_part_number_marker(marker.take())
                    .send()
                    .await
                    .map_err(classify_multipart)?;
                parts.extend(out.parts().iter().filter_map(|p| {
                    Some(StoredPart {
                        part_number: p.part_number()?,
                        etag: p.e_tag()?.to_owned(),
                        size: p.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        checksum_sha256: p.checksum_sha256().map(str::to_owned),
                    })
                }));
                match (out.is_truncated(), out.next_part_number_marker()) {
                    (Some(true), Some(next)) => marker = Some(next.to_owned()),
                    _ => break,
                }
            }
            parts.sort_by_key(|p| p.part_number);
            Ok(parts)
        })
        .await
    }

    /// Completes a multipart upload from the given parts, in order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<Option<String>, StorageError> {
        self.bounded(async {
            let parts = parts
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.part_number)
                        .e_tag(&p.etag)
                        .set_checksum_sha256(p.checksum_sha256.clone())
                        .build()
                })
                .collect();
            let out = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(classify_multipart)?;
            Ok(out.e_tag().map(str::to_owned))
        })
        .await
    }

    /// Aborts a multipart upload; its parts are discarded. Aborting one that is already
    /// gone succeeds.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.bounded(async {
            let result = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(classify_multipart);
            match result {
                Ok(_) | Err(StorageError::NoSuchUpload) => Ok(()),
                Err(err) => Err(err),
            }
        })
        .await
    }
}

/// What a presigned UploadPart signs: the part's exact length, and its SHA-256 when given.
pub(super) fn upload_part_headers<'a>(
    length: &'a str,
    checksum: Option<&'a Sha256Checksum>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("content-length", length)];
    if let Some(sum) = checksum {
        headers.push(("x-amz-checksum-sha256", sum.as_str()));
    }
    headers
}
