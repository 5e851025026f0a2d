//! `TestApp`: the whole service in-process on port 0, with a fresh temporary database and
//! a fresh embedded store (also on port 0), so tests run in parallel.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Once};

use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use upload_broker::Application;
use upload_broker::config::Config;
use upload_broker::db::{Db, UploadRow};
use upload_broker::shutdown::{self, ShutdownTrigger};
use upload_broker::storage::Storage;
use upload_broker::uploads::UploadService;
use uuid::Uuid;

pub const PNG: &[u8] = include_bytes!("../fixtures/sample.png");
pub const JPEG: &[u8] = include_bytes!("../fixtures/photo.jpg");
pub const GIF: &[u8] = include_bytes!("../fixtures/sample.gif");
pub const WEBP: &[u8] = include_bytes!("../fixtures/sample.webp");
pub const BMP: &[u8] = include_bytes!("../fixtures/sample.bmp");
pub const TIFF: &[u8] = include_bytes!("../fixtures/sample.tiff");

pub const MIB: usize = 1024 * 1024;
/// Multipart above 5 MiB, in 5 MiB parts.
pub const SMALL_PARTS: [(&str, &str); 2] =
    [("MULTIPART_THRESHOLD", "5242880"), ("PART_SIZE", "5242880")];

static TRACING: Once = Once::new();

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub uploads: UploadService,
    pub storage: Storage,
    pub dir: Arc<TempDir>,
    db: Db,
    /// The URL the service reaches its store at, as it says.
    store_endpoint: Option<String>,
    trigger: ShutdownTrigger,
}

