//! tus 1.0.0: resumable uploads through the service, for clients that cannot reach
//! storage. A tus upload is a v1 upload (`method: TUS`) whose bytes the service receives
//! and passes on as they come: a part that has filled (`PART_SIZE`) goes to storage with
//! UploadPart while the next one fills; the part still filling waits in the spool on local
//! disk. A file that fits in one part is one PutObject at the end. The PATCH that brings
//! the offset to the length confirms the upload through `confirm`, like any other upload
//! (which completes the store's multipart upload first).
//!
//! The offset is never stored: it is what storage holds (the store's list of parts) plus
//! the spool. So it survives a restart, and when the spool is lost it drops back to the
//! end of the last stored part, which the protocol allows. Requests for one upload take
//! turns; a new one asks the one holding the turn to stop where it is (a client that lost
//! its connection comes back before the server notices), as tus servers do. A HEAD while a
//! PATCH writes is answered with the offset it has reached, and does not stop it.

mod header;
mod spool;

pub use header::{ALGORITHMS, ChunkChecksum, HeaderError, format_metadata, http_date};
pub use spool::Spool;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::issue::UploadRequest;
use super::streamed;
use super::verify::{self, SNIFF_BYTES};
use super::{
    PartPlan, Rejection, Upload, UploadError, UploadMethod, UploadService, UploadState, object_key,
    to_i64,
};
use crate::db::{self, Change, NewUpload, UploadRow};
use crate::domain::{ImageFormat, ImageId, Metadata, OriginalFilename};
use crate::metrics;
use crate::storage::{Payload, StorageError};

/// The protocol version served.
pub const TUS_VERSION: &str = "1.0.0";
/// `Tus-Extension`.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
/// `Upload-Metadata` keys the service reads itself; the rest become the upload's metadata.
const OWN_KEYS: [&str; 5] = ["image_id", "filename", "filetype", "name", "type"];
/// How much of a PATCH's body is read (and written to the spool) at once.
const READ_CHUNK: usize = 256 * 1024;
/// How long a PATCH may wait for body bytes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for the upload's turn after asking its holder to stop.
const TURN_WAIT: Duration = Duration::from_secs(10);

/// A tus upload as its client sees it.
#[derive(Debug, Clone)]
pub struct TusUpload {
    pub id: Uuid,
    pub length: u64,
    pub offset: u64,
    /// While it is pending.
    pub expires_at: Option<OffsetDateTime>,
    /// `Upload-Metadata`, as it was given (the type as the service read it).
    pub metadata: Vec<(String, String)>,
    /// The record, once the last byte has come and it is verified.
    pub completed: Option<Upload>,
}

/// Per-upload turns and what this process knows of each upload's progress.
#[derive(Debug, Default)]
pub(crate) struct Turns(std::sync::Mutex<HashMap<Uuid, Arc<Turn>>>);

#[derive(Debug, Default)]
struct Turn {
    /// Counts the requests that asked for the turn; its holder stops when it moves.
    asked: AtomicU64,
    wake: Notify,
    progress: Arc<tokio::sync::Mutex<Option<Progress>>>,
    /// The offset a PATCH holding the turn has reached so far, plus one (0: not known), for
    /// a HEAD meanwhile: it answers without stopping the PATCH.
    shown: AtomicU64,
}

impl Turn {
    fn show(&self, offset: Option<u64>) {
        self.shown
            .store(offset.map_or(0, |o| o.saturating_add(1)), Ordering::SeqCst);
    }

    /// The offset a PATCH is writing at, while one holds the turn.
    fn writing_at(&self) -> Option<u64> {
        let shown = self.shown.load(Ordering::SeqCst).checked_sub(1)?;
        self.progress.try_lock().is_err().then_some(shown)
    }
}

impl Turns {
    fn of(&self, id: Uuid) -> Arc<Turn> {
        let mut turns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        turns.entry(id).or_default().clone()
    }

    /// Forgets an upload's turn, unless a request holds it or waits for it (that one
    /// then finds the upload settled).
    fn forget(&self, id: Uuid) {
        let mut turns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if turns
            .get(&id)
            .is_some_and(|turn| Arc::strong_count(turn) == 1)
        {
            turns.remove(&id);
        }
    }
}

/// The turn of one upload, held: its progress, and how to tell it was asked for.
struct Held {
    turn: Arc<Turn>,
    /// The ask that got it; a later one moves `Turn::asked` past it.
    ticket: u64,
    progress: OwnedMutexGuard<Option<Progress>>,
}

