//! Listing what the bucket holds: objects and open multipart uploads, every page.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::classify;
use super::{Storage, StorageError};

impl Storage {
    /// Every object under `prefix` with its last-modified time (all pages).
    pub async fn list_objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, SystemTime)>, StorageError> {
        self.bounded(async {
            let mut objects = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(classify)?;
                for object in out.contents() {
                    let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                        continue;
                    };
                    if let Ok(modified) = SystemTime::try_from(*modified) {
                        objects.push((key.to_owned(), modified));
                    }
                }
                match (out.is_truncated(), out.next_continuation_token()) {
                    (Some(true), Some(next)) => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            Ok(objects)
        })
        .await
    }

    /// Open multipart uploads under `prefix`: (key, upload id, initiated), all pages.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, SystemTime)>, StorageError> {
        self.bounded(async {
            let mut uploads = Vec::new();
            let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
            loop {
                let out = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(classify)?;
                for upload in out.uploads() {
                    let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                        continue;
                    };
                    let initiated = upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(UNIX_EPOCH);
                    uploads.push((key.to_owned(), id.to_owned(), initiated));
                }
                match (out.is_truncated(), out.next_key_marker()) {
                    (Some(true), Some(next)) => {
                        key_marker = Some(next.to_owned());
                        id_marker = out.next_upload_id_marker().map(str::to_owned);
                    }
                    _ => break,
                }
            }
            Ok(uploads)
        })
        .await
    }
}
