//! `upload-broker upload FILE... --image-id ID --server URL`: uploads files through a
//! running service's v1 API, the way a browser does. Files above the server's multipart
//! threshold go up in parts, several at once; every byte is covered by a SHA-256 the store
//! checks; an interrupted upload resumes where it stopped when the command runs again;
//! the resulting URLs are printed one a line, in the order the files were given.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{StreamExt, TryStreamExt, stream};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};
use upload_broker_types::{
    CreateUploadRequest, ImageFormat, IssuedUpload, PartPlan, SignPartsRequest, SignedPartList,
    Upload, UploadMethod, UploadState, UploadedPartList,
};
use uuid::Uuid;

/// `upload`'s arguments.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Image files to upload (png, jpg, jpeg, gif, webp, bmp, tif, tiff).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The image_id the uploads are filed under.
    #[arg(long)]
    image_id: String,
    /// The service's base URL.
    #[arg(
        long,
        env = "UPLOAD_BROKER_SERVER",
        default_value = "http://127.0.0.1:5000"
    )]
    server: String,
    /// An API key or upload-link token, when the service has API_KEYS set.
    #[arg(long, env = "UPLOAD_BROKER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Transfers at once: whole files and parts of large ones (1-32).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    parallel: u16,
    /// Start every upload afresh instead of resuming an interrupted one.
    #[arg(long)]
    no_resume: bool,
    /// Print each upload's whole record as a JSON line instead of its URL.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs the command.
pub fn upload(args: UploadArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: UploadArgs) -> ExitCode {
    let api = match Api::new(&args.server, args.api_key.clone()) {
        Ok(api) => api,
        Err(failure) => {
            eprintln!("error: {failure}");
            return ExitCode::from(2);
        }
    };
    let resume = if args.no_resume {
        None
    } else {
        ResumeFile::locate()
    };
    let draw = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let ctx = Arc::new(Ctx {
        api,
        image_id: args.image_id.clone(),
        parallel: usize::from(args.parallel),
        transfers: Semaphore::new(usize::from(args.parallel)),
        resume: resume.map(Mutex::new),
        bars: MultiProgress::with_draw_target(draw),
    });

    let results: Vec<Result<Upload, Failure>> = stream::iter(args.files.iter())
        .map(|path| {
            let ctx = Arc::clone(&ctx);
            async move { ctx.upload(path).await }
        })
        .buffered(usize::from(args.parallel))
        .collect()
        .await;

    let mut failed = 0;
    for (path, result) in args.files.iter().zip(results) {
        match result {
            // Through a `Value`, so the keys come sorted as they always have.
            Ok(record) if args.json => match serde_json::to_value(&record) {
                Ok(record) => println!("{record}"),
                Err(err) => {
                    failed += 1;
                    eprintln!("{}: {err}", path.display());
                }
            },
            Ok(record) => println!("{}", record.s3_url.unwrap_or_default()),
            Err(failure) => {
                failed += 1;
                eprintln!("{}: {failure}", path.display());
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} of {} uploads failed", args.files.len());
        ExitCode::FAILURE
    }
}

/// What went wrong with one file.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The service refused, with its error code.
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Local(String),
}