/// Where an upload's bytes are: parts before `next` are in storage or on their way there
/// (`sending`); part `next` holds `spooled` bytes in the spool.
#[derive(Debug)]
struct Progress {
    plan: PartPlan,
    next: i32,
    spooled: u64,
    /// Part `next`'s spool file, once open.
    file: Option<Arc<File>>,
    /// The part being sent to storage while the next fills; at most one.
    sending: Option<(i32, JoinHandle<Result<(), UploadError>>)>,
    /// Every byte is in storage, as the object or as all the store's parts (a finish that
    /// did not get to confirm): what is left is confirm's.
    stored_whole: bool,
    /// The file's first bytes were looked at (once part 1 holds enough of them).
    head_checked: bool,
}

impl Progress {
    fn offset(&self) -> u64 {
        self.plan.part_offset(self.next) + self.spooled
    }

    fn done(&self) -> bool {
        self.offset() == self.plan.size
    }
}

/// A PATCH with a checksum, while its body is read: the digest so far, and the parts it
/// filled, which wait for the digest before they go to storage.
struct Checked {
    hasher: header::ChunkHasher,
    held_back: Vec<(i32, Arc<File>)>,
}

/// Why a PATCH stopped reading.
enum Stop {
    /// Its body ended.
    Ended,
    /// The upload is whole.
    Whole,
    /// Another request for the upload asked for the turn.
    Asked,
    /// The file's first bytes show it is not what it claims.
    Refused(Rejection),
    Failed(UploadError),
}

impl UploadService {
    /// Reads a creation request (`Upload-Length`, `Upload-Metadata`) into the request a
    /// v1 upload is made from: a missing or bad length is a 400, one over `MAX_UPLOAD_SIZE`
    /// a 413; the type comes from `filetype`, else from the file name's extension, and a
    /// missing, disallowed or disagreeing one is a 415.
    pub fn parse_tus_creation(
        &self,
        length: Option<&str>,
        metadata: Option<&str>,
    ) -> Result<UploadRequest, UploadError> {
        let size = length
            .ok_or(UploadError::TusHeader(
                "Upload-Length is required (Upload-Defer-Length is not supported)".to_owned(),
            ))?
            .trim()
            .parse::<u64>()
            .map_err(|_| {
                UploadError::TusHeader("Upload-Length must be a whole number of bytes".to_owned())
            })?;
        if size > self.config.limits.max_upload_size {
            return Err(UploadError::TooLarge {
                limit: self.config.limits.max_upload_size,
            });
        }
        if size == 0 {
            return Err(UploadError::EmptyFile);
        }
        let mut pairs = header::parse_metadata(metadata.unwrap_or_default())
            .map_err(|err| UploadError::TusHeader(err.to_string()))?;
        let image_id = ImageId::parse_new(pairs.get("image_id").map_or("", String::as_str))?;
        let filename = OriginalFilename::clean(pairs.get("filename").map_or("", String::as_str))?;
        let named = filename.format();
        let format = match pairs.get("filetype").filter(|t| !t.is_empty()) {
            Some(filetype) => {
                let declared = ImageFormat::from_mime(filetype)?;
                if named.ok() != Some(declared) {
                    return Err(UploadError::TypeDisagrees);
                }
                declared
            }
            None => named?,
        };
        for key in OWN_KEYS {
            pairs.remove(key);
        }
        let metadata = Metadata::parse(pairs)?;
        Ok(UploadRequest {
            image_id,
            filename,
            format,
            size,
            checksum: None,
            part_checksums: false,
            metadata: (!metadata.is_empty()).then_some(metadata),
        })
    }

    /// Records a new tus upload as pending (and starts the store's multipart upload when it
    /// is larger than one part), made with `link_id` when a link authorized it.
    pub async fn tus_create(
        &self,
        request: UploadRequest,
        link_id: Option<Uuid>,
    ) -> Result<TusUpload, UploadError> {
        self.keeping_link(link_id, self.tus_record(request, link_id))
            .await
    }

