//! tus 1.0.0 at `/api/v1/tus`: the protocol's rules, what a client sees at each step, and
//! what storage, the spool and the database hold after it.

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const TUS: &str = "/api/v1/tus";
const PART: usize = 5 * MIB;
const SMALL_PARTS_ONLY: (&str, &str) = ("PART_SIZE", "5242880");
const KEYS: &[(&str, &str)] = &[
    ("API_KEYS", "key-alpha"),
    ("SECRET_KEY", "a-long-enough-secret-for-links"),
    SMALL_PARTS_ONLY,
];

/// `Upload-Metadata` of these pairs.
fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", BASE64.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn png_meta(image_id: &str) -> String {
    metadata(&[
        ("image_id", image_id),
        ("filename", "photo.png"),
        ("filetype", "image/png"),
    ])
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

fn offset_of(headers: &HeaderMap) -> u64 {
    header(headers, "upload-offset").parse().expect("offset")
}

/// A tus client of one test service, with a credential when it has one.
struct Client<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl<'a> Client<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, token: None }
    }

    fn with(app: &'a TestApp, token: &str) -> Self {
        Self {
            app,
            token: Some(token.to_owned()),
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .app
            .client
            .request(method, url)
            .header("Tus-Resumable", "1.0.0");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn create(&self, length: usize, metadata: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, &self.app.url(TUS))
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .expect("POST")
    }

    /// Creates an upload, which must succeed; its `Location`.
    async fn created(&self, length: usize, metadata: &str) -> String {
        let resp = self.create(length, metadata).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(offset_of(resp.headers()), 0);
        header(resp.headers(), "location").to_owned()
    }

    async fn patch(
        &self,
        location: &str,
        offset: usize,
        bytes: &[u8],
        checksum: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .request(reqwest::Method::PATCH, location)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes.to_vec());
        if let Some(checksum) = checksum {
            req = req.header("Upload-Checksum", checksum);
        }
        req.send().await.expect("PATCH")
    }

    /// Appends, which must be accepted; the new offset.
    async fn appended(&self, location: &str, offset: usize, bytes: &[u8]) -> u64 {
        let resp = self.patch(location, offset, bytes, None).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "PATCH at {offset}");
        offset_of(resp.headers())
    }

    async fn head(&self, location: &str) -> reqwest::Response {
        self.request(reqwest::Method::HEAD, location)
            .send()
            .await
            .expect("HEAD")
    }

    async fn offset(&self, location: &str) -> u64 {
        let resp = self.head(location).await;
        assert_eq!(resp.status(), StatusCode::OK);
        offset_of(resp.headers())
    }

    /// Sends `bytes` from the start in PATCHes of `chunk` bytes; the last answer.
    async fn send_all(&self, location: &str, bytes: &[u8], chunk: usize) -> reqwest::Response {
        self.send_all_from(location, bytes, 0, chunk).await
    }

    /// Sends the rest of `bytes` from `offset` in PATCHes of `chunk` bytes; the last answer.
    async fn send_all_from(
        &self,
        location: &str,
        bytes: &[u8],
        mut offset: usize,
        chunk: usize,
    ) -> reqwest::Response {
        loop {
            let end = (offset + chunk).min(bytes.len());
            let resp = self
                .patch(location, offset, &bytes[offset..end], None)
                .await;
            if end == bytes.len() || resp.status() != StatusCode::NO_CONTENT {
                return resp;
            }
            assert_eq!(offset_of(resp.headers()), end as u64);
            offset = end;
        }
    }
}

fn id_of(location: &str) -> &str {
    location.rsplit('/').next().expect("id")
}

