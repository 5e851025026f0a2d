//! The newest completed upload of each recently looked-up image_id, kept in memory on
//! SQLite, where this process makes every write: a lookup that hits it reads no database.
//!
//! Every write that can change an image_id's newest completed upload (a completed row
//! inserted, `complete`, a move into or out of `completed`) drops that image_id's entry
//! once it has committed, before its caller answers, so a client that has seen its
//! confirm succeed always looks up what it confirmed. A read that raced such a write is
//! not kept: the write also moves `epoch`, and a read stores its row only if `epoch` has
//! not moved since it started. Entries also expire after `FRESH_FOR`, which bounds how
//! long a row written into the same file by another process goes unseen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::upload::Model;

/// How long an entry answers lookups.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Entries kept at most; a full cache starts again empty.
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
pub struct LatestCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// `None`: the image_id had no completed upload.
    row: Option<Arc<Model>>,
    read_at: Instant,
}

/// What `get` found.
pub enum Cached {
    Hit(Option<Arc<Model>>),
    /// Read the database, then `put` the row with this epoch.
    Miss(u64),
}

impl LatestCache {
    pub fn get(&self, image_id: &str) -> Cached {
        let Ok(inner) = self.inner.lock() else {
            return Cached::Miss(u64::MAX);
        };
        match inner.entries.get(image_id) {
            Some(entry) if entry.read_at.elapsed() < FRESH_FOR => Cached::Hit(entry.row.clone()),
            _ => Cached::Miss(inner.epoch),
        }
    }

    /// Keeps what a read that began at `epoch` found, unless a write has moved it since.
    pub fn put(&self, image_id: &str, epoch: u64, row: Option<&Model>, read_at: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= CAPACITY && !inner.entries.contains_key(image_id) {
            inner.entries.clear();
        }
        let row = row.cloned().map(Arc::new);
        inner
            .entries
            .insert(image_id.to_owned(), Entry { row, read_at });
    }

    /// After a committed write that may change `image_id`'s newest completed upload.
    pub fn invalidate(&self, image_id: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(image_id);
            inner.epoch = inner.epoch.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image_id: &str) -> Model {
        let now = time::OffsetDateTime::now_utc();
        Model {
            id: uuid::Uuid::now_v7(),
            image_id: image_id.to_owned(),
            state: entity::UploadState::Completed,
            method: entity::UploadMethod::Put,
            object_key: format!("uploads/{image_id}/a.png"),
            original_filename: "a.png".to_owned(),
            content_type: "image/png".to_owned(),
            declared_size: 1,
            file_size: Some(1),
            checksum_sha256: None,
            etag: None,
            width: Some(1),
            height: Some(1),
            metadata: None,
            s3_url: None,
            multipart_upload_id: None,
            part_size: None,
            part_count: None,
            checksum_algorithm: None,
            failure_code: None,
            created_at: now,
            expires_at: now,
            uploaded_at: Some(now),
            updated_at: now,
            link_id: None,
            variants_state: None,
            variants: None,
            variants_failure_code: None,
        }
    }

    fn hit(cache: &LatestCache, image_id: &str) -> Option<Option<Model>> {
        match cache.get(image_id) {
            Cached::Hit(row) => Some(row.map(Arc::unwrap_or_clone)),
            Cached::Miss(_) => None,
        }
    }

    #[test]
    fn keeps_reads_until_a_write_for_the_same_image_id() {
        let cache = LatestCache::default();
        let Cached::Miss(epoch) = cache.get("cat") else {
            panic!("empty cache hit");
        };
        let cat = row("cat");
        cache.put("cat", epoch, Some(&cat), Instant::now());
        cache.put("dog", epoch + 1, None, Instant::now());
        assert_eq!(hit(&cache, "cat"), Some(Some(cat)));
        assert_eq!(
            hit(&cache, "dog"),
            None,
            "a read with a stale epoch was kept"
        );

        let Cached::Miss(epoch) = cache.get("dog") else {
            panic!("dog was kept");
        };
        cache.put("dog", epoch, None, Instant::now());
        assert_eq!(hit(&cache, "dog"), Some(None), "a miss is kept too");
        cache.invalidate("cat");
        assert_eq!(hit(&cache, "cat"), None);
        assert_eq!(hit(&cache, "dog"), Some(None), "other image_ids stay");
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = LatestCache::default();
        let Cached::Miss(epoch) = cache.get("cat") else {
            panic!("empty cache hit");
        };
        // The read saw the database before this write committed.
        cache.invalidate("cat");
        cache.put("cat", epoch, None, Instant::now());
        assert_eq!(hit(&cache, "cat"), None);
    }

    #[test]
    fn entries_expire() {
        let cache = LatestCache::default();
        let Cached::Miss(epoch) = cache.get("cat") else {
            panic!("empty cache hit");
        };
        let Some(long_ago) = Instant::now().checked_sub(FRESH_FOR + Duration::from_millis(1))
        else {
            return;
        };
        cache.put("cat", epoch, Some(&row("cat")), long_ago);
        assert_eq!(hit(&cache, "cat"), None);
    }
}