    async fn tus_record(
        &self,
        request: UploadRequest,
        link_id: Option<Uuid>,
    ) -> Result<TusUpload, UploadError> {
        let (image_id, format, size) = (&request.image_id, request.format, request.size);
        self.check_pending_caps(image_id, size).await?;
        let id = Uuid::now_v7();
        let key = object_key(image_id, id, format);
        let plan = self.tus_plan(size);
        let multipart = if plan.part_count > 1 {
            Some(
                self.storage
                    .create_multipart(&key, format.mime(), false)
                    .await?,
            )
        } else {
            None
        };
        let fields = NewUpload {
            id,
            image_id: image_id.to_string(),
            method: UploadMethod::Tus,
            object_key: key.clone(),
            original_filename: request.filename.as_str().to_owned(),
            content_type: format.mime().to_owned(),
            declared_size: to_i64(size),
            checksum_sha256: None,
            metadata: request.metadata.map(|m| m.to_json()),
            multipart_upload_id: multipart.clone(),
            part_size: multipart.as_ref().map(|_| to_i64(plan.part_size)),
            part_count: multipart.as_ref().map(|_| plan.part_count),
            checksum_algorithm: None,
            expires_at: OffsetDateTime::now_utc() + self.config.limits.multipart_expires,
            link_id,
        };
        let row = match self.db.insert(db::new_pending(fields)).await {
            Ok(row) => row,
            Err(err) => {
                if let Some(upload_id) = multipart {
                    let _ = self.storage.abort_multipart(&key, &upload_id).await;
                }
                return Err(err.into());
            }
        };
        tracing::info!(upload_id = %id, image_id = %image_id, state = %UploadState::Pending, method = %row.method, size, "upload issued");
        metrics::upload_transition(UploadState::Pending);
        // Nothing is stored yet: the first PATCH needs no look at storage.
        *self.tus_turns.of(id).progress.lock().await = Some(Progress {
            plan,
            next: 1,
            spooled: 0,
            file: None,
            sending: None,
            stored_whole: false,
            head_checked: false,
        });
        Ok(self.tus_view(&row, 0, None))
    }

    /// Where a tus upload stands (`HEAD`). While a PATCH writes it, the offset it has
    /// reached (the PATCH goes on); otherwise what is stored. One whose bytes have all
    /// come but that is not recorded yet (a restart between the two) is finished now, and
    /// a HEAD while the last PATCH finishes waits for its outcome.
    pub async fn tus_status(&self, id: Uuid) -> Result<TusUpload, UploadError> {
        let row = self.tus_row(id).await?;
        if row.state != UploadState::Pending {
            return self.tus_settled(&row, None);
        }
        let length = u64::try_from(row.declared_size).unwrap_or(0);
        if let Some(offset) = self.tus_turns.of(id).writing_at()
            && offset < length
            && OffsetDateTime::now_utc() <= row.expires_at
        {
            return Ok(self.tus_view(&row, offset, None));
        }
        let mut held = self.tus_turn(id).await?;
        let row = match self.tus_pending(id, None).await? {
            Ok(row) => row,
            Err(settled) => return Ok(settled),
        };
        let progress = self.tus_progress(&mut held, &row).await?;
        if progress.done() {
            return self.tus_finish(held, &row).await;
        }
        let offset = progress.offset();
        Ok(self.tus_view(&row, offset, None))
    }

    /// Appends a PATCH's body at `offset` (`Upload-Offset`); with `checksum`, the bytes
    /// count only if they have that digest (460 and nothing kept otherwise). The PATCH that
    /// brings the offset to the length verifies and completes the upload.
    pub async fn tus_append<R: AsyncRead + Unpin + Send>(
        &self,
        id: Uuid,
        offset: u64,
        declared_len: Option<u64>,
        checksum: Option<ChunkChecksum>,
        body: R,
    ) -> Result<TusUpload, UploadError> {
        let row = self.tus_row(id).await?;
        if row.state != UploadState::Pending {
            return self.tus_settled(&row, Some(offset));
        }
        let mut held = self.tus_turn(id).await?;
        let row = match self.tus_pending(id, Some(offset)).await? {
            Ok(row) => row,
            Err(settled) => return Ok(settled),
        };
        let mut at = self.tus_progress(&mut held, &row).await?.offset();
        if at != offset {
            // Another replica may have taken the upload further since this one looked.
            *held.progress = None;
            at = self.tus_progress(&mut held, &row).await?.offset();
        }
        if at != offset {
            return Err(UploadError::OffsetMismatch { expected: at });
        }
        let length = u64::try_from(row.declared_size).unwrap_or(0);
        if declared_len.is_some_and(|len| offset.saturating_add(len) > length) {
            return Err(UploadError::BeyondLength { length });
        }
        let (turn, ticket) = (held.turn.clone(), held.ticket);
        turn.show(Some(offset));
        let progress = self.tus_progress(&mut held, &row).await?;
        let stop = self
            .tus_receive(&turn, ticket, progress, &row, checksum, body)
            .await;
        if let Some(progress) = held.progress.as_mut() {
            // An upload between requests keeps no file open.
            progress.file = None;
        }
        match stop {
            Err(err) => {
                // What is on disk is looked at again by the next request.
                forget_progress(&mut held).await;
                Err(err)
            }
            Ok(Stop::Failed(err)) => Err(err),
            Ok(Stop::Refused(rejection)) => {
                forget_progress(&mut held).await;
                // The bytes go first: a failed upload never leaves any behind. The turn is
                // held until the upload is failed, so no request stores more meanwhile.
                self.remove_objects(&row).await?;
                self.change(&row, Change::Fail(rejection.code())).await?;
                drop(held);
                self.tus_turns.forget(id);
                Err(UploadError::Rejected(rejection))
            }
            Ok(Stop::Whole) => self.tus_finish(held, &row).await,
            Ok(Stop::Ended | Stop::Asked) => {
                // The part on its way to storage is not waited for: its bytes are in the
                // spool until it arrives.
                let offset = held.progress.as_ref().map_or(offset, Progress::offset);
                Ok(self.tus_view(&row, offset, None))
            }
        }
    }