impl Failure {
    fn code(&self) -> Option<&str> {
        match self {
            Failure::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth another try: the network, or a service or store that said "later".
    fn is_transient(&self) -> bool {
        match self {
            Failure::Refused { status, .. } => *status == 429 || *status >= 500,
            Failure::Transport(_) => true,
            Failure::Local(_) => false,
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(err: reqwest::Error) -> Self {
        // The chain says what happened (refused, reset, timed out); the top rarely does.
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        Failure::Transport(text)
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Local(err.to_string())
    }
}

/// Tries per request before giving up on a transient failure.
const ATTEMPTS: u32 = 5;

/// Waits before try `attempt` (1-based) of a request: 0.25 s, 0.5 s, 1 s, 2 s.
async fn back_off(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(
        250 << attempt.saturating_sub(1).min(4),
    ))
    .await;
}

/// Runs `once` until it succeeds, fails for good, or has been tried `ATTEMPTS` times,
/// waiting longer before each new try.
async fn retrying_transient<T>(
    mut once: impl AsyncFnMut() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let mut attempt = 1;
    loop {
        match once().await {
            Err(failure) if failure.is_transient() && attempt < ATTEMPTS => {
                back_off(attempt).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The service's v1 API.
struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(server: &str, key: Option<String>) -> Result<Self, Failure> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::Local(format!(
                "--server must be an http:// or https:// URL, not {server:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("upload-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Local(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { http, base, key })
    }

    /// One call, retried on transient failures: the answer's text, `None` for a 204.
    /// `body` is JSON.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<String>, Failure> {
        retrying_transient(async || {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .timeout(Duration::from_secs(120));
            if let Some(key) = &self.key {
                request = request.bearer_auth(key);
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            match request.send().await {
                Ok(resp) => read_answer(resp).await,
                Err(err) => Err(err.into()),
            }
        })
        .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        typed(self.call(reqwest::Method::GET, path, None).await?)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure::Local(e.to_string()))?;
        typed(self.call(reqwest::Method::POST, path, Some(&body)).await?)
    }

    /// Asks the service to check upload `id`'s object; its record once it passed.
    async fn confirm(&self, id: Uuid) -> Result<Upload, Failure> {
        let path = format!("/api/v1/uploads/{id}/confirm");
        typed(self.call(reqwest::Method::POST, &path, None).await?)
    }

    async fn delete(&self, path: &str) -> Result<(), Failure> {
        self.call(reqwest::Method::DELETE, path, None).await?;
        Ok(())
    }

    /// PUTs `body` to a presigned URL with the headers it was signed with.
    async fn put(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        body: reqwest::Body,
        length: u64,
    ) -> Result<(), Failure> {
        let mut request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let resp = request.send().await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(Failure::Refused {
            status,
            code: xml_tag(&text, "Code").unwrap_or("StorageError").to_owned(),
            message: xml_tag(&text, "Message")
                .unwrap_or("the store refused the bytes")
                .to_owned(),
        })
    }
}

/// The service's answer: its text on success, its `{code, message}` error otherwise.
async fn read_answer(resp: reqwest::Response) -> Result<Option<String>, Failure> {
    let status = resp.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let text = resp.text().await?;
    if status.is_success() {
        return Ok(Some(text));
    }
    let refusal: Refusal = serde_json::from_str(&text).unwrap_or_default();
    Err(Failure::Refused {
        status: status.as_u16(),
        code: refusal.code.unwrap_or_else(|| "http_error".to_owned()),
        message: refusal
            .message
            .or(refusal.error)
            .unwrap_or_else(|| format!("the service answered {status}")),
    })
}

/// A refusal's body, whatever answered: the service's `Error`, the legacy API's
/// `{success: false, error}`, or something else in front of the service.
#[derive(Debug, Default, Deserialize)]
struct Refusal {
    code: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

/// A successful answer as the type it should be.
fn typed<T: DeserializeOwned>(answer: Option<String>) -> Result<T, Failure> {
    serde_json::from_str(answer.as_deref().unwrap_or_default()).map_err(|err| {
        Failure::Transport(format!(
            "the service's answer is not the one expected: {err}"
        ))
    })
}

/// The text of the first `<tag>` in an S3 XML error.
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// What every file's upload shares.
struct Ctx {
    api: Api,
    image_id: String,
    parallel: usize,
    /// One permit a transfer (a whole file or a part) in flight.
    transfers: Semaphore,
    resume: Option<Mutex<ResumeFile>>,
    bars: MultiProgress,
}

/// A file on its way: what was measured of it, and its upload.
struct Local {
    path: PathBuf,
    filename: String,
    format: ImageFormat,
    size: u64,
    checksum: String,
    /// The resume file's key for it.
    key: String,
}

/// An upload of the service's, as the command left it in the resume file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Started {
    upload_id: Uuid,
    method: UploadMethod,
    part_size: Option<u64>,
    part_count: Option<u64>,
    checksum_algorithm: Option<String>,
}

impl Started {
    fn new(issued: &IssuedUpload) -> Self {
        Self {
            upload_id: issued.upload_id,
            method: issued.method,
            part_size: issued.part_size.and_then(|n| u64::try_from(n).ok()),
            part_count: issued.part_count.and_then(|n| u64::try_from(n).ok()),
            checksum_algorithm: issued.checksum_algorithm.clone(),
        }
    }

    /// How the service cut a file of `size` bytes into parts.
    fn plan(&self, size: u64) -> Result<PartPlan, Failure> {
        let (Some(part_size), Some(part_count)) = (self.part_size, self.part_count) else {
            return Err(Failure::Local("the service planned no parts".to_owned()));
        };
        if part_size == 0 || size.div_ceil(part_size) != part_count {
            return Err(Failure::Local(format!(
                "the service's plan of {part_count} parts of {part_size} bytes does not fit the file"
            )));
        }
        Ok(PartPlan {
            size,
            part_size,
            part_count: i32::try_from(part_count).map_err(|e| Failure::Local(e.to_string()))?,
        })
    }
}

impl Ctx {
    async fn upload(&self, path: &Path) -> Result<Upload, Failure> {
        let bar = self.bars.add(ProgressBar::no_length());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:20!} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let result = self.upload_with(path, &bar).await;
        match &result {
            Ok(_) => bar.finish_with_message("done"),
            Err(_) => bar.abandon_with_message("failed"),
        }
        result
    }

    async fn upload_with(&self, path: &Path, bar: &ProgressBar) -> Result<Upload, Failure> {
        bar.set_message("reading");
        let local = self.inspect(path).await?;
        bar.set_length(local.size);
        if let Some(record) = self.try_resume(&local, bar).await? {
            return Ok(record);
        }
        bar.set_message("starting");
        let request = CreateUploadRequest {
            image_id: self.image_id.as_str().into(),
            filename: local.filename.as_str().into(),
            content_type: local.format.mime().into(),
            size: i64::try_from(local.size).map_err(|e| Failure::Local(e.to_string()))?,
            checksum_sha256: Some(local.checksum.as_str().into()),
            checksum_algorithm: Some("SHA256".into()),
            metadata: None,
        };
        let issued: IssuedUpload = self.api.post("/api/v1/uploads", &request).await?;
        let started = Started::new(&issued);
        self.remember(&local, Some(&started)).await;
        bar.set_message("uploading");
        if started.method == UploadMethod::Multipart {
            self.send_parts(&local, &started, &BTreeSet::new(), bar)
                .await?;
        } else {
            let url = issued.url.ok_or_else(|| missing("url"))?;
            let headers = issued.headers.unwrap_or_default();
            self.send_whole(&local, &url, &headers, bar).await?;
        }
        self.finish(&local, started.upload_id, bar).await
    }

    /// Reads the file once: its size, type (from the name, checked against the bytes) and
    /// SHA-256.
    async fn inspect(&self, path: &Path) -> Result<Local, Failure> {
        let path =
            std::fs::canonicalize(path).map_err(|e| Failure::Local(format!("cannot open: {e}")))?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Failure::Local("not a file".to_owned()))?;
        let format = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(|e| ImageFormat::from_extension(e).ok())
            .ok_or_else(|| {
                Failure::Local(
                    "the name must end in .png, .jpg, .jpeg, .gif, .webp, .bmp, .tif or .tiff"
                        .to_owned(),
                )
            })?;
        let hashed = path.clone();
        let (size, head, digest) = tokio::task::spawn_blocking(move || hash_file(&hashed))
            .await
            .map_err(|e| Failure::Local(e.to_string()))??;
        if size == 0 {
            return Err(Failure::Local("the file is empty".to_owned()));
        }
        if ImageFormat::sniff(&head) != Some(format) {
            return Err(Failure::Local(format!(
                "the bytes are not a {} image",
                format.extension().to_uppercase()
            )));
        }
        let checksum = BASE64.encode(digest);
        let key = format!(
            "{}|{}|{}|{size}|{checksum}",
            self.api.base,
            self.image_id,
            path.display()
        );
        Ok(Local {
            path,
            filename,
            format,
            size,
            checksum,
            key,
        })
    }

    /// Goes on with an upload an earlier run started, when the service still has it.
    /// `None`: there was none, or it cannot go on, so start anew.
    async fn try_resume(
        &self,
        local: &Local,
        bar: &ProgressBar,
    ) -> Result<Option<Upload>, Failure> {
        let Some(resume) = &self.resume else {
            return Ok(None);
        };
        let Some(started) = resume.lock().await.get(&local.key) else {
            return Ok(None);
        };
        let id = started.upload_id;
        let record: Upload = match self.api.get(&format!("/api/v1/uploads/{id}")).await {
            Ok(record) => record,
            Err(Failure::Refused { status: 404, .. }) => {
                self.remember(local, None).await;
                return Ok(None);
            }
            Err(failure) => return Err(failure),
        };
        match record.state {
            UploadState::Completed => {
                self.remember(local, None).await;
                bar.set_position(local.size);
                return Ok(Some(record));
            }
            UploadState::Pending => {}
            _ => {
                self.remember(local, None).await;
                return Ok(None);
            }
        }
        if started.method != UploadMethod::Multipart {
            // The PUT may have gone through before the run stopped; otherwise its URL is
            // not kept, so that upload is dropped and a new one made.
            return match self.finish(local, id, bar).await {
                Err(Failure::Refused { status: 409, .. }) => {
                    let _ = self.api.delete(&format!("/api/v1/uploads/{id}")).await;
                    self.remember(local, None).await;
                    Ok(None)
                }
                other => other.map(Some),
            };
        }
        let plan = started.plan(local.size)?;
        let listed: UploadedPartList = self.api.get(&format!("/api/v1/uploads/{id}/parts")).await?;
        let held: BTreeSet<i32> = listed
            .parts
            .iter()
            .filter(|part| {
                (1..=plan.part_count).contains(&part.part_number)
                    && u64::try_from(part.size).ok() == Some(plan.part_len(part.part_number))
            })
            .map(|part| part.part_number)
            .collect();
        let held_bytes: u64 = held.iter().map(|n| plan.part_len(*n)).sum();
        bar.set_position(held_bytes);
        self.bars.suspend(|| {
            eprintln!(
                "resuming {}: {} of {} parts already stored",
                local.filename,
                held.len(),
                plan.part_count
            );
        });
        bar.set_message("uploading");
        match self.send_parts(local, &started, &held, bar).await {
            Err(failure) if matches!(failure.code(), Some("expired" | "aborted")) => {
                self.remember(local, None).await;
                bar.set_position(0);
                Ok(None)
            }
            Err(failure) => Err(failure),
            Ok(()) => self.finish(local, id, bar).await.map(Some),
        }
    }

    /// Confirms: the service checks the object and answers with the record.
    async fn finish(&self, local: &Local, id: Uuid, bar: &ProgressBar) -> Result<Upload, Failure> {
        bar.set_message("verifying");
        let result = self.api.confirm(id).await;
        match &result {
            // Not there yet: the upload can still go on, so it stays in the resume file.
            Err(Failure::Refused { status: 409, .. }) => {}
            Err(failure) if failure.is_transient() => {}
            _ => self.remember(local, None).await,
        }
        result
    }

    /// One presigned PUT of the whole file, streamed from disk.
    async fn send_whole(
        &self,
        local: &Local,
        url: &str,
        headers: &BTreeMap<String, String>,
        bar: &ProgressBar,
    ) -> Result<(), Failure> {
        let _permit = self.transfers.acquire().await.map_err(|_| closed())?;
        retrying_transient(async || {
            bar.set_position(0);
            let file = tokio::fs::File::open(&local.path).await?;
            let counted = bar.clone();
            let chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
            let body = reqwest::Body::wrap_stream(chunks);
            self.api.put(url, headers, body, local.size).await
        })
        .await
    }

    /// Sends every part not in `held`, `--parallel` at once.
    async fn send_parts(
        &self,
        local: &Local,
        started: &Started,
        held: &BTreeSet<i32>,
        bar: &ProgressBar,
    ) -> Result<(), Failure> {
        let plan = started.plan(local.size)?;
        let missing: Vec<i32> = (1..=plan.part_count)
            .filter(|n| !held.contains(n))
            .collect();
        stream::iter(missing)
            .map(|number| self.send_part(local, started, &plan, number, bar))
            .buffer_unordered(self.parallel)
            .try_collect::<()>()
            .await
    }

    async fn send_part(
        &self,
        local: &Local,
        started: &Started,
        plan: &PartPlan,
        number: i32,
        bar: &ProgressBar,
    ) -> Result<(), Failure> {
        let _permit = self.transfers.acquire().await.map_err(|_| closed())?;
        let len = plan.part_len(number);
        let path = local.path.clone();
        let offset = u64::try_from(number - 1).unwrap_or(0) * plan.part_size;
        let bytes = tokio::task::spawn_blocking(move || read_at(&path, offset, len))
            .await
            .map_err(|e| Failure::Local(e.to_string()))??;
        let checksums = (started.checksum_algorithm.as_deref() == Some("SHA256")).then(|| {
            let digest = BASE64.encode(Sha256::digest(&bytes));
            BTreeMap::from([(number.to_string(), digest.into())])
        });
        let request = SignPartsRequest {
            part_numbers: vec![i64::from(number)],
            checksums_sha256: checksums,
        };
        let bytes = bytes::Bytes::from(bytes);
        let path = format!("/api/v1/uploads/{}/parts", started.upload_id);
        let mut attempt = 1;
        loop {
            // Signed afresh for each try, so an expired URL is never reused.
            let signed: SignedPartList = self.api.post(&path, &request).await?;
            let part = signed.parts.first().ok_or_else(|| missing("part"))?;
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let body = counted_chunks(bytes.clone(), bar.clone(), Arc::clone(&sent));
            let outcome = self.api.put(&part.url, &part.headers, body, len).await;
            if outcome.is_err() {
                // What this try sent is sent again by the next.
                let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
                bar.set_position(bar.position().saturating_sub(sent));
            }
            match outcome {
                Ok(()) => return Ok(()),
                Err(failure)
                    if attempt < ATTEMPTS
                        && (failure.is_transient()
                            || matches!(failure, Failure::Refused { status: 403, .. })) =>
                {
                    back_off(attempt).await;
                    attempt += 1;
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    /// Keeps (`Some`) or forgets (`None`) a file's upload in the resume file.
    async fn remember(&self, local: &Local, started: Option<&Started>) {
        if let Some(resume) = &self.resume {
            let mut resume = resume.lock().await;
            if let Err(err) = resume.set(&local.key, started) {
                self.bars.suspend(|| {
                    eprintln!(
                        "warning: cannot write {}: {err} (this upload will not resume)",
                        resume.path.display()
                    );
                });
            }
        }
    }
}

/// A part's bytes as a body of 256 KiB chunks, each counted on the bar (and in `sent`)
/// as the HTTP client takes it.
fn counted_chunks(
    bytes: bytes::Bytes,
    bar: ProgressBar,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> reqwest::Body {
    const CHUNK: usize = 256 * 1024;
    let chunks = (0..bytes.len().div_ceil(CHUNK)).map(move |i| {
        let chunk = bytes.slice(i * CHUNK..((i + 1) * CHUNK).min(bytes.len()));
        bar.inc(chunk.len() as u64);
        sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk)
    });
    reqwest::Body::wrap_stream(stream::iter(chunks))
}

fn closed() -> Failure {
    Failure::Local("stopped".to_owned())
}

fn missing(field: &str) -> Failure {
    Failure::Transport(format!("the service's answer has no {field}"))
}

/// The file's size, first bytes and SHA-256.
fn hash_file(path: &Path) -> std::io::Result<(u64, Vec<u8>, [u8; 32])> {
    let mut file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1024 * 1024];
    let mut head = Vec::new();
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64 - head.len())]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, head, hasher.finalize().into()))
}

fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Uploads in progress, kept across runs in `$XDG_STATE_HOME/upload-broker/uploads.json`
/// (or `~/.local/state/...`): for each file (by server, image_id, path, size and SHA-256)
/// the upload that carries it.
struct ResumeFile {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ResumeState {
    uploads: BTreeMap<String, Started>,
}

impl ResumeFile {
    fn locate() -> Option<Self> {
        let dir = std::env::var_os("XDG_STATE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })?;
        Some(Self {
            path: dir.join("upload-broker").join("uploads.json"),
        })
    }

    fn load(&self) -> ResumeState {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn get(&self, key: &str) -> Option<Started> {
        self.load().uploads.remove(key)
    }

    /// Read, change, write whole (through a temporary file, so a crash never leaves half).
    fn set(&mut self, key: &str, started: Option<&Started>) -> std::io::Result<()> {
        let mut state = self.load();
        match started {
            Some(started) => state.uploads.insert(key.to_owned(), started.clone()),
            None => state.uploads.remove(key),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = self.path.with_extension("json.tmp");
        std::fs::write(&temp, serde_json::to_vec_pretty(&state)?)?;
        std::fs::rename(&temp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(part_size: u64, part_count: u64) -> Started {
        Started {
            upload_id: Uuid::nil(),
            method: UploadMethod::Multipart,
            part_size: Some(part_size),
            part_count: Some(part_count),
            checksum_algorithm: None,
        }
    }

    #[test]
    fn parts_split_the_file_exactly() {
        let plan = started(10, 3).plan(25).expect("a plan");
        let lens: Vec<u64> = (1..=3).map(|n| plan.part_len(n)).collect();
        assert_eq!(lens, [10, 10, 5]);
    }

    #[test]
    fn a_plan_that_does_not_fit_the_file_is_refused() {
        assert!(started(10, 2).plan(25).is_err());
        assert!(started(0, 3).plan(25).is_err());
    }

    #[test]
    fn the_resume_file_keeps_its_shape() {
        let entry = serde_json::json!({
            "upload_id": "0190d5e6-8a5e-7c41-9a3e-6f1d2b3c4d5e", "method": "MULTIPART",
            "part_size": 5, "part_count": 2, "checksum_algorithm": "SHA256",
        });
        let read: Started = serde_json::from_value(entry.clone()).expect("an entry");
        assert_eq!(serde_json::to_value(&read).expect("json"), entry);
    }

    #[test]
    fn store_errors_are_read_from_their_xml() {
        let xml = "<Error><Code>BadDigest</Code><Message>nope</Message></Error>";
        assert_eq!(xml_tag(xml, "Code"), Some("BadDigest"));
        assert_eq!(xml_tag(xml, "Message"), Some("nope"));
        assert_eq!(xml_tag(xml, "Other"), None);
    }
}
