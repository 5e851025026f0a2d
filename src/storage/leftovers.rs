//! The embedded store's own files beside its objects, and removing those nothing uses.
//!
//! s3s-fs keeps in its root folder (`<b>` and `<k>` are the bucket and key in URL-safe
//! base64 without padding, `<id>` a multipart upload id, a UUID):
//! - `.upload-<id>.json` while the multipart upload is open;
//! - `.upload_id-<id>.part-<n>`, each part uploaded to it;
//! - `.bucket-<b>.object-<k>.upload-<id>.metadata.json`, the attributes it will give its
//!   object;
//! - `.bucket-<b>.object-<k>.metadata.json` and `.internal.json`, an object's attributes
//!   and its ETag and checksums;
//! - `.tmp.<n>.internal.part`, a file being written, renamed into place when done.
//!
//! `StrictFs` adds `<root>.parts/<id>.<n>`, the ETag and SHA-256 of each part.
//!
//! A process killed mid-upload leaves these behind (CompleteMultipartUpload drops the
//! `.upload-<id>.json` first and each part only once it is copied), and s3s-fs leaves an
//! object's attributes when the object is deleted. `remove_leftovers` removes the files of
//! uploads that are no longer open and the attributes of objects that do not exist. A file
//! is left alone while it is younger than the cutoff the caller gives (a write in flight
//! touches its file), and the files of an upload `StrictFs` is completing are left alone
//! at any age.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::fs;

use super::{Storage, StorageError};

/// Where the embedded store keeps its files, and the multipart uploads being completed.
#[derive(Debug)]
pub struct InternalFiles {
    /// The store's root folder (`DATA_DIR/s3`).
    pub(super) root: PathBuf,
    /// `StrictFs`'s part records.
    pub(super) part_records: PathBuf,
    /// Upload id, bucket and key (both encoded as in s3s-fs's file names) of each
    /// CompleteMultipartUpload in progress.
    completing: Mutex<Vec<[String; 3]>>,
}

/// Holds an upload in `InternalFiles::completing` until dropped.
pub struct Completing<'a> {
    files: &'a InternalFiles,
    entry: [String; 3],
}

impl Drop for Completing<'_> {
    fn drop(&mut self) {
        if let Ok(mut completing) = self.files.completing.lock()
            && let Some(at) = completing.iter().position(|e| *e == self.entry)
        {
            completing.swap_remove(at);
        }
    }
}