/// The spool's files of one upload: (part number, length), sorted.
fn spool_files(app: &TestApp, id: &str) -> Vec<(i32, u64)> {
    let dir = app.dir.path().join("tus").join(id);
    let mut files: Vec<(i32, u64)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry"))
                .map(|e| {
                    let part = e.file_name().to_str().expect("name").parse().expect("part");
                    (part, e.metadata().expect("meta").len())
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_unstable();
    files
}

/// The part numbers and sizes the store holds for a tus upload's multipart upload.
async fn stored_parts(app: &TestApp, id: &str) -> Vec<(i32, u64)> {
    let row = app.row(id).await.expect("row");
    let upload_id = row.multipart_upload_id.expect("multipart upload");
    let parts = app
        .storage
        .list_parts(&row.object_key, &upload_id)
        .await
        .expect("list parts");
    parts.into_iter().map(|p| (p.part_number, p.size)).collect()
}

/// Waits (up to 10 s) until the store holds `count` parts: a full part travels in the
/// background while the next one fills.
async fn await_parts(app: &TestApp, id: &str, count: usize) -> Vec<(i32, u64)> {
    for _ in 0..100 {
        let parts = stored_parts(app, id).await;
        if parts.len() >= count {
            return parts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store never held {count} parts of {id}");
}

/// The upload's v1 record, completed with exactly `bytes` in storage.
async fn assert_completed_with(app: &TestApp, id: &str, bytes: &[u8]) -> Value {
    let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
    assert_eq!(record["state"], "completed", "{record}");
    assert_eq!(record["file_size"], bytes.len() as u64);
    let key = record["key"].as_str().expect("key");
    let stored = app.object(key).await.expect("object in the bucket");
    assert!(stored == bytes, "the stored bytes differ from the file");
    let url = record["s3_url"].as_str().expect("s3_url");
    let served = app
        .client
        .get(url)
        .send()
        .await
        .expect("GET s3_url")
        .bytes()
        .await
        .expect("bytes");
    assert!(served == bytes, "s3_url serves other bytes");
    record
}

/// Nothing in the bucket (objects or multipart uploads), and no spool.
async fn assert_nothing_left(app: &TestApp) {
    assert_eq!(files_in_store(app).await, Vec::<String>::new());
    let spool = app.dir.path().join("tus");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spool holds {left:?}");
}

/// A PNG of `size` bytes whose padding varies, so a misplaced byte shows.
fn patterned_png(size: usize) -> Vec<u8> {
    png_with_padding(size, |i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
}

#[tokio::test]
async fn the_server_says_what_it_speaks_and_refuses_other_versions() {
    let app = TestApp::spawn_with(&[("MAX_UPLOAD_SIZE", "300000000")]).await;
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(TUS))
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let headers = resp.headers();
    assert_eq!(header(headers, "tus-resumable"), "1.0.0");
    assert_eq!(header(headers, "tus-version"), "1.0.0");
    let extensions: Vec<&str> = header(headers, "tus-extension").split(',').collect();
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    ] {
        assert!(extensions.contains(&extension), "{extension}");
    }
    assert_eq!(header(headers, "tus-checksum-algorithm"), "sha1,sha256");
    assert_eq!(header(headers, "tus-max-size"), "300000000");

    // Without Tus-Resumable, or with another version: 412, and nothing is made.
    for version in [None, Some("0.2.2")] {
        let mut req = app
            .client
            .post(app.url(TUS))
            .header("Upload-Length", PNG.len().to_string())
            .header("Upload-Metadata", png_meta("album"));
        if let Some(version) = version {
            req = req.header("Tus-Resumable", version);
        }
        let resp = req.send().await.expect("POST");
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(header(resp.headers(), "tus-version"), "1.0.0");
        assert_eq!(header(resp.headers(), "tus-resumable"), "1.0.0");
        let (_, code) = error_code(resp).await;
        assert_eq!(code, "unsupported_tus_version");
    }
    assert_eq!(app.count_rows().await, 0);

    // Every answer carries Tus-Resumable, a 404 too.
    let tus = Client::new(&app);
    let missing = app.url(&format!("{TUS}/0190d5e6-8a5e-7c41-9a3e-6f1d2b3c4d5e"));
    let resp = tus.head(&missing).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(resp.headers(), "tus-resumable"), "1.0.0");

    // X-HTTP-Method-Override: a POST is the method it names.
    let location = tus.created(PNG.len(), &png_meta("album")).await;
    let resp = tus
        .request(reqwest::Method::POST, &location)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(PNG[..100].to_vec())
        .send()
        .await
        .expect("POST as PATCH");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(resp.headers()), 100);
    let resp = tus
        .request(reqwest::Method::POST, &location)
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .expect("POST as DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(tus.head(&location).await.status(), StatusCode::GONE);
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn a_creation_is_refused_before_any_byte_is_stored() {
    let app = TestApp::spawn_with(&[("MAX_UPLOAD_SIZE", "1000000")]).await;
    let tus = Client::new(&app);
    let meta = |pairs: &[(&str, &str)]| metadata(pairs);
    let cases: Vec<(Option<&str>, String, StatusCode, &str)> = vec![
        (
            None,
            png_meta("album"),
            StatusCode::BAD_REQUEST,
            "invalid_tus_request",
        ),
        (
            Some("ten"),
            png_meta("album"),
            StatusCode::BAD_REQUEST,
            "invalid_tus_request",
        ),
        (
            Some("1000001"),
            png_meta("album"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            Some("0"),
            png_meta("album"),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            Some("100"),
            meta(&[("filename", "a.png")]),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            Some("100"),
            png_meta("admin"),
            StatusCode::BAD_REQUEST,
            "reserved_image_id",
        ),
        (
            Some("100"),
            meta(&[("image_id", "album"), ("filetype", "image/png")]),
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            Some("100"),
            meta(&[
                ("image_id", "album"),
                ("filename", "a.svg"),
                ("filetype", "image/svg+xml"),
            ]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            Some("100"),
            meta(&[("image_id", "album"), ("filename", "a.svg")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            Some("100"),
            meta(&[("image_id", "album"), ("filename", "photo")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            Some("100"),
            meta(&[
                ("image_id", "album"),
                ("filename", "a.jpg"),
                ("filetype", "image/png"),
            ]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "extension_mismatch",
        ),
        (
            Some("100"),
            "image_id !!!,filename YS5wbmc=".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_tus_request",
        ),
    ];
    for (length, metadata, status, expected) in cases {
        let mut req = tus
            .request(reqwest::Method::POST, &app.url(TUS))
            .header("Upload-Metadata", &metadata);
        if let Some(length) = length {
            req = req.header("Upload-Length", length);
        }
        let resp = req.send().await.expect("POST");
        let (got, code) = error_code(resp).await;
        assert_eq!(
            (got, code.as_str()),
            (status, expected),
            "{length:?} {metadata}"
        );
    }
    let resp = tus
        .request(reqwest::Method::POST, &app.url(TUS))
        .header("Upload-Defer-Length", "1")
        .header("Upload-Metadata", png_meta("album"))
        .send()
        .await
        .expect("POST");
    assert_eq!(error_code(resp).await.1, "invalid_tus_request");
    assert_eq!(app.count_rows().await, 0);
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn a_small_file_sent_with_its_creation_completes_and_shows_everywhere() {
    let app = TestApp::spawn().await;
    let tus = Client::new(&app);
    let resp = tus
        .request(reqwest::Method::POST, &app.url(TUS))
        .header("Upload-Length", PNG.len().to_string())
        .header(
            "Upload-Metadata",
            metadata(&[
                ("image_id", "album"),
                ("filename", "holiday.png"),
                ("camera", "x100"),
            ]),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body(PNG.to_vec())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(offset_of(resp.headers()), PNG.len() as u64);
    assert!(resp.headers().get("upload-expires").is_none());
    let location = header(resp.headers(), "location").to_owned();
    assert_eq!(
        location,
        format!("{}{TUS}/{}", app.address, id_of(&location))
    );
    let id = id_of(&location);
    let record = assert_completed_with(&app, id, PNG).await;
    assert_eq!(record["original_filename"], "holiday.png");
    assert_eq!(record["content_type"], "image/png");
    assert_eq!(record["metadata"], json!({"camera": "x100"}));
    assert_eq!(app.row(id).await.expect("row").method.as_str(), "TUS");

    // The image_id's lists, the seed's lookup and the seed's table have it.
    let listed = app.completed("album").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["upload_id"], id);
    let legacy = app.get_json("/api/url/album").await;
    assert_eq!(legacy["original_filename"], "holiday.png");
    assert_eq!(app.sql("SELECT * FROM images").await.len(), 1);
    let events: Vec<String> = app
        .sql("SELECT event_type FROM events")
        .await
        .iter()
        .map(|row| row.try_get("", "event_type").expect("type"))
        .collect();
    assert!(events.iter().any(|e| e == "upload.completed"), "{events:?}");

    // HEAD on a completed upload: all of it; a PATCH repeated at its end (its answer was
    // lost) is answered again.
    assert_eq!(tus.offset(&location).await, PNG.len() as u64);
    let again = tus.patch(&location, PNG.len(), b"", None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(again.headers()), PNG.len() as u64);
    assert_eq!(
        error_code(tus.patch(&location, 10, b"x", None).await).await,
        (StatusCode::CONFLICT, "offset_mismatch".to_owned())
    );
    assert!(spool_files(&app, id).is_empty());
}

#[tokio::test]
async fn a_creation_whose_body_cannot_be_kept_leaves_no_upload_behind() {
    let app = TestApp::spawn().await;
    let tus = Client::new(&app);
    let create_with = |length: usize, checksum: Option<String>| {
        let mut req = tus
            .request(reqwest::Method::POST, &app.url(TUS))
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", png_meta("album"))
            .header("Content-Type", "application/offset+octet-stream")
            .body(PNG.to_vec());
        if let Some(checksum) = checksum {
            req = req.header("Upload-Checksum", checksum);
        }
        req.send()
    };

    // A body longer than Upload-Length: refused before there is an upload.
    let resp = create_with(PNG.len() - 1, None).await.expect("POST");
    assert_eq!(
        error_code(resp).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "beyond_upload_length".to_owned()
        )
    );
    assert_eq!(app.count_rows().await, 0);

    // A body whose checksum is another's: 460 as for a PATCH, and the upload, whose
    // Location the client never got, is not kept either.
    let wrong = format!("sha256 {}", sha256_b64(b"other bytes"));
    let resp = create_with(PNG.len(), Some(wrong)).await.expect("POST");
    assert_eq!(
        error_code(resp).await,
        (
            StatusCode::from_u16(460).expect("460"),
            "checksum_mismatch".to_owned()
        )
    );
    let states: Vec<String> = app
        .sql("SELECT state FROM uploads")
        .await
        .iter()
        .map(|row| row.try_get("", "state").expect("state"))
        .collect();
    assert_eq!(states, vec!["aborted".to_owned()]);
    assert_nothing_left(&app).await;

    // With its own digest, the same body completes the upload at once.
    let right = format!("sha256 {}", sha256_b64(PNG));
    let resp = create_with(PNG.len(), Some(right)).await.expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(offset_of(resp.headers()), PNG.len() as u64);
    assert_completed_with(&app, id_of(header(resp.headers(), "location")), PNG).await;
}

#[tokio::test]
async fn a_large_file_goes_to_storage_part_by_part_as_it_comes() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let tus = Client::new(&app);
    let file = patterned_png(12 * MIB + 7);
    let location = tus.created(file.len(), &png_meta("album")).await;
    let id = id_of(&location).to_owned();
    let chunk = 3 * MIB + 1;

    // The first chunk waits in the spool: no part is full yet.
    assert_eq!(
        tus.appended(&location, 0, &file[..chunk]).await,
        chunk as u64
    );
    assert_eq!(spool_files(&app, &id), vec![(1, chunk as u64)]);
    assert!(stored_parts(&app, &id).await.is_empty());

    // Wrong offsets, a wrong type and a body past the length are refused; nothing moves.
    assert_eq!(
        error_code(tus.patch(&location, 0, &file[..10], None).await).await,
        (StatusCode::CONFLICT, "offset_mismatch".to_owned())
    );
    let resp = tus
        .request(reqwest::Method::PATCH, &location)
        .header("Upload-Offset", chunk.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(file[chunk..chunk + 10].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let too_much = vec![0; file.len() - chunk + 1];
    assert_eq!(
        error_code(tus.patch(&location, chunk, &too_much, None).await).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "beyond_upload_length".to_owned()
        )
    );
    assert_eq!(tus.offset(&location).await, chunk as u64);

    // The second crosses the first part's end: that part goes to storage, the rest waits.
    let second = 2 * chunk;
    assert_eq!(
        tus.appended(&location, chunk, &file[chunk..second]).await,
        second as u64
    );
    assert_eq!(await_parts(&app, &id, 1).await, vec![(1, PART as u64)]);
    assert_eq!(spool_files(&app, &id), vec![(2, (second - PART) as u64)]);

    let last = tus.send_all_from(&location, &file, second, chunk).await;
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(last.headers()), file.len() as u64);
    assert!(last.headers().get("upload-expires").is_none());
    let record = assert_completed_with(&app, &id, &file).await;
    assert_eq!(record["image_id"], "album");
    assert!(spool_files(&app, &id).is_empty());
    assert!(!app.dir.path().join("tus").join(&id).exists());
}

#[tokio::test]
async fn a_patch_whose_checksum_is_wrong_is_discarded() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let tus = Client::new(&app);
    let file = patterned_png(11 * MIB);
    let location = tus.created(file.len(), &png_meta("album")).await;
    let id = id_of(&location).to_owned();
    let first = &file[..6 * MIB];
    let sha256 = |bytes: &[u8]| format!("sha256 {}", sha256_b64(bytes));
    let sha1 = |bytes: &[u8]| {
        use sha1::Digest as _;
        format!("sha1 {}", BASE64.encode(sha1::Sha1::digest(bytes)))
    };

    // Across the first part's end, with the digest of other bytes: 460, and none of it
    // is kept: no part in storage, nothing in the spool.
    let resp = tus
        .patch(&location, 0, first, Some(&sha256(&file[1..6 * MIB + 1])))
        .await;
    assert_eq!(
        error_code(resp).await,
        (
            StatusCode::from_u16(460).expect("460"),
            "checksum_mismatch".to_owned()
        )
    );
    assert_eq!(tus.offset(&location).await, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stored_parts(&app, &id).await.is_empty());
    assert!(spool_files(&app, &id).iter().all(|(_, len)| *len == 0));

    // An algorithm the server does not know is a 400.
    let resp = tus
        .patch(&location, 0, first, Some("md5 XrY7u+Ae7tCTyyK7j1rNww=="))
        .await;
    assert_eq!(error_code(resp).await.1, "invalid_tus_request");

    // The right digests, in either algorithm, are kept.
    let resp = tus.patch(&location, 0, first, Some(&sha1(first))).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(resp.headers()), first.len() as u64);
    assert_eq!(await_parts(&app, &id, 1).await, vec![(1, PART as u64)]);
    let rest = &file[first.len()..];
    let resp = tus
        .patch(&location, first.len(), rest, Some(&sha256(rest)))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_completed_with(&app, &id, &file).await;
}

#[tokio::test]
async fn an_expired_upload_is_gone_and_the_sweeper_leaves_nothing() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY, ("MULTIPART_EXPIRES", "1")]).await;
    let tus = Client::new(&app);
    let file = patterned_png(12 * MIB);
    let swept = tus.created(file.len(), &png_meta("album")).await;
    let touched = tus.created(file.len(), &png_meta("album")).await;
    for location in [&swept, &touched] {
        let resp = tus.head(location).await;
        let expires = header(resp.headers(), "upload-expires");
        assert!(expires.ends_with(" GMT"), "{expires}");
        assert_eq!(
            tus.appended(location, 0, &file[..6 * MIB]).await,
            6 * MIB as u64
        );
        await_parts(&app, id_of(location), 1).await;
    }
    // A spool folder nothing owns is removed too.
    let stray = app
        .dir
        .path()
        .join("tus")
        .join(uuid::Uuid::now_v7().to_string());
    std::fs::create_dir_all(&stray).expect("stray folder");
    std::fs::File::create(stray.join("1"))
        .and_then(|mut f| f.write_all(b"left"))
        .expect("stray file");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Touched after its time: 410 at once, and its bytes go.
    let resp = tus.patch(&touched, 6 * MIB, &file[6 * MIB..], None).await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::GONE, "expired".to_owned())
    );
    // Left alone: the sweeper expires it.
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.expired, 1);
    assert!(report.tus_spools_removed >= 1);
    for location in [&swept, &touched] {
        assert_eq!(tus.head(location).await.status(), StatusCode::GONE);
        let row = app.row(id_of(location)).await.expect("row");
        assert_eq!(row.state.as_str(), "expired");
    }
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn termination_aborts_the_upload_and_removes_its_bytes() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let tus = Client::new(&app);
    let file = patterned_png(12 * MIB);
    let location = tus.created(file.len(), &png_meta("album")).await;
    assert_eq!(
        tus.appended(&location, 0, &file[..7 * MIB]).await,
        7 * MIB as u64
    );
    await_parts(&app, id_of(&location), 1).await;
    let resp = tus
        .request(reqwest::Method::DELETE, &location)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(resp.headers(), "tus-resumable"), "1.0.0");
    assert_eq!(
        error_code(tus.patch(&location, 7 * MIB, &file[7 * MIB..], None).await).await,
        (StatusCode::GONE, "aborted".to_owned())
    );
    assert_eq!(tus.head(&location).await.status(), StatusCode::GONE);
    let record = app
        .get_json(&format!("/api/v1/uploads/{}", id_of(&location)))
        .await;
    assert_eq!(record["state"], "aborted");
    assert_nothing_left(&app).await;
}

