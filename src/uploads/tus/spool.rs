//! The tus spool: the bytes of a part that has not filled yet, on local disk, one file per
//! part (`<DATA_DIR>/tus/<upload_id>/<part_number>`). Named files, unlike the legacy
//! upload's, so an upload's offset survives a restart; a file is removed once its part is
//! in storage, and an upload's folder once it is finished, aborted or expired.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::uploads::UploadError;
use crate::uploads::streamed::blocking;

/// The name of the file that marks bytes not checked yet (not a part's number).
const UNCHECKED: &str = "unchecked";

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn folder(&self, id: Uuid) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn part(&self, id: Uuid, part: i32) -> PathBuf {
        self.folder(id).join(part.to_string())
    }

    /// The file of one part, made when missing; what it holds is kept.
    pub async fn open(&self, id: Uuid, part: i32) -> Result<Arc<File>, UploadError> {
        let (folder, path) = (self.folder(id), self.part(id, part));
        blocking(move || {
            fs::create_dir_all(&folder)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map(Arc::new)
        })
        .await
    }

    /// How many bytes a part's file holds; `None` when there is none.
    pub async fn len(&self, id: Uuid, part: i32) -> Result<Option<u64>, UploadError> {
        let path = self.part(id, part);
        blocking(move || match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        })
        .await
    }

    /// Cuts a part's file back to `len` bytes.
    pub async fn truncate(&self, id: Uuid, part: i32, len: u64) -> Result<(), UploadError> {
        let path = self.part(id, part);
        blocking(move || match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file.set_len(len),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        })
        .await
    }

    /// Removes the files of the parts outside `keep` (and anything else in the folder).
    pub async fn remove_parts_outside(
        &self,
        id: Uuid,
        keep: std::ops::RangeInclusive<i32>,
    ) -> Result<(), UploadError> {
        let folder = self.folder(id);
        blocking(move || {
            each_entry(&folder, |path, number| match number {
                Some(n) if keep.contains(&n) => Ok(()),
                _ => remove_file(path),
            })
        })
        .await
    }

    /// Notes that the bytes from `len` of part `part` on are not checked yet (a PATCH with
    /// a checksum is on its way): until [`Spool::checked`], they do not count, even after
    /// a crash.
    pub async fn mark_unchecked(&self, id: Uuid, part: i32, len: u64) -> Result<(), UploadError> {
        let (folder, path) = (self.folder(id), self.folder(id).join(UNCHECKED));
        blocking(move || {
            fs::create_dir_all(&folder)?;
            fs::write(&path, format!("{part} {len}"))
        })
        .await
    }

    /// The bytes since [`Spool::mark_unchecked`] had the right checksum: they count.
    pub async fn checked(&self, id: Uuid) -> Result<(), UploadError> {
        let path = self.folder(id).join(UNCHECKED);
        blocking(move || remove_file(&path)).await
    }

    /// Where a PATCH with a checksum began, when its bytes were never checked (it failed,
    /// or the process stopped, before it could tell).
    pub async fn unchecked(&self, id: Uuid) -> Result<Option<(i32, u64)>, UploadError> {
        let path = self.folder(id).join(UNCHECKED);
        let mark = blocking(move || match fs::read_to_string(&path) {
            Ok(mark) => Ok(Some(mark)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        })
        .await?;
        Ok(mark.and_then(|mark| {
            let (part, len) = mark.trim().split_once(' ')?;
            Some((part.parse().ok()?, len.parse().ok()?))
        }))
    }

    /// Puts the spool back to part `part` holding `len` bytes: later parts' files go, as
    /// does the mark of unchecked bytes. Earlier parts' files stay (one may still be on
    /// its way to storage).
    pub async fn roll_back(&self, id: Uuid, part: i32, len: u64) -> Result<(), UploadError> {
        let folder = self.folder(id);
        blocking(move || {
            each_entry(&folder, |path, number| match number {
                Some(n) if n == part => OpenOptions::new().write(true).open(path)?.set_len(len),
                Some(n) if n < part => Ok(()),
                _ => remove_file(path),
            })
        })
        .await
    }

    /// Removes one part's file (its bytes are in storage).
    pub async fn remove_part(&self, id: Uuid, part: i32) -> Result<(), UploadError> {
        let path = self.part(id, part);
        blocking(move || remove_file(&path)).await
    }

    /// Removes everything an upload has here.
    pub async fn remove(&self, id: Uuid) -> Result<(), UploadError> {
        let folder = self.folder(id);
        blocking(move || match fs::remove_dir_all(&folder) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        })
        .await
    }

    /// The uploads that have a folder here, and the names that are not an upload's.
    pub async fn folders(&self) -> Result<Vec<Result<Uuid, PathBuf>>, UploadError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(err),
            };
            entries
                .map(|entry| {
                    let entry = entry?;
                    let id = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| Uuid::parse_str(n).ok());
                    Ok(id.ok_or_else(|| entry.path()))
                })
                .collect()
        })
        .await
    }

    /// Removes a stray entry of the spool's folder (not an upload's).
    pub async fn remove_stray(&self, path: PathBuf) -> Result<(), UploadError> {
        blocking(move || {
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                remove_file(&path)
            }
        })
        .await
    }
}