/// What a run of the command-line uploader printed.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts the service with extra configuration.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::spawn_in(dir, vars).await
    }

    /// Starts a service on an existing data directory (a restart).
    pub async fn spawn_in(dir: Arc<TempDir>, vars: &[(&str, &str)]) -> Self {
        Self::try_spawn_in(dir, vars).await.expect("service starts")
    }

    /// Like `spawn_in`, but `None` when the service cannot start (a port still taken).
    pub async fn try_spawn_in(dir: Arc<TempDir>, vars: &[(&str, &str)]) -> Option<Self> {
        TRACING.call_once(|| {
            if std::env::var_os("TEST_LOG").is_some() {
                upload_broker::telemetry::init("debug", false);
            }
        });
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATA_DIR".into(), dir.path().display().to_string()),
            ("PORT".into(), "0".into()),
            ("BIND_ADDR".into(), "127.0.0.1".into()),
            ("EMBEDDED_S3_PORT".into(), "0".into()),
            ("ENVIRONMENT".into(), "test".into()),
            // Tests sweep when they mean to, with `uploads.sweep`.
            ("SWEEP_INTERVAL".into(), "0".into()),
            // Variants are made where a test asks for them: elsewhere their jobs would add
            // objects and events that test does not expect.
            ("IMAGE_VARIANTS".into(), String::new()),
            // The same for the embedded store's confirm of every PUT that lands: tests that
            // look at an upload between its PUT and its confirm ask for it where they mean it.
            ("AUTO_CONFIRM".into(), "false".into()),
        ]);
        if let Some(url) = test_database(&dir).await {
            env.insert("DATABASE_URL".into(), url);
        }
        env.extend(test_bucket(&dir).await);
        for (name, value) in vars {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        let config = Config::from_map(&env).expect("test config");
        let (trigger, stop) = shutdown::channel();
        let app = Application::build(config, stop).await.ok()?;
        let address = format!("http://{}", app.address());
        let uploads = app.uploads().clone();
        let (db, storage) = (app.db().clone(), app.storage().clone());
        let store_endpoint = app.storage_endpoint().map(str::to_owned);
        tokio::spawn(app.run());
        Some(Self {
            address,
            client: reqwest::Client::new(),
            uploads,
            storage,
            dir,
            db,
            store_endpoint,
            trigger,
        })
    }

    /// Settings for another service to reach this one's bucket: the embedded store's
    /// endpoint and key pair, or the external test store's.
    pub async fn s3_settings(&self) -> Vec<(String, String)> {
        let external = test_bucket(&self.dir).await;
        if !external.is_empty() {
            return external;
        }
        let keys = std::fs::read_to_string(self.dir.path().join("s3.credentials")).expect("keys");
        let (access, secret) = keys.trim().split_once(':').expect("key pair");
        vec![
            ("AWS_BUCKET_NAME".into(), "upload-broker".into()),
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://{}", self.store_addr()),
            ),
            ("AWS_ACCESS_KEY_ID".into(), access.to_owned()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.to_owned()),
        ]
    }

    /// The address of the store this service uses (an `http://IP:PORT` endpoint).
    pub fn store_addr(&self) -> std::net::SocketAddr {
        let endpoint = self.store_endpoint.as_deref().expect("a store endpoint");
        endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("address")
    }

    /// The service's database, for reading it through its own queries.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The database this service uses, for a second service to share.
    pub fn database_url(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("database_url")).unwrap_or_else(|_| {
            format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join("images.db").display()
            )
        })
    }

    /// Stops this service and starts another on the same data, once the old one's ports
    /// are free (its listeners close as their tasks see the shutdown signal).
    pub async fn restart(self, vars: &[(&str, &str)]) -> TestApp {
        let dir = self.dir.clone();
        drop(self);
        Self::spawn_again(dir, vars).await
    }

    /// Starts a service on the data of one that was stopped, once its ports are free.
    pub async fn spawn_again(dir: Arc<TempDir>, vars: &[(&str, &str)]) -> TestApp {
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(app) = TestApp::try_spawn_in(dir.clone(), vars).await {
                return app;
            }
        }
        panic!("the service restarts on the same data");
    }

    /// The port the service listens on.
    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the service's port")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// A GET whose answer must be JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path)
            .await
            .json()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: not JSON: {err}"))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn create_upload(&self, body: &Value) -> Response {
        self.post_json("/api/v1/uploads", body).await
    }

    /// Issues an upload for these bytes and returns the 201 body.
    pub async fn issue(
        &self,
        image_id: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Value {
        let resp = self
            .create_upload(&json!({
                "image_id": image_id,
                "filename": filename,
                "content_type": content_type,
                "size": bytes.len(),
            }))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.expect("issued upload JSON")
    }

    /// PUTs bytes to a presigned URL with the headers the service said to send.
    pub async fn put(&self, issued: &Value, bytes: &[u8]) -> Response {
        let req = self
            .client
            .put(issued["url"].as_str().expect("url"))
            .body(bytes.to_vec());
        refusal_as_status(with_signed_headers(req, issued).send().await)
    }

    /// Where the bytes of a single PUT land before confirm: its staging key.
    pub fn landing(&self, key: &str) -> String {
        upload_broker::uploads::staging_key(key)
    }

    pub async fn confirm(&self, upload_id: &str) -> Response {
        self.client
            .post(self.url(&format!("/api/v1/uploads/{upload_id}/confirm")))
            .send()
            .await
            .expect("confirm")
    }

    pub async fn delete(&self, upload_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/uploads/{upload_id}")))
            .send()
            .await
            .expect("delete")
    }

    /// Issue, PUT and confirm; returns the confirmed record.
    pub async fn upload(
        &self,
        image_id: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Value {
        let issued = self.issue(image_id, filename, content_type, bytes).await;
        let put = self.put(&issued, bytes).await;
        assert_eq!(put.status(), StatusCode::OK, "PUT to the presigned URL");
        let resp = self
            .confirm(issued["upload_id"].as_str().expect("id"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("record")
    }

    /// Confirms an upload and checks that it completed with exactly `bytes` in the bucket.
    pub async fn confirm_stored(&self, upload_id: &str, bytes: &[u8]) -> Value {
        let resp = self.confirm(upload_id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let record: Value = resp.json().await.expect("record");
        assert_eq!(record["state"], "completed");
        let stored = self
            .object(record["key"].as_str().expect("key"))
            .await
            .expect("object");
        assert!(stored == bytes, "the object is the file, byte for byte");
        record
    }

    pub async fn row(&self, upload_id: &str) -> Option<UploadRow> {
        let id = Uuid::parse_str(upload_id).expect("uuid");
        self.db.find_fresh(id).await.expect("query")
    }

    /// The completed uploads of an image_id (up to a thousand), newest first.
    pub async fn completed_rows(&self, image_id: &str) -> Vec<UploadRow> {
        self.db
            .completed_for_image(image_id, None, 1000)
            .await
            .expect("query")
    }

    /// The object's bytes in the bucket, read with the service's own credentials.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let storage = &self.storage;
        storage.head(key).await.expect("head")?;
        Some(
            storage
                .read_prefix(key, u64::MAX / 2)
                .await
                .expect("read")
                .to_vec(),
        )
    }

    /// Runs raw SQL on the service's database and returns its rows: for what the service
    /// has no query of its own for (the seed's `images` view, the imported table, the
    /// count of every row). Everything else reads through `db()`.
    pub async fn sql(&self, query: &str) -> Vec<sea_orm::QueryResult> {
        let conn = self.db.writer();
        conn.query_all_raw(Statement::from_string(conn.get_database_backend(), query))
            .await
            .expect("SQL")
    }

    pub async fn count_rows(&self) -> i64 {
        let rows = self.sql("SELECT COUNT(*) AS n FROM uploads").await;
        rows[0].try_get::<i64>("", "n").expect("count")
    }

    // The seed's API.

    /// `POST /upload/{image_id}` with one `file` field.
    pub async fn legacy_upload(
        &self,
        image_id: &str,
        filename: &str,
        bytes: &[u8],
    ) -> reqwest::Response {
        let (content_type, body) = form_body(&[("file", Some(filename), bytes)]);
        self.post_form(image_id, &content_type, body).await
    }

    pub async fn post_form(
        &self,
        image_id: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/upload/{image_id}")))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /upload")
    }

    /// A legacy upload that must succeed: checks the record, the bytes in the bucket and
    /// their checksum, and returns the record.
    pub async fn legacy_stored(&self, image_id: &str, filename: &str, bytes: &[u8]) -> Value {
        let resp = self.legacy_upload(image_id, filename, bytes).await;
        assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
        let latest = self
            .get_json(&format!("/api/v1/images/{image_id}/latest"))
            .await;
        assert_eq!(latest["file_size"], bytes.len());
        let stored = self
            .object(latest["key"].as_str().expect("key"))
            .await
            .expect("object");
        assert!(stored == bytes, "bytes in the bucket are the upload");
        assert_eq!(latest["checksum_sha256"], sha256_b64(bytes).as_str());
        latest
    }

    // Presigned multipart uploads.

    pub async fn issue_multipart(&self, image_id: &str, bytes: &[u8], extra: Value) -> Value {
        let mut body = json!({
            "image_id": image_id, "filename": "big.png", "content_type": "image/png", "size": bytes.len(),
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let resp = self.create_upload(&body).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let issued: Value = resp.json().await.expect("issued");
        assert_eq!(issued["method"], "MULTIPART");
        issued
    }

    pub async fn sign_parts(&self, upload_id: &str, body: Value) -> reqwest::Response {
        self.post_json(&format!("/api/v1/uploads/{upload_id}/parts"), &body)
            .await
    }

    /// Signs these parts and returns part number -> signed request.
    pub async fn part_urls(&self, upload_id: &str, numbers: &[i32]) -> BTreeMap<i64, Value> {
        let resp = self
            .sign_parts(upload_id, json!({ "part_numbers": numbers }))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("parts");
        body["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .map(|p| (p["part_number"].as_i64().expect("number"), p.clone()))
            .collect()
    }

    /// PUTs one part's bytes to its signed URL (a signed part has the `url` and `headers`
    /// of an issued upload).
    pub async fn put_part(&self, signed: &Value, bytes: &[u8]) -> reqwest::Response {
        self.put(signed, bytes).await
    }

    pub async fn listed_parts(&self, upload_id: &str) -> Vec<i64> {
        let resp = self
            .get(&format!("/api/v1/uploads/{upload_id}/parts"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("parts");
        body["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .map(|p| p["part_number"].as_i64().expect("n"))
            .collect()
    }

    // Access control: API keys and upload links.

    pub async fn post_as(
        &self,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("POST")
    }

    pub async fn issue_as(
        &self,
        token: Option<&str>,
        image_id: &str,
        size: usize,
    ) -> reqwest::Response {
        let body = json!({"image_id": image_id, "filename": "a.png", "content_type": "image/png",
                          "size": size});
        self.post_as(token, "/api/v1/uploads", &body).await
    }

    pub async fn link(&self, body: Value) -> String {
        let resp = self
            .post_as(Some("key-alpha"), "/api/v1/links", &body)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let link: Value = resp.json().await.expect("link");
        let token = link["token"].as_str().expect("token").to_owned();
        assert_eq!(
            link["upload_page"],
            format!("/{}?token={token}", body["image_id"].as_str().expect("id"))
        );
        token
    }

    pub async fn legacy_post(
        &self,
        image_id: &str,
        query: &str,
        bearer: Option<&str>,
    ) -> reqwest::Response {
        let (content_type, body) = form_body(&[("file", Some("a.png"), PNG)]);
        let mut req = self
            .client
            .post(self.url(&format!("/upload/{image_id}{query}")))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("legacy POST")
    }

    // The command-line uploader.

    /// Runs `upload-broker upload ARGS... --server <this service>` with its resume file
    /// under `state`.
    pub async fn cli(&self, state: &Path, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_upload-broker"))
            .arg("upload")
            .args(args)
            .args(["--server", &self.address])
            .env("XDG_STATE_HOME", state)
            .env_remove("UPLOAD_BROKER_API_KEY")
            .env_remove("UPLOAD_BROKER_SERVER")
            .output()
            .await
            .expect("the binary runs");
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The completed records of an image_id, oldest first.
    pub async fn completed(&self, image_id: &str) -> Vec<Value> {
        let list = self.get_json(&format!("/api/v1/images/{image_id}")).await;
        let mut images = list["images"].as_array().expect("images").clone();
        images.reverse();
        images
    }
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// With `TEST_DATABASE_URL=postgres://...` every test runs on a fresh Postgres database
/// (the same one again when a test restarts its service on the same data directory);
/// without it, on SQLite in the data directory.
async fn test_database(dir: &TempDir) -> Option<String> {
    let admin = std::env::var("TEST_DATABASE_URL").ok()?;
    let remembered = dir.path().join("database_url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return Some(url);
    }
    let name = format!("ub_test_{}", uuid::Uuid::new_v4().simple());
    let conn = sea_orm::Database::connect(admin.as_str())
        .await
        .expect("Postgres for tests");
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    conn.close().await.expect("close");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    std::fs::write(&remembered, &url).expect("remember the database");
    Some(url)
}

/// With `TEST_S3_ENDPOINT` (and `TEST_S3_ACCESS_KEY_ID`, `TEST_S3_SECRET_ACCESS_KEY`,
/// `TEST_S3_REGION`) every test runs on a bucket of its own in that external store (Garage,
/// which ignores If-None-Match, so PUTs are staged); without it, on the embedded store.
async fn test_bucket(dir: &TempDir) -> Vec<(String, String)> {
    let Ok(endpoint) = std::env::var("TEST_S3_ENDPOINT") else {
        return Vec::new();
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let (access, secret) = (
        var("TEST_S3_ACCESS_KEY_ID"),
        var("TEST_S3_SECRET_ACCESS_KEY"),
    );
    let region = std::env::var("TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
    let remembered = dir.path().join("bucket");
    let bucket = match std::fs::read_to_string(&remembered) {
        Ok(bucket) => bucket,
        Err(_) => {
            let bucket = format!("t{}", uuid::Uuid::new_v4().simple());
            s3_client_for(&endpoint, &region, &access, &secret)
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .expect("create the test bucket");
            std::fs::write(&remembered, &bucket).expect("remember the bucket");
            bucket
        }
    };
    vec![
        ("AWS_BUCKET_NAME".into(), bucket),
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), access),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
        ("AWS_REGION".into(), region),
        ("S3_CONDITIONAL_WRITES".into(), "false".into()),
        // Garage has no anonymous reads: s3_url must be a presigned GET.
        ("PRIVATE_BUCKET".into(), "true".into()),
    ]
}

fn s3_client_for(endpoint: &str, region: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access, secret, None, None, "tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A client of the external test store, from a service's S3 settings (`s3_settings`).
pub fn external_s3_client(settings: &HashMap<String, String>) -> aws_sdk_s3::Client {
    s3_client_for(
        &settings["AWS_ENDPOINT_URL"],
        &settings["AWS_REGION"],
        &settings["AWS_ACCESS_KEY_ID"],
        &settings["AWS_SECRET_ACCESS_KEY"],
    )
}

/// An endpoint on this machine where nothing listens.
pub fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Whether the suite runs on an external S3 store instead of the embedded one.
pub fn on_external_store() -> bool {
    std::env::var_os("TEST_S3_ENDPOINT").is_some()
}

/// Whether the suite runs on Postgres; SQLite-only tests return early then.
pub fn on_postgres() -> bool {
    std::env::var_os("TEST_DATABASE_URL").is_some()
}

/// Some stores refuse a request whose signature does not match by closing the connection
/// before the body is sent (Garage); that is shown as 499 so tests see a refusal either way.
pub fn refusal_as_status(sent: reqwest::Result<Response>) -> Response {
    match sent {
        Ok(resp) => resp,
        Err(err) if err.is_request() || err.is_body() => {
            let closed = reqwest::StatusCode::from_u16(499).expect("status");
            Response::from(
                http::Response::builder()
                    .status(closed)
                    .body(format!("the store closed the connection: {err}"))
                    .expect("response"),
            )
        }
        Err(err) => panic!("PUT: {err}"),
    }
}

/// 500 upload flows (issue, PUT, confirm) at 64 at a time, flow `n` issued by
/// `pick(n).0` and confirmed by `pick(n).1`; then checks, through `check`, that every
/// confirm answered 200 and has exactly one completed row whose object has the declared
/// size and checksum, and that no request got a 5xx.
pub async fn five_hundred_flows_hold<'a>(
    pick: impl Fn(usize) -> (&'a TestApp, &'a TestApp),
    check: &TestApp,
) {
    use futures_util::StreamExt as _;
    let checksum = sha256_b64(PNG);
    let flows = futures_util::stream::iter(0..500usize)
        .map(|n| {
            let (issuer, confirmer) = pick(n);
            let checksum = checksum.clone();
            async move {
                let resp = issuer
                    .create_upload(&serde_json::json!({
                        "image_id": format!("load{}", n % 10), "filename": "a.png",
                        "content_type": "image/png", "size": PNG.len(), "checksum_sha256": checksum,
                    }))
                    .await;
                assert_eq!(resp.status(), StatusCode::CREATED);
                let issued: Value = resp.json().await.expect("issued");
                assert_eq!(issuer.put(&issued, PNG).await.status(), StatusCode::OK);
                let id = issued["upload_id"].as_str().expect("id").to_owned();
                let resp = confirmer.confirm(&id).await;
                assert!(
                    !resp.status().is_server_error(),
                    "no 5xx: {}",
                    resp.status()
                );
                (resp.status(), id)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for (status, id) in &flows {
        assert_eq!(*status, StatusCode::OK);
        let row = check.row(id).await.expect("row");
        assert_eq!(row.state, upload_broker::uploads::UploadState::Completed);
        assert_eq!(row.file_size, Some(PNG.len() as i64));
        assert_eq!(row.checksum_sha256.as_deref(), Some(checksum.as_str()));
        let head = check
            .storage
            .head(&row.object_key)
            .await
            .expect("head")
            .expect("object");
        assert_eq!(head.size, PNG.len() as u64);
    }
    let mut completed = 0;
    for n in 0..10 {
        completed += check.completed_rows(&format!("load{n}")).await.len();
    }
    assert_eq!(completed, 500);
}

pub fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

pub async fn error_code(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON error body");
    let code = body["code"].as_str().expect("code").to_owned();
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    (status, code)
}

/// What the bucket holds: every object and every open multipart upload. Empty means
/// nothing was left behind.
pub async fn files_in_store(app: &TestApp) -> Vec<String> {
    let storage = &app.storage;
    let mut found: Vec<String> = storage
        .list_objects("")
        .await
        .expect("list objects")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    found.extend(
        storage
            .list_multipart_uploads("")
            .await
            .expect("list multipart uploads")
            .into_iter()
            .map(|(key, id, _)| format!("multipart upload {id} of {key}")),
    );
    found.sort();
    found
}

/// A `multipart/form-data` body: (field name, file name, bytes) per part.
pub fn form_body(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----upload-broker-test-boundary";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A request body sent in 64 KiB chunks, with no Content-Length (chunked encoding).
pub fn chunked_body(bytes: &[u8]) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// A valid PNG of exactly `size` bytes: the fixture with an ancillary chunk of padding
/// before its end chunk (decoders skip it; the file still ends with IEND).
pub fn png_of_size(size: usize) -> Vec<u8> {
    png_with_padding(size, |_| 0)
}

/// The JPEG fixture with `blocks` APP1 segments of 64 KiB each right after its start, so
/// its frame header lies past the first 64 KiB.
pub fn jpeg_with_app_blocks(blocks: usize) -> Vec<u8> {
    let mut bytes = JPEG[..2].to_vec();
    for _ in 0..blocks {
        bytes.extend_from_slice(&[0xFF, 0xE1, 0xFF, 0xFF]);
        bytes.extend(std::iter::repeat_n(0x5A, 0xFFFF - 2));
    }
    bytes.extend_from_slice(&JPEG[2..]);
    bytes
}

/// Like `png_of_size`, with the padding bytes chosen by `fill` (by offset in the file).
pub fn png_with_padding(size: usize, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let (body, iend) = PNG.split_at(PNG.len() - 12);
    let data_len = size - PNG.len() - 12;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&u32::try_from(data_len).expect("small").to_be_bytes());
    let typed = bytes.len();
    bytes.extend_from_slice(b"ubPd");
    let start = bytes.len();
    bytes.extend((start..start + data_len).map(fill));
    let crc = crc32(&bytes[typed..]);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes.extend_from_slice(iend);
    assert_eq!(bytes.len(), size);
    bytes
}

/// The CRC-32 of a PNG chunk's type and data.
pub fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Runs a suite outside cargo (`command`) against the binary cargo built for this test
/// run, when `switch` is set in the environment; when it is, the suite must pass.
pub fn run_outside_suite(switch: &str, what: &str, mut command: std::process::Command) {
    if std::env::var_os(switch).is_none() {
        eprintln!("{what} not run: set {switch}=1 (see .ci/run for what it needs)");
        return;
    }
    let status = command
        .env("UPLOAD_BROKER_BIN", env!("CARGO_BIN_EXE_upload-broker"))
        .status()
        .unwrap_or_else(|err| panic!("the {what} could not start ({command:?}): {err}"));
    assert!(status.success(), "the {what} failed: {status}");
}

/// The service as its own process, so it can be killed with SIGKILL.
pub struct Process {
    pub child: std::process::Child,
    pub port: u16,
    pub client: reqwest::Client,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// A legacy upload of the fixture PNG under `image_id`, which must succeed.
    pub async fn legacy_upload(&self, image_id: &str) {
        self.legacy_upload_file(image_id, "a.png", PNG).await;
    }

    /// A legacy upload of `bytes` as `filename` under `image_id`, which must succeed.
    pub async fn legacy_upload_file(&self, image_id: &str, filename: &str, bytes: &[u8]) {
        let (content_type, body) = form_body(&[("file", Some(filename), bytes)]);
        let resp = self
            .client
            .post(format!("http://127.0.0.1:{}/upload/{image_id}", self.port))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

/// The settings of a service process on a fresh database (the test suite's: SQLite in the
/// returned directory, or Postgres) and bucket, plus `extra`.
pub async fn service_process_env(extra: &[(&str, &str)]) -> (Vec<(String, String)>, Arc<TempDir>) {
    let seed = TestApp::spawn().await;
    let mut env: Vec<(String, String)> = vec![
        ("DATA_DIR".into(), seed.dir.path().display().to_string()),
        ("DATABASE_URL".into(), seed.database_url()),
        ("BIND_ADDR".into(), "127.0.0.1".into()),
        ("EMBEDDED_S3_PORT".into(), "0".into()),
        ("SWEEP_INTERVAL".into(), "0".into()),
        ("IMAGE_VARIANTS".into(), String::new()),
        ("AUTO_CONFIRM".into(), "false".into()),
    ];
    if on_external_store() {
        env.extend(seed.s3_settings().await);
    }
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let dir = seed.dir.clone();
    // The seed only made the database and bucket: it stops before the process starts.
    drop(seed);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    (env, dir)
}

/// Starts the service binary with `env` on `port`, and waits until it answers.
pub async fn start_process(env: &[(String, String)], port: u16) -> Process {
    // Wrapped at once, so a service that never answers is still stopped and reaped.
    let process = Process {
        child: std::process::Command::new(env!("CARGO_BIN_EXE_upload-broker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the service starts"),
        port,
        client: reqwest::Client::new(),
    };
    for _ in 0..200 {
        if process
            .client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok()
        {
            return process;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the service did not answer on port {port}");
}

/// The admin key of every test service that has one.
pub const ADMIN: &str = "admin-key-of-the-tests";

/// A GET with the admin key, which must answer 200; its JSON body.
pub async fn admin_get(app: &TestApp, path: &str) -> Value {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.json().await.expect("JSON")
}

pub async fn admin_post(app: &TestApp, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("POST")
}

/// `req` with the headers a signed request (an issued upload, a signed part) says its
/// client must send.
pub fn with_signed_headers(
    mut req: reqwest::RequestBuilder,
    signed: &Value,
) -> reqwest::RequestBuilder {
    for (name, value) in signed["headers"].as_object().expect("headers") {
        req = req.header(name, value.as_str().expect("header value"));
    }
    req
}