#[tokio::test]
async fn a_file_that_fails_verification_leaves_nothing() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let tus = Client::new(&app);
    let mut not_png = b"this is not an image at all".to_vec();
    not_png.resize(4096, b'.');
    let jpeg_as_png = JPEG.to_vec();
    let large_nothing = vec![0u8; 11 * MIB];
    for (bytes, expected) in [
        (&not_png, "invalid_image"),
        (&jpeg_as_png, "type_mismatch"),
        (&large_nothing, "invalid_image"),
    ] {
        let location = tus.created(bytes.len(), &png_meta("album")).await;
        // The first PATCH is refused: the small files are whole in it, and the large one's
        // first bytes already show it is no PNG, so the rest is never asked for.
        let first = &bytes[..bytes.len().min(4 * MIB)];
        let resp = tus.patch(&location, 0, first, None).await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::UNPROCESSABLE_ENTITY, expected.to_owned())
        );
        let row = app.row(id_of(&location)).await.expect("row");
        assert_eq!(row.state.as_str(), "failed");
        assert_eq!(row.failure_code.as_deref(), Some(expected));
        // Asked again, it says the same.
        let again = tus.patch(&location, bytes.len(), b"", None).await;
        assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    // A PNG whose header is right but whose end is missing: found out once all of it is
    // in storage, which then holds nothing of it.
    let mut cut_short = patterned_png(11 * MIB + 12);
    cut_short.truncate(11 * MIB);
    let location = tus.created(cut_short.len(), &png_meta("album")).await;
    let last = tus.send_all(&location, &cut_short, 4 * MIB).await;
    assert_eq!(
        error_code(last).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image".to_owned())
    );
    assert_nothing_left(&app).await;
    assert!(app.completed("album").await.is_empty());
}

