//! Whole objects: presigned PUTs, the URLs objects are read at, HeadObject, ranged reads,
//! hashing, copies, deletes and stores.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::classify;
use super::presign::{SignedRequest, Unsigned};
use super::{ObjectUrls, Payload, Storage, StorageError};
use crate::domain::Sha256Checksum;

const DAY_SECS: u64 = 24 * 3600;

/// What HeadObject says about an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
}

/// An object's first bytes and what the store says of it, from one ranged read.
#[derive(Debug, Clone)]
pub struct ObjectStart {
    pub head: ObjectHead,
    /// Up to the length asked for (all of a shorter object).
    pub bytes: Bytes,
}

/// Sends a PutObject or UploadPart request with `body` as its payload, which is not
/// signed: TLS protects it and the caller hashes it, while signing it makes the SDK hash
/// every byte, and a store that checks it buffers the whole body to do so. A macro, as the
/// two requests have these methods in common but no trait.
macro_rules! send_unsigned {
    ($request:expr, $body:expr) => {{
        let body: $crate::storage::Payload = $body;
        $request
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .body(body.into_stream())
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err($crate::storage::error::classify)
    }};
}
pub(super) use send_unsigned;

impl Storage {
    /// A PUT URL that only accepts exactly `size` bytes of `content_type` (and, when given,
    /// a body with this SHA-256), and only while no object has the key (unless the store
    /// is said not to honour `If-None-Match`): the store itself refuses anything else.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        checksum: Option<&Sha256Checksum>,
    ) -> Result<SignedRequest, StorageError> {
        let length = size.to_string();
        let mut headers = put_object_headers(&length, content_type, checksum);
        if !self.conditional_writes {
            headers.retain(|(name, _)| *name != "if-none-match");
        }
        self.presign_upload(&Unsigned {
            method: "PUT",
            key,
            query: &[("x-id", "PutObject")],
            headers: &headers,
        })
        .await
    }

    /// Signs a request that uploads bytes, valid from now for `PRESIGN_EXPIRES`.
    pub(super) async fn presign_upload(
        &self,
        request: &Unsigned<'_>,
    ) -> Result<SignedRequest, StorageError> {
        self.presigner
            .sign(request, SystemTime::now(), self.presign_expires)
            .await
    }

    /// A URL that returns the object's bytes to a plain GET.
    pub async fn object_url(&self, key: &str) -> Result<String, StorageError> {
        match &self.object_urls {
            ObjectUrls::BaseUrl(base) => Ok(format!("{base}/{key}")),
            ObjectUrls::Direct => Ok(self.presigner.unsigned_url(key)),
            ObjectUrls::Presigned => {
                // Signed from the start of the current window (a day, or half the lifetime
                // when that is shorter): every answer within a window carries the same URL
                // (identical bodies, cacheable images), valid for at least half its life.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| StorageError::Signing(e.to_string()))?
                    .as_secs();
                let lifetime = self.object_url_expires;
                let window = (lifetime.as_secs() / 2).clamp(1, DAY_SECS);
                let anchor = UNIX_EPOCH + Duration::from_secs(now - now % window);
                let request = Unsigned {
                    method: "GET",
                    key,
                    query: &[("x-id", "GetObject")],
                    headers: &[],
                };
                let signed = self.presigner.sign(&request, anchor, lifetime).await?;
                Ok(signed.url)
            }
        }
    }

    /// `object_url` as the service itself names it, whatever request is being answered:
    /// for what others read later (an event's body), which a request's `Host` must not
    /// choose.
    pub async fn shared_object_url(&self, key: &str) -> Result<String, StorageError> {
        super::presign::for_no_client(self.object_url(key)).await
    }

    /// HeadObject; `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StorageError> {
        self.bounded(async {
            let result = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await;
            match result {
                Ok(out) => Ok(Some(ObjectHead {
                    size: out
                        .content_length()
                        .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                    content_type: out.content_type().map(str::to_owned),
                    etag: out.e_tag().map(str::to_owned),
                    checksum_sha256: out.checksum_sha256().map(str::to_owned),
                })),
                Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 404 => Ok(None),
                Err(err) => Err(classify(err)),
            }
        })
        .await
    }

    /// An object's first `len` bytes and what the store says of it (size, type, ETag),
    /// from one ranged GetObject; `None` when there is no such object. The size comes from
    /// `Content-Range`, so no HeadObject is needed beside it. A ranged read carries no
    /// checksum (S3 returns the whole object's only to a whole read): `checksum_sha256` is
    /// always `None` here.
    pub async fn read_start(
        &self,
        key: &str,
        len: u64,
    ) -> Result<Option<ObjectStart>, StorageError> {
        self.bounded(async {
            let result = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .range(format!("bytes=0-{}", len.saturating_sub(1)))
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 404 => {
                    return Ok(None);
                }
                // An empty object has no first byte to give.
                Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 416 => {
                    return Ok(Some(ObjectStart {
                        head: ObjectHead {
                            size: 0,
                            content_type: None,
                            etag: None,
                            checksum_sha256: None,
                        },
                        bytes: Bytes::new(),
                    }));
                }
                Err(err) => return Err(classify(err)),
            };
            let whole_length = out
                .content_range()
                .and_then(|range| range.rsplit_once('/'))
                .and_then(|(_, total)| total.parse::<u64>().ok());
            let sent_length = out.content_length().and_then(|n| u64::try_from(n).ok());
            let head = ObjectHead {
                // A store that ignores the range sends the whole object, and its length.
                size: whole_length.or(sent_length).unwrap_or(0),
                content_type: out.content_type().map(str::to_owned),
                etag: out.e_tag().map(str::to_owned),
                checksum_sha256: None,
            };
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| StorageError::Unavailable(e.to_string()))?
                .into_bytes();
            Ok(Some(ObjectStart { head, bytes }))
        })
        .await
    }

    /// Bytes `from..to` of an object (fewer if it is shorter).
    pub async fn read_between(&self, key: &str, from: u64, to: u64) -> Result<Bytes, StorageError> {
        self.read_range(key, format!("bytes={from}-{}", to.saturating_sub(1)))
            .await
    }

    /// The first `len` bytes of an object (fewer if it is shorter).
    pub async fn read_prefix(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        self.read_range(key, format!("bytes=0-{}", len.saturating_sub(1)))
            .await
    }

    /// The last `len` bytes of an object (fewer if it is shorter).
    pub async fn read_suffix(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        self.read_range(key, format!("bytes=-{len}")).await
    }

    async fn read_range(&self, key: &str, range: String) -> Result<Bytes, StorageError> {
        self.bounded(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .range(range)
                .send()
                .await
                .map_err(classify)?;
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| StorageError::Unavailable(e.to_string()))?;
            Ok(body.into_bytes())
        })
        .await
    }

    /// The whole object, when it is at most `max` bytes (`None`: larger).
    pub async fn read_all(&self, key: &str, max: u64) -> Result<Option<Bytes>, StorageError> {
        match self.head(key).await? {
            Some(head) if head.size <= max => self
                .read_range(key, format!("bytes=0-{}", head.size.saturating_sub(1)))
                .await
                .map(Some),
            Some(_) => Ok(None),
            None => Err(StorageError::NoSuchKey),
        }
    }

    /// Stores a variant: its type, and cached for good (its key never holds other bytes).
    pub async fn put_immutable(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), StorageError> {
        self.bounded(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .cache_control("public, max-age=31536000, immutable")
                .body(bytes.into())
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    /// Streams the whole object through SHA-256.
    pub async fn sha256(&self, key: &str) -> Result<Sha256Checksum, StorageError> {
        let mut out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
        {
            hasher.update(&chunk);
        }
        Ok(Sha256Checksum::from_digest(&hasher.finalize()))
    }

    /// Copies an object within the bucket (server-side, up to 5 GiB).
    /// With `if_etag`, only while the source still has that ETag: a source replaced since
    /// it was read is `NoSuchKey`, as if it had gone, so the caller looks again.
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        if_etag: Option<&str>,
    ) -> Result<(), StorageError> {
        self.bounded(async {
            let result = self
                .client
                .copy_object()
                .bucket(&self.bucket)
                .copy_source(format!("{}/{from}", self.bucket))
                .set_copy_source_if_match(if_etag.map(str::to_owned))
                .key(to)
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 412 => {
                    Err(StorageError::NoSuchKey)
                }
                Err(err) => Err(classify(err)),
            }
        })
        .await
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.bounded(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    /// Stores a whole object, its payload not signed (see `send_unsigned`).
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Payload,
    ) -> Result<Option<String>, StorageError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type);
        let out = send_unsigned!(request, body)?;
        Ok(out.e_tag().map(str::to_owned))
    }
}

/// What a presigned PutObject signs, sorted by name: the exact length and type, no
/// overwrite of an existing object, and the body's SHA-256 when declared.
pub(super) fn put_object_headers<'a>(
    length: &'a str,
    content_type: &'a str,
    checksum: Option<&'a Sha256Checksum>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("content-length", length),
        ("content-type", content_type),
        ("if-none-match", "*"),
    ];
    if let Some(sum) = checksum {
        headers.push(("x-amz-checksum-sha256", sum.as_str()));
    }
    headers
}