    /// Terminates a tus upload (`DELETE`): the upload is aborted (or, once completed,
    /// deleted) as `DELETE /api/v1/uploads/{id}` does, and its spool removed.
    pub async fn tus_terminate(&self, id: Uuid) -> Result<(), UploadError> {
        self.tus_row(id).await?;
        let mut held = self.tus_turn(id).await?;
        if let Some((_, sending)) = held.progress.as_mut().and_then(|p| p.sending.take()) {
            sending.abort();
        }
        forget_progress(&mut held).await;
        let deleted = self.delete(id).await;
        drop(held);
        self.tus_turns.forget(id);
        deleted
    }

    /// The part plan of a tus upload of `size` bytes: `PART_SIZE` parts (larger when
    /// `MAX_PARTS` needs it), or one part when it fits in one.
    fn tus_plan(&self, size: u64) -> PartPlan {
        let limits = &self.config.limits;
        if size > limits.part_size {
            PartPlan::new(size, limits.part_size, limits.max_parts)
        } else {
            PartPlan {
                size,
                part_size: size,
                part_count: 1,
            }
        }
    }

    /// The tus upload `id`, as stored; another kind of upload is not found here.
    async fn tus_row(&self, id: Uuid) -> Result<UploadRow, UploadError> {
        let row = self.row(id).await?;
        if row.method != UploadMethod::Tus {
            return Err(UploadError::NotFound);
        }
        Ok(row)
    }

    /// The row again once the turn is held: still pending and within its time (an upload
    /// past it is expired now: 410), or the answer for what it became meanwhile.
    async fn tus_pending(
        &self,
        id: Uuid,
        offset: Option<u64>,
    ) -> Result<Result<UploadRow, TusUpload>, UploadError> {
        let row = self.fresh_row(id).await?;
        if row.state != UploadState::Pending {
            return self.tus_settled(&row, offset).map(Err);
        }
        if OffsetDateTime::now_utc() > row.expires_at {
            self.expire(&row).await?;
            return Err(UploadError::Gone(UploadState::Expired));
        }
        Ok(Ok(row))
    }

    /// The answer for a tus upload that is no longer pending. A completed one is whole
    /// (a PATCH at its end is answered as if it had made it, for a client whose last
    /// answer was lost); anything else is what confirm says of it.
    fn tus_settled(&self, row: &UploadRow, offset: Option<u64>) -> Result<TusUpload, UploadError> {
        let length = u64::try_from(row.declared_size).unwrap_or(0);
        match row.state {
            UploadState::Completed if offset.is_none_or(|o| o == length) => {
                Ok(self.tus_view(row, length, None))
            }
            UploadState::Completed => Err(UploadError::OffsetMismatch { expected: length }),
            UploadState::Failed => {
                let code = row.failure_code.as_deref().unwrap_or_default();
                Err(super::Rejection::from_code(code).map_or(
                    UploadError::Gone(UploadState::Failed),
                    UploadError::Rejected,
                ))
            }
            state => Err(UploadError::Gone(state)),
        }
    }