#[tokio::test]
async fn keys_and_upload_links_govern_tus_as_the_other_uploads() {
    let app = TestApp::spawn_with(KEYS).await;
    let nobody = Client::new(&app);
    let resp = nobody.create(PNG.len(), &png_meta("album")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(resp.headers(), "tus-resumable"), "1.0.0");

    let key = Client::with(&app, "key-alpha");
    let by_key = key.created(PNG.len(), &png_meta("album")).await;
    // The offset is anyone's to read; writing takes the credential.
    assert_eq!(nobody.offset(&by_key).await, 0);
    assert_eq!(
        nobody.patch(&by_key, 0, PNG, None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let token = app
        .link(
            json!({"image_id": "album", "expires_in": 600, "max_uploads": 1, "max_size": 100_000}),
        )
        .await;
    let link = Client::with(&app, &token);
    // Another image_id, a larger file: refused before anything is made.
    let resp = link.create(PNG.len(), &png_meta("other")).await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "forbidden_image_id".to_owned())
    );
    let resp = link.create(200_000, &png_meta("album")).await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "link_size_exceeded".to_owned())
    );
    // Someone else's upload is not the link's to write.
    assert_eq!(
        error_code(link.patch(&by_key, 0, PNG, None).await).await,
        (StatusCode::FORBIDDEN, "forbidden_upload".to_owned())
    );
    let by_link = link.created(PNG.len(), &png_meta("album")).await;
    let resp = link.create(PNG.len(), &png_meta("album")).await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "link_exhausted".to_owned())
    );
    assert_eq!(link.appended(&by_link, 0, PNG).await, PNG.len() as u64);
    assert_completed_with(&app, id_of(&by_link), PNG).await;
    assert_eq!(key.appended(&by_key, 0, PNG).await, PNG.len() as u64);
    assert_eq!(app.completed("album").await.len(), 2);
}