/// One of s3s-fs's files in the store's root, by its name.
#[derive(Debug, PartialEq, Eq)]
enum Internal<'a> {
    /// `.upload-<id>.json`
    Open(&'a str),
    /// `.upload_id-<id>.part-<n>`
    Part(&'a str),
    /// `.bucket-<b>.object-<k>.upload-<id>.metadata.json`
    UploadAttributes(&'a str),
    /// `.bucket-<b>.object-<k>.metadata.json` or `.internal.json`
    ObjectAttributes { bucket: &'a str, key: &'a str },
    /// `.tmp.<n>.internal.part`
    Temporary,
}

impl<'a> Internal<'a> {
    fn of(name: &'a str) -> Option<Self> {
        let upload_id = |id: &'a str| uuid::Uuid::parse_str(id).is_ok().then_some(id);
        if let Some(n) = name
            .strip_prefix(".tmp.")
            .and_then(|rest| rest.strip_suffix(".internal.part"))
        {
            return (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then_some(Self::Temporary);
        }
        if let Some(rest) = name.strip_prefix(".upload_id-") {
            let (id, _part) = rest.split_once(".part-")?;
            return upload_id(id).map(Self::Part);
        }
        if let Some(id) = name
            .strip_prefix(".upload-")
            .and_then(|rest| rest.strip_suffix(".json"))
        {
            return upload_id(id).map(Self::Open);
        }
        let rest = name.strip_prefix(".bucket-")?;
        let (rest, per_upload) = match rest.strip_suffix(".metadata.json") {
            Some(rest) => (rest, true),
            None => (rest.strip_suffix(".internal.json")?, false),
        };
        let (bucket, key) = rest.split_once(".object-")?;
        // Base64 has no dots, so `.upload-` can only be the upload's own suffix.
        match key.split_once(".upload-") {
            Some((_key, id)) if per_upload => upload_id(id).map(Self::UploadAttributes),
            Some(_) => None,
            None => Some(Self::ObjectAttributes { bucket, key }),
        }
    }
}

impl InternalFiles {
    pub fn new(root: PathBuf, part_records: PathBuf) -> Self {
        Self {
            root,
            part_records,
            completing: Mutex::new(Vec::new()),
        }
    }

    /// Marks an upload as being completed until the guard is dropped: s3s-fs has already
    /// dropped its `.upload-<id>.json` while it copies the parts into the object.
    pub fn completing(&self, upload_id: &str, bucket: &str, key: &str) -> Completing<'_> {
        let entry = [
            upload_id.to_owned(),
            URL_SAFE_NO_PAD.encode(bucket),
            URL_SAFE_NO_PAD.encode(key),
        ];
        if let Ok(mut completing) = self.completing.lock() {
            completing.push(entry.clone());
        }
        Completing { files: self, entry }
    }

    fn is_completing(&self, matches: impl Fn(&[String; 3]) -> bool) -> bool {
        // A poisoned lock says nothing; keep the files.
        self.completing
            .lock()
            .map_or(true, |completing| completing.iter().any(matches))
    }

    /// s3s-fs keeps `.upload-<id>.json` while an upload is open.
    pub fn open_marker(&self, upload_id: &str) -> PathBuf {
        self.root.join(format!(".upload-{upload_id}.json"))
    }

    /// Whether the upload is open or being completed. The marker is looked at first: a
    /// completion registers before s3s-fs drops the marker.
    async fn upload_is_live(&self, upload_id: &str) -> bool {
        fs::try_exists(self.open_marker(upload_id))
            .await
            .unwrap_or(true)
            || self.is_completing(|[id, _, _]| id == upload_id)
    }

    /// Whether the object the attributes describe is there, or being completed.
    async fn object_is_live(&self, bucket: &str, key: &str) -> bool {
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        };
        let (Some(bucket_name), Some(key_name)) = (decode(bucket), decode(key)) else {
            return true;
        };
        let relative = Path::new(&bucket_name).join(&key_name);
        // Only names s3s-fs could have made for an object under the root.
        if bucket_name.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return true;
        }
        fs::try_exists(self.root.join(relative))
            .await
            .unwrap_or(true)
            || self.is_completing(|[_, b, k]| b == bucket && k == key)
    }

    /// Removes the leftovers last written before `older_than`; returns how many.
    pub async fn remove_leftovers(&self, older_than: SystemTime) -> std::io::Result<usize> {
        let names = file_names(&self.root).await?;
        // An open marker with no attributes is a CreateMultipartUpload that never
        // answered: nobody holds its id.
        let attributed: HashSet<&str> = names
            .iter()
            .filter_map(|name| match Internal::of(name) {
                Some(Internal::UploadAttributes(id)) => Some(id),
                _ => None,
            })
            .collect();
        let mut removed = 0;
        for name in &names {
            let leftover = match Internal::of(name) {
                None => false,
                Some(Internal::Temporary) => true,
                Some(Internal::Open(id)) => !attributed.contains(id),
                Some(Internal::Part(id) | Internal::UploadAttributes(id)) => {
                    !self.upload_is_live(id).await
                }
                Some(Internal::ObjectAttributes { bucket, key }) => {
                    !self.object_is_live(bucket, key).await
                }
            };
            if leftover && remove_if_older(&self.root.join(name), older_than).await {
                removed += 1;
            }
        }
        let records = match file_names(&self.part_records).await {
            Ok(records) => records,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        for name in &records {
            let Some((id, _part)) = name.split_once('.') else {
                continue;
            };
            if uuid::Uuid::parse_str(id).is_ok()
                && !self.upload_is_live(id).await
                && remove_if_older(&self.part_records.join(name), older_than).await
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The regular files directly in `dir` whose names are text.
async fn file_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut entries = fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await.is_ok_and(|t| t.is_file())
            && let Ok(name) = entry.file_name().into_string()
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes the file if it was last written before `older_than`, looked at just before:
/// a file being written is never old.
async fn remove_if_older(path: &Path, older_than: SystemTime) -> bool {
    let old = fs::symlink_metadata(path)
        .await
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified < older_than);
    if !old {
        return false;
    }
    match fs::remove_file(path).await {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove an embedded store leftover");
            false
        }
    }
}

impl Storage {
    /// Removes what the embedded store keeps for multipart uploads that are no longer open
    /// and for objects that do not exist, and its temporary files, once last written before
    /// `older_than` (see `leftovers`); returns how many files. Other stores keep no such
    /// files: nothing to do.
    pub async fn remove_internal_leftovers(
        &self,
        older_than: SystemTime,
    ) -> Result<usize, StorageError> {
        let Some(files) = &self.embedded else {
            return Ok(0);
        };
        let removed = files.remove_leftovers(older_than).await.map_err(|err| {
            StorageError::Unavailable(format!(
                "cannot read the embedded store at {}: {err}",
                files.root.display()
            ))
        })?;
        if removed > 0 {
            tracing::info!(removed, "embedded store leftovers removed");
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn file_names_are_read_as_s3s_fs_makes_them() {
        assert_eq!(
            Internal::of(&format!(".upload-{ID}.json")),
            Some(Internal::Open(ID))
        );
        assert_eq!(
            Internal::of(&format!(".upload_id-{ID}.part-3")),
            Some(Internal::Part(ID))
        );
        assert_eq!(
            Internal::of(&format!(".bucket-YQ.object-Yg.upload-{ID}.metadata.json")),
            Some(Internal::UploadAttributes(ID))
        );
        for suffix in ["metadata", "internal"] {
            assert_eq!(
                Internal::of(&format!(".bucket-YQ.object-Yg.{suffix}.json")),
                Some(Internal::ObjectAttributes {
                    bucket: "YQ",
                    key: "Yg"
                })
            );
        }
        assert_eq!(
            Internal::of(".tmp.12.internal.part"),
            Some(Internal::Temporary)
        );
        for other in [
            ".upload-not-a-uuid.json",
            ".tmp..internal.part",
            ".tmp.x.internal.part",
            ".bucket-YQ.metadata.json",
            &format!(".bucket-YQ.object-Yg.upload-{ID}.internal.json"),
            "upload-broker",
            "notes.txt",
        ] {
            assert_eq!(Internal::of(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn an_upload_being_completed_keeps_its_files() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join("b")).expect("root");
        let files = InternalFiles::new(root.clone(), root.with_extension("parts"));
        // s3s-fs has dropped the upload's marker and written the object's attributes,
        // and copies the parts.
        let part = root.join(format!(".upload_id-{ID}.part-1"));
        let attributes = root.join(format!(
            ".bucket-{}.object-{}.metadata.json",
            URL_SAFE_NO_PAD.encode("b"),
            URL_SAFE_NO_PAD.encode("k")
        ));
        std::fs::write(&part, b"part").expect("part");
        std::fs::write(&attributes, b"{}").expect("attributes");
        let later = SystemTime::now() + std::time::Duration::from_secs(60);

        let completing = files.completing(ID, "b", "k");
        assert_eq!(files.remove_leftovers(later).await.expect("swept"), 0);
        assert!(part.exists() && attributes.exists());
        drop(completing);
        assert_eq!(files.remove_leftovers(later).await.expect("swept"), 2);
        assert!(!part.exists() && !attributes.exists());
    }
}