    fn tus_view(&self, row: &UploadRow, offset: u64, completed: Option<Upload>) -> TusUpload {
        let mut metadata = vec![
            ("image_id".to_owned(), row.image_id.clone()),
            ("filename".to_owned(), row.original_filename.clone()),
            ("filetype".to_owned(), row.content_type.clone()),
        ];
        if let Some(extra) = row
            .metadata
            .as_deref()
            .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
        {
            metadata.extend(extra);
        }
        TusUpload {
            id: row.id,
            length: u64::try_from(row.declared_size).unwrap_or(0),
            offset,
            expires_at: (row.state == UploadState::Pending).then_some(row.expires_at),
            metadata,
            completed,
        }
    }

    /// Takes the upload's turn: asks whoever holds it to stop, and waits for it. A request
    /// that asks later makes this one stop in turn.
    async fn tus_turn(&self, id: Uuid) -> Result<Held, UploadError> {
        let turn = self.tus_turns.of(id);
        let ticket = turn.asked.fetch_add(1, Ordering::SeqCst) + 1;
        turn.wake.notify_waiters();
        let progress = tokio::time::timeout(TURN_WAIT, turn.progress.clone().lock_owned())
            .await
            .map_err(|_| UploadError::Locked)?;
        Ok(Held {
            turn,
            ticket,
            progress,
        })
    }