/// A service process on a fixed port (a tus upload's URL names it), for kills.
async fn tus_process(env: &[(String, String)], port: u16) -> Process {
    start_process(env, port).await
}

async fn process_offset(client: &reqwest::Client, location: &str) -> u64 {
    let resp = client
        .head(location)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), StatusCode::OK);
    offset_of(resp.headers())
}

/// Creates a tus upload of `length` bytes on a service process; its `Location`.
async fn process_created(client: &reqwest::Client, port: u16, length: usize) -> String {
    let resp = client
        .post(format!("http://127.0.0.1:{port}{TUS}"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", png_meta("album"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    header(resp.headers(), "location").to_owned()
}

/// The record of a service process's upload, completed, and the bytes its `s3_url` serves.
async fn process_completed(
    client: &reqwest::Client,
    base: &str,
    location: &str,
) -> (Value, bytes::Bytes) {
    let record: Value = client
        .get(format!("{base}/api/v1/uploads/{}", id_of(location)))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(record["state"], "completed", "{record}");
    let served = client
        .get(record["s3_url"].as_str().expect("url"))
        .send()
        .await
        .expect("GET object")
        .bytes()
        .await
        .expect("bytes");
    (record, served)
}

#[tokio::test]
async fn the_offset_survives_a_kill_and_falls_back_when_the_spool_is_lost() {
    let (env, dir) = service_process_env(&[SMALL_PARTS_ONLY]).await;
    let port = free_port();
    let mut service = tus_process(&env, port).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let file = patterned_png(12 * MIB);
    let location = process_created(&client, port, file.len()).await;
    let patch = |offset: usize, end: usize| {
        client
            .patch(&location)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(file[offset..end].to_vec())
            .send()
    };
    assert_eq!(
        patch(0, 7 * MIB).await.expect("PATCH").status(),
        StatusCode::NO_CONTENT
    );
    // Part 1 in storage, 2 MiB in the spool, then SIGKILL.
    let spool = dir.path().join("tus").join(id_of(&location));
    for _ in 0..100 {
        if !spool.join("1").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("reaped");
    drop(service);

    let mut service = tus_process(&env, port).await;
    assert_eq!(process_offset(&client, &location).await, 7 * MIB as u64);
    assert_eq!(
        patch(7 * MIB, 8 * MIB).await.expect("PATCH").status(),
        StatusCode::NO_CONTENT
    );
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("reaped");
    drop(service);

    // Without the spool, the offset is the end of the last stored part.
    std::fs::remove_dir_all(&spool).expect("spool removed");
    let _service = tus_process(&env, port).await;
    assert_eq!(process_offset(&client, &location).await, PART as u64);
    let resp = patch(PART, file.len()).await.expect("PATCH");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, served) = process_completed(&client, &base, &location).await;
    assert!(served == file, "the stored bytes differ");
}

#[tokio::test]
async fn a_head_while_a_patch_writes_answers_its_offset_and_lets_it_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let tus = Client::new(&app);
    let file = patterned_png(12 * MIB);
    let location = tus.created(file.len(), &png_meta("album")).await;
    let id = id_of(&location).to_owned();
    // One PATCH of the whole file, of which 7 MiB are sent so far.
    let mut stream = open_patch(app.port(), &location, &file, 0, 7 * MIB, "").await;
    let mut offsets = Vec::new();
    for _ in 0..100 {
        let resp = tus.head(&location).await;
        assert_eq!(resp.status(), StatusCode::OK);
        offsets.push(offset_of(resp.headers()));
        if offsets.last() == Some(&(7 * MIB as u64)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offsets.last(), Some(&(7 * MIB as u64)), "{offsets:?}");
    assert!(offsets.is_sorted(), "{offsets:?}");

    // The PATCH went on: the rest of its body completes the upload.
    stream.write_all(&file[7 * MIB..]).await.expect("body");
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0; 1024];
        let n = stream.read(&mut buf).await.expect("answer");
        assert!(n > 0, "no answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 204"), "{answer}");
    assert!(
        answer.contains(&format!("upload-offset: {}\r\n", file.len())),
        "{answer}"
    );
    assert_completed_with(&app, &id, &file).await;
}