/// Calls `visit` with each entry of an upload's folder and its part number (`None` for a
/// name that is not one); a missing folder has none.
fn each_entry(
    folder: &Path,
    mut visit: impl FnMut(&Path, Option<i32>) -> io::Result<()>,
) -> io::Result<()> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let number = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok());
        visit(&entry.path(), number)?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use bytes::Bytes;

    use super::*;
    use crate::uploads::streamed::write_at;

    #[tokio::test]
    async fn parts_are_files_that_outlive_their_handles() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("tus"));
        let id = Uuid::now_v7();
        assert_eq!(spool.len(id, 1).await.unwrap(), None);
        let file = spool.open(id, 1).await.unwrap();
        write_at(&file, Bytes::from_static(b"hello"), 0)
            .await
            .unwrap();
        drop(file);
        let file = spool.open(id, 1).await.unwrap();
        write_at(&file, Bytes::from_static(b" world"), 5)
            .await
            .unwrap();
        assert_eq!(spool.len(id, 1).await.unwrap(), Some(11));
        let mut read = vec![0; 11];
        file.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(read, b"hello world");
        spool.truncate(id, 1, 5).await.unwrap();
        assert_eq!(spool.len(id, 1).await.unwrap(), Some(5));

        spool.open(id, 2).await.unwrap();
        spool.open(id, 3).await.unwrap();
        spool.remove_parts_outside(id, 2..=2).await.unwrap();
        assert_eq!(spool.len(id, 1).await.unwrap(), None);
        assert_eq!(spool.len(id, 2).await.unwrap(), Some(0));
        assert_eq!(spool.len(id, 3).await.unwrap(), None);
        assert_eq!(spool.folders().await.unwrap(), vec![Ok(id)]);
        spool.remove(id).await.unwrap();
        spool.remove(id).await.unwrap();
        assert!(spool.folders().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unchecked_bytes_are_marked_until_checked_and_rolled_back_to_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("tus"));
        let id = Uuid::now_v7();
        assert_eq!(spool.unchecked(id).await.unwrap(), None);
        for (part, bytes) in [(1, &b"sent"[..]), (2, b"kept, then not"), (3, b"unchecked")] {
            let file = spool.open(id, part).await.unwrap();
            write_at(&file, Bytes::copy_from_slice(bytes), 0)
                .await
                .unwrap();
        }
        spool.mark_unchecked(id, 2, 4).await.unwrap();
        assert_eq!(spool.unchecked(id).await.unwrap(), Some((2, 4)));
        // The mark survives a new Spool (a restart) and is no part.
        let again = Spool::new(dir.path().join("tus"));
        assert_eq!(again.unchecked(id).await.unwrap(), Some((2, 4)));

        again.roll_back(id, 2, 4).await.unwrap();
        assert_eq!(again.unchecked(id).await.unwrap(), None);
        assert_eq!(
            again.len(id, 1).await.unwrap(),
            Some(4),
            "an earlier part stays"
        );
        assert_eq!(again.len(id, 2).await.unwrap(), Some(4));
        assert_eq!(again.len(id, 3).await.unwrap(), None);

        spool.mark_unchecked(id, 2, 4).await.unwrap();
        spool.checked(id).await.unwrap();
        assert_eq!(spool.unchecked(id).await.unwrap(), None);
        assert_eq!(spool.len(id, 2).await.unwrap(), Some(4));
    }
}