    /// What this process knows of the upload's progress, or (after a restart, on another
    /// replica, or after a failure) what storage and the spool say: the parts stored in an
    /// unbroken run from the first, then the spool's files from there. A full spool file
    /// whose part is not stored yet is sent now.
    async fn tus_progress<'h>(
        &self,
        held: &'h mut Held,
        row: &UploadRow,
    ) -> Result<&'h mut Progress, UploadError> {
        let progress = match held.progress.take() {
            Some(progress) => progress,
            None => self.tus_load(row).await?,
        };
        let sent = self.tus_sent(held.progress.insert(progress)).await;
        if let Err(err) = sent {
            *held.progress = None;
            held.turn.show(None);
            return Err(err);
        }
        held.progress.as_mut().ok_or(UploadError::NotUploaded)
    }

    async fn tus_load(&self, row: &UploadRow) -> Result<Progress, UploadError> {
        let size = u64::try_from(row.declared_size).unwrap_or(0);
        let plan = match super::multipart::RecordedPlan::of(row) {
            Some(plan) if row.multipart_upload_id.is_some() => plan,
            _ => self.tus_plan(size),
        };
        let whole = |plan: PartPlan| Progress {
            next: plan.part_count,
            spooled: plan.part_len(plan.part_count),
            plan,
            file: None,
            sending: None,
            stored_whole: true,
            head_checked: true,
        };
        let stored_whole = || async {
            Ok::<_, UploadError>(
                self.storage
                    .head(&row.object_key)
                    .await?
                    .is_some_and(|head| head.size == size),
            )
        };
        let spool = &self.tus_spool;
        if let Some((part, len)) = spool.unchecked(row.id).await? {
            // A PATCH with a checksum stopped before its bytes were checked: they never
            // count (none of its parts went to storage before the check).
            spool.roll_back(row.id, part, len).await?;
        }
        let mut stored = 0;
        if let Some(upload_id) = &row.multipart_upload_id {
            match self.storage.list_parts(&row.object_key, upload_id).await {
                Ok(parts) => {
                    let sizes: BTreeMap<i32, u64> =
                        parts.iter().map(|p| (p.part_number, p.size)).collect();
                    while stored < plan.part_count
                        && sizes.get(&(stored + 1)) == Some(&plan.part_len(stored + 1))
                    {
                        stored += 1;
                    }
                }
                // Completed in the store by a finish that did not get to confirm.
                Err(StorageError::NoSuchUpload) if stored_whole().await? => return Ok(whole(plan)),
                Err(err) => return Err(err.into()),
            }
        }
        spool
            .remove_parts_outside(row.id, stored + 1..=plan.part_count)
            .await?;
        if stored == plan.part_count {
            // Every part is in storage (the finish stopped before the store's upload was
            // completed): confirm completes it.
            return Ok(whole(plan));
        }
        let mut next = stored + 1;
        let mut spooled = 0;
        while next <= plan.part_count {
            let len = spool.len(row.id, next).await?.unwrap_or(0);
            let full = plan.part_len(next);
            if len > full {
                spool.truncate(row.id, next, full).await?;
            }
            if len >= full && next < plan.part_count {
                let file = spool.open(row.id, next).await?;
                self.send_part(row, next, file, full).await?;
                next += 1;
                continue;
            }
            spooled = len.min(full);
            break;
        }
        if next == 1 && spooled == 0 && row.multipart_upload_id.is_none() && stored_whole().await? {
            return Ok(whole(plan));
        }
        Ok(Progress {
            plan,
            next,
            spooled,
            file: None,
            sending: None,
            stored_whole: false,
            // Looked at when it was written, or (a restart in the first part) by confirm.
            head_checked: next > 1 || spooled >= SNIFF_BYTES,
        })
    }

    /// Waits for the part on its way to storage, if there is one.
    async fn tus_sent(&self, progress: &mut Progress) -> Result<(), UploadError> {
        let Some((part, sending)) = progress.sending.take() else {
            return Ok(());
        };
        match sending.await {
            Ok(result) => result,
            Err(err) => Err(UploadError::Spool(format!(
                "sending part {part} stopped: {err}"
            ))),
        }
    }

    /// Sends one full part from its spool file, then removes the file.
    async fn send_part(
        &self,
        row: &UploadRow,
        part: i32,
        file: Arc<File>,
        len: u64,
    ) -> Result<(), UploadError> {
        let upload_id = row
            .multipart_upload_id
            .as_deref()
            .ok_or(UploadError::NotMultipart)?;
        self.storage
            .upload_part(
                &row.object_key,
                upload_id,
                part,
                Payload::file_range(file, 0, len),
            )
            .await?;
        self.tus_spool.remove_part(row.id, part).await
    }

    /// Reads the body into the spool, handing each part that fills to storage while the
    /// next one fills. With a checksum, nothing of the body counts until its digest is
    /// known to be right: the spool is marked (so a crash can't make those bytes count),
    /// the parts it fills wait, and the file's first bytes are looked at only then.
    async fn tus_receive<R: AsyncRead + Unpin + Send>(
        &self,
        turn: &Turn,
        ticket: u64,
        progress: &mut Progress,
        row: &UploadRow,
        checksum: Option<ChunkChecksum>,
        body: R,
    ) -> Result<Stop, UploadError> {
        let Some(checksum) = checksum else {
            return self.tus_read(turn, ticket, progress, row, None, body).await;
        };
        let start = (progress.next, progress.spooled);
        self.tus_spool
            .mark_unchecked(row.id, start.0, start.1)
            .await?;
        let mut checked = Checked {
            hasher: checksum.hasher(),
            held_back: Vec::new(),
        };
        let read = self
            .tus_read(turn, ticket, progress, row, Some(&mut checked), body)
            .await;
        let Checked { hasher, held_back } = checked;
        let right = matches!(read, Ok(Stop::Ended | Stop::Whole)) && checksum.matches(hasher);
        let stop = match read {
            Ok(stop) if right => stop,
            read => {
                self.roll_back(row, progress, start).await?;
                turn.show(Some(progress.offset()));
                return match read {
                    Ok(Stop::Ended | Stop::Whole) => {
                        Ok(Stop::Failed(UploadError::ChunkChecksumMismatch))
                    }
                    Ok(Stop::Failed(err)) | Err(err) => Err(err),
                    Ok(Stop::Asked | Stop::Refused(_)) => Ok(Stop::Failed(UploadError::BodyRead(
                        "the body stopped before its checksum could be checked".to_owned(),
                    ))),
                };
            }
        };
        self.tus_spool.checked(row.id).await?;
        turn.show(Some(progress.offset()));
        if let Err(rejection) = self.check_head(row, progress, &held_back).await? {
            return Ok(Stop::Refused(rejection));
        }
        for (part, file) in held_back {
            self.hand_off(row, progress, part, file).await?;
        }
        Ok(stop)
    }

    /// The body into the spool; each part that fills goes to storage (or, with `checked`,
    /// waits in its list).
    async fn tus_read<R: AsyncRead + Unpin + Send>(
        &self,
        turn: &Turn,
        ticket: u64,
        progress: &mut Progress,
        row: &UploadRow,
        mut checked: Option<&mut Checked>,
        mut body: R,
    ) -> Result<Stop, UploadError> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut shutdown = self.shutdown.clone();
        let stop = loop {
            let part_room = progress.plan.part_len(progress.next) - progress.spooled;
            if buf.len() as u64 == part_room || buf.len() == READ_CHUNK {
                self.spool_write(row, progress, &mut buf).await?;
                if checked.is_none() {
                    turn.show(Some(progress.offset()));
                    if let Err(rejection) = self.check_head(row, progress, &[]).await? {
                        break Stop::Refused(rejection);
                    }
                }
                if progress.done() {
                    break Stop::Whole;
                }
                if progress.spooled == progress.plan.part_len(progress.next) {
                    let (part, file) = self.next_part(row, progress).await?;
                    match checked.as_mut() {
                        Some(checked) => checked.held_back.push((part, file)),
                        None => self.hand_off(row, progress, part, file).await?,
                    }
                }
                continue;
            }
            let want = (part_room - buf.len() as u64).min((READ_CHUNK - buf.len()) as u64);
            let wake = turn.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if turn.asked.load(Ordering::SeqCst) != ticket {
                break Stop::Asked;
            }
            let before = buf.len();
            buf.reserve(want as usize);
            let mut limited = (&mut body).take(want);
            let read = tokio::select! {
                read = tokio::time::timeout(IDLE_TIMEOUT, limited.read_buf(&mut buf)) => read,
                () = &mut wake => break Stop::Asked,
                () = shutdown.wait() => break Stop::Failed(UploadError::ShuttingDown),
            };
            match read {
                Ok(Ok(0)) => break Stop::Ended,
                Ok(Ok(_)) => {
                    if let Some(checked) = checked.as_mut() {
                        checked.hasher.update(&buf[before..]);
                    }
                }
                Ok(Err(err)) => break Stop::Failed(UploadError::BodyRead(err.to_string())),
                Err(_) => break Stop::Failed(UploadError::BodyRead("no data for 30 s".to_owned())),
            }
        };
        if let Stop::Refused(_) = stop {
            return Ok(stop);
        }
        // What came before the body stopped is kept (a client resumes from there); with a
        // checksum, the caller decides.
        if !buf.is_empty() {
            self.spool_write(row, progress, &mut buf).await?;
            if checked.is_none() {
                turn.show(Some(progress.offset()));
                if let Err(rejection) = self.check_head(row, progress, &[]).await? {
                    return Ok(Stop::Refused(rejection));
                }
            }
        }
        Ok(stop)
    }

    /// Once the first part holds the file's first bytes (or all of it), looks at them as
    /// the legacy upload does: a header that is not the declared type's, or an image over
    /// the pixel limits, is refused before more of it is stored. Only the dimensions may
    /// lie further on, behind a JPEG's EXIF blocks; confirm reads those at the end. Part 1
    /// is the part filling, or the first of `held_back` (full, waiting for a checksum).
    async fn check_head(
        &self,
        row: &UploadRow,
        progress: &mut Progress,
        held_back: &[(i32, Arc<File>)],
    ) -> Result<Result<(), Rejection>, UploadError> {
        if progress.head_checked {
            return Ok(Ok(()));
        }
        let (file, len) = match held_back.first() {
            Some((1, file)) => (file.clone(), progress.plan.part_len(1)),
            _ if progress.next == 1 => match &progress.file {
                Some(file) => (file.clone(), progress.spooled),
                None => return Ok(Ok(())),
            },
            _ => return Ok(Ok(())),
        };
        if len < SNIFF_BYTES && len < progress.plan.size {
            return Ok(Ok(()));
        }
        progress.head_checked = true;
        let head = streamed::read_file_prefix(&file, len.min(SNIFF_BYTES)).await?;
        let declared = ImageFormat::from_mime(&row.content_type)?;
        let found = verify::inspect_header(&head, declared, self.image_limits());
        match found {
            Err(rejection) if !verify::wants_longer_head(&found, &head, progress.plan.size) => {
                Ok(Err(rejection))
            }
            _ => Ok(Ok(())),
        }
    }

    /// Writes what the buffer holds at the end of the part filling.
    async fn spool_write(
        &self,
        row: &UploadRow,
        progress: &mut Progress,
        buf: &mut BytesMut,
    ) -> Result<(), UploadError> {
        let file = match &progress.file {
            Some(file) => file.clone(),
            None => {
                let file = self.tus_spool.open(row.id, progress.next).await?;
                progress.file = Some(file.clone());
                file
            }
        };
        let bytes = buf.split().freeze();
        let len = bytes.len() as u64;
        streamed::write_at(&file, bytes, progress.spooled).await?;
        progress.spooled += len;
        Ok(())
    }

    /// Moves on from a part that has filled; returns it and its file.
    async fn next_part(
        &self,
        row: &UploadRow,
        progress: &mut Progress,
    ) -> Result<(i32, Arc<File>), UploadError> {
        let part = progress.next;
        let file = match progress.file.take() {
            Some(file) => file,
            None => self.tus_spool.open(row.id, part).await?,
        };
        progress.next += 1;
        progress.spooled = 0;
        Ok((part, file))
    }

    /// Sends a full part in the background, once the one before it has arrived: one part
    /// travels while the next fills.
    async fn hand_off(
        &self,
        row: &UploadRow,
        progress: &mut Progress,
        part: i32,
        file: Arc<File>,
    ) -> Result<(), UploadError> {
        self.tus_sent(progress).await?;
        let len = progress.plan.part_len(part);
        let (service, row) = (self.clone(), row.clone());
        let sending = tokio::spawn(async move { service.send_part(&row, part, file, len).await });
        progress.sending = Some((part, sending));
        Ok(())
    }

    /// Puts a PATCH's bytes back out: the spool as it was at `start`.
    async fn roll_back(
        &self,
        row: &UploadRow,
        progress: &mut Progress,
        start: (i32, u64),
    ) -> Result<(), UploadError> {
        let (part, spooled) = start;
        progress.next = part;
        progress.spooled = spooled;
        progress.file = None;
        if part == 1 && spooled < SNIFF_BYTES {
            progress.head_checked = false;
        }
        self.tus_spool.roll_back(row.id, part, spooled).await
    }

    /// Every byte has come: the last part goes to storage (or the whole file, when it is
    /// one part), and the upload is confirmed like any other: the store's upload completed,
    /// verified, then completed or failed (its object removed).
    async fn tus_finish(&self, mut held: Held, row: &UploadRow) -> Result<TusUpload, UploadError> {
        let Some(progress) = held.progress.as_mut() else {
            return Err(UploadError::NotUploaded);
        };
        let stored = async {
            self.tus_sent(progress).await?;
            if progress.stored_whole {
                return Ok(());
            }
            let (part, len) = (progress.next, progress.spooled);
            let file = match progress.file.take() {
                Some(file) => file,
                None => self.tus_spool.open(row.id, part).await?,
            };
            if row.multipart_upload_id.is_some() {
                // Confirm completes the store's upload, as for any multipart upload.
                self.send_part(row, part, file, len).await
            } else {
                let format = ImageFormat::from_mime(&row.content_type)?;
                self.storage
                    .put(
                        &row.object_key,
                        format.mime(),
                        Payload::file_range(file, 0, len),
                    )
                    .await?;
                Ok(())
            }
        }
        .await;
        if let Err(err) = stored {
            *held.progress = None;
            held.turn.show(None);
            return Err(err);
        }
        progress.stored_whole = true;
        self.tus_spool.remove(row.id).await?;
        let confirmed = self.confirm(row.id).await;
        *held.progress = None;
        drop(held);
        self.tus_turns.forget(row.id);
        let upload = confirmed?;
        let row = self.fresh_row(row.id).await?;
        let length = u64::try_from(row.declared_size).unwrap_or(0);
        Ok(self.tus_view(&row, length, Some(upload)))
    }

    /// Removes an upload's spool (it is finished, aborted or expired).
    pub(super) async fn remove_spool(&self, id: Uuid) -> Result<(), UploadError> {
        self.tus_turns.forget(id);
        self.tus_spool.remove(id).await
    }

    /// Spool folders of uploads that are no longer pending (or not known), for the sweeper.
    pub(super) async fn remove_orphan_spools(&self) -> Result<usize, UploadError> {
        let mut removed = 0;
        for folder in self.tus_spool.folders().await? {
            match folder {
                Ok(id) => {
                    let pending = self
                        .db
                        .find(id)
                        .await?
                        .is_some_and(|row| row.state == UploadState::Pending);
                    if !pending {
                        self.remove_spool(id).await?;
                        removed += 1;
                    }
                }
                Err(path) => {
                    self.tus_spool.remove_stray(path).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Drops what this process knew of an upload's progress (the next request reads storage
/// and the spool again), once the part on its way to storage, if any, has stopped: never
/// two sends of one part at once.
async fn forget_progress(held: &mut Held) {
    if let Some((_, sending)) = held.progress.as_mut().and_then(|p| p.sending.take()) {
        let _ = sending.await;
    }
    *held.progress = None;
    held.turn.show(None);
}