#[tokio::test]
async fn an_upload_whose_parts_are_all_stored_but_not_assembled_is_finished_by_the_next_look() {
    let app = TestApp::spawn_with(&[SMALL_PARTS_ONLY]).await;
    let file = patterned_png(12 * MIB);
    let location = Client::new(&app)
        .created(file.len(), &png_meta("album"))
        .await;
    let id = id_of(&location).to_owned();
    let sent = Client::new(&app)
        .appended(&location, 0, &file[..2 * PART])
        .await;
    assert_eq!(sent, 2 * PART as u64);
    await_parts(&app, &id, 2).await;
    // The last part reaches the store, and the service stops before it completes the
    // store's upload (a crash, or a store that failed that one request).
    let row = app.row(&id).await.expect("row");
    app.storage
        .upload_part(
            &row.object_key,
            row.multipart_upload_id
                .as_deref()
                .expect("multipart upload"),
            3,
            file[2 * PART..].to_vec().into(),
        )
        .await
        .expect("part 3 stored");
    let app = app.restart(&[SMALL_PARTS_ONLY]).await;

    // Every byte is there: HEAD says so (never past the length), and completes it.
    let location = app.url(&format!("{TUS}/{id}"));
    let resp = Client::new(&app).head(&location).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(offset_of(resp.headers()), file.len() as u64);
    assert_eq!(
        header(resp.headers(), "upload-length"),
        file.len().to_string()
    );
    let record = assert_completed_with(&app, &id, &file).await;
    let etag = record["etag"].as_str().expect("etag").trim_matches('"');
    assert!(etag.ends_with("-3"), "three parts assembled: {record}");
    assert!(spool_files(&app, &id).is_empty());
}

#[tokio::test]
async fn bytes_of_a_checksummed_patch_cut_by_a_kill_never_count() {
    let (env, dir) = service_process_env(&[SMALL_PARTS_ONLY]).await;
    let port = free_port();
    let mut service = tus_process(&env, port).await;
    let client = reqwest::Client::new();
    let file = patterned_png(12 * MIB);
    let location = process_created(&client, port, file.len()).await;
    let patch = |offset: usize, checksum: Option<String>| {
        let mut req = client
            .patch(&location)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(file[offset..].to_vec());
        if let Some(checksum) = checksum {
            req = req.header("Upload-Checksum", checksum);
        }
        req.send()
    };
    let first = client
        .patch(&location)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(file[..3 * MIB].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);

    // The rest with its checksum, killed once 5 MiB of it (past part 1's end) are in the
    // spool, its connection still open: none of it was checked, so none of it counts.
    let rest = format!("sha256 {}", sha256_b64(&file[3 * MIB..]));
    let stream = open_patch(
        port,
        &location,
        &file,
        3 * MIB,
        8 * MIB,
        &format!("Upload-Checksum: {rest}\r\n"),
    )
    .await;
    let spool = dir.path().join("tus").join(id_of(&location));
    let spooled = |part: &str| std::fs::metadata(spool.join(part)).map_or(0, |m| m.len());
    for _ in 0..100 {
        if spooled("1") == PART as u64 && spooled("2") >= (3 * MIB) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (spooled("1"), spooled("2")),
        (PART as u64, 3 * MIB as u64),
        "the spool holds what was sent"
    );
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("reaped");
    drop((service, stream));

    let _service = tus_process(&env, port).await;
    assert_eq!(process_offset(&client, &location).await, 3 * MIB as u64);
    let resp = patch(3 * MIB, Some(rest)).await.expect("PATCH");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(resp.headers()), file.len() as u64);
    let (_, served) =
        process_completed(&client, &format!("http://127.0.0.1:{port}"), &location).await;
    assert!(served == file, "the stored bytes differ");
}

/// A PATCH of the rest of `file` from `offset` (with `extra` header lines) whose first
/// `upto - offset` bytes have been written; the connection stays open while the stream
/// lives.
async fn open_patch(
    port: u16,
    location: &str,
    file: &[u8],
    offset: usize,
    upto: usize,
    extra: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let path = location
        .split_once(&format!("127.0.0.1:{port}"))
        .expect("our location")
        .1;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n\
         {extra}Content-Length: {}\r\n\r\n",
        file.len() - offset
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in file[offset..upto].chunks(256 * 1024) {
        stream.write_all(chunk).await.expect("body");
    }
    stream.flush().await.expect("flush");
    stream
}

/// A PATCH of the rest of `file` from `offset` whose connection is dropped after `upto`
/// bytes of it have been written.
async fn cut_patch(port: u16, location: &str, file: &[u8], offset: usize, upto: usize) {
    drop(open_patch(port, location, file, offset, upto, "").await);
}

/// The offset, once the server has taken in what a cut connection sent.
async fn settled_offset(client: &reqwest::Client, location: &str) -> u64 {
    let mut last = process_offset(client, location).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = process_offset(client, location).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test]
async fn a_200_mib_upload_survives_three_cut_connections_and_a_kill() {
    let (env, _dir) = service_process_env(&[]).await;
    let port = free_port();
    let mut service = tus_process(&env, port).await;
    let client = reqwest::Client::new();
    let size = 200 * MIB;
    let file = patterned_png(size);
    let expected = Sha256::digest(&file);
    let location = process_created(&client, port, size).await;

    // Random cut points, from a seed the log shows (to replay a failure).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos() as u64;
    println!("cut points from seed {seed}");
    let mut state = seed | 1;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    let mut offset = 0usize;
    for round in 1..=3 {
        let upto = offset + 1 + random(size / 5);
        cut_patch(port, &location, &file, offset, upto).await;
        let now = settled_offset(&client, &location).await as usize;
        println!("cut {round} after {upto}: the server holds {now}");
        assert!(now <= upto, "the server holds more than was sent");
        assert!(now > offset, "a cut connection lost everything it sent");
        offset = now;
    }

    // A SIGKILL while a PATCH is sending: the restart resumes from what storage and the
    // spool hold.
    let upto = offset + 1 + random(size / 5);
    let writer = {
        let (location, file) = (location.clone(), file.clone());
        tokio::spawn(async move { cut_patch(port, &location, &file, offset, upto).await })
    };
    writer.await.expect("writer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("reaped");
    drop(service);
    let _service = tus_process(&env, port).await;
    let now = process_offset(&client, &location).await as usize;
    println!("killed after {upto}: the restarted server holds {now}");
    // What the spool held before survives the kill.
    assert!(
        now <= upto && now >= offset,
        "{now} outside {offset}..={upto}"
    );
    let resp = client
        .patch(&location)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", now.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(file[now..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(resp.headers()), size as u64);

    let base = format!("http://127.0.0.1:{port}");
    let (record, served) = process_completed(&client, &base, &location).await;
    assert_eq!(record["file_size"], size as u64);
    assert_eq!(served.len(), size);
    assert_eq!(
        Sha256::digest(&served),
        expected,
        "SHA-256 of the stored object"
    );
}

#[tokio::test]
async fn rate_limits_and_cors_cover_tus() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT", "1"),
        ("RATE_LIMIT_BURST", "2"),
        ("CORS_ORIGINS", "https://app.example.com"),
    ])
    .await;
    let tus = Client::new(&app);

    // A page on another origin may send tus's headers and read its answers'.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(TUS))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "tus-resumable,upload-offset,upload-checksum,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    let allowed = header(preflight.headers(), "access-control-allow-methods").to_lowercase();
    assert!(allowed.contains("patch"), "{allowed}");
    let resp = tus
        .request(reqwest::Method::POST, &app.url(TUS))
        .header("Origin", "https://app.example.com")
        .header("Upload-Length", PNG.len().to_string())
        .header("Upload-Metadata", png_meta("album"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let exposed = header(resp.headers(), "access-control-expose-headers").to_lowercase();
    for name in [
        "location",
        "upload-offset",
        "upload-expires",
        "tus-resumable",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }

    // Creations and PATCHes count against RATE_LIMIT, with tus's header on the 429.
    let location = header(resp.headers(), "location").to_owned();
    let mut limited = None;
    for _ in 0..5 {
        let resp = tus.patch(&location, 0, &PNG[..10], None).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("a 429 within five PATCHes");
    assert_eq!(header(resp.headers(), "tus-resumable"), "1.0.0");
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(error_code(resp).await.1, "rate_limited");
}
