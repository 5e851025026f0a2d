//! The embedded S3-compatible store: s3s-fs on disk under `DATA_DIR`, on its own loopback
//! port, checking SigV4 with credentials made on first start and kept beside the data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

use super::leftovers::InternalFiles;
use crate::config::Secret;
use crate::shutdown::Shutdown;

/// Bucket name inside the embedded store.
pub const EMBEDDED_BUCKET: &str = "upload-broker";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedStoreError {
    #[error("cannot prepare signed URLs for the bucket: {0}")]
    Signer(String),
    #[error("cannot prepare the embedded store directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write the embedded store credentials at {path}: {source}")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on 127.0.0.1:{port} for the embedded store (set EMBEDDED_S3_PORT): {source}"
    )]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot open the embedded store: {0}")]
    Open(String),
}

/// The store's S3 service, for requests that reach it through the service's own listener
/// (`/<bucket>/<key>`), answered exactly as on its loopback port.
#[derive(Clone)]
pub struct StoreService(s3s::service::S3Service);

impl std::fmt::Debug for StoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreService")
    }
}

impl StoreService {
    pub async fn answer(&self, req: http::Request<s3s::Body>) -> Response<s3s::Body> {
        with_cors(&self.0, req).await
    }
}

/// A running embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    pub service: StoreService,
    pub addr: SocketAddr,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: Secret,
    /// Its files beside the objects, for removing leftovers.
    pub files: Arc<InternalFiles>,
}

/// Starts the store and serves it until `shutdown` fires.
pub async fn start(
    root: &Path,
    port: u16,
    landed: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    shutdown: Shutdown,
) -> Result<EmbeddedStore, EmbeddedStoreError> {
    let bucket_dir = root.join(EMBEDDED_BUCKET);
    tokio::fs::create_dir_all(&bucket_dir)
        .await
        .map_err(|source| EmbeddedStoreError::Directory {
            path: bucket_dir.clone(),
            source,
        })?;
    let (access_key, secret_key) = load_or_create_credentials(root).await?;

    let fs =
        s3s_fs::FileSystem::new(root).map_err(|e| EmbeddedStoreError::Open(format!("{e:?}")))?;
    let files = Arc::new(InternalFiles::new(
        root.to_path_buf(),
        root.with_extension("parts"),
    ));
    let mut builder =
        S3ServiceBuilder::new(super::strict_fs::StrictFs::new(fs, files.clone(), landed));
    builder.set_auth(SimpleAuth::from_single(
        access_key.clone(),
        secret_key.expose().to_owned(),
    ));
    let s3 = builder.build();

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| EmbeddedStoreError::Bind { port, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmbeddedStoreError::Bind { port, source })?;

    tokio::spawn(serve(listener, s3.clone(), shutdown));

    Ok(EmbeddedStore {
        service: StoreService(s3),
        addr,
        endpoint: format!("http://{addr}"),
        access_key,
        secret_key,
        files,
    })
}

/// Largest read buffer of one connection to the embedded store.
const STORE_READ_BUFFER: usize = 64 * 1024;

async fn serve(listener: TcpListener, s3: s3s::service::S3Service, mut shutdown: Shutdown) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // Bodies stream through in reads of at most this much: hyper's default lets each
    // connection's read buffer grow to 400 KiB, memory every concurrent upload would hold.
    http.http1().max_buf_size(STORE_READ_BUFFER);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "embedded store accept failed");
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        // Without it, a response's body waits behind its headers for the peer's delayed
        // ACK: about 40 ms on each ranged read a confirm makes.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "embedded store connection without TCP_NODELAY");
        }
        let s3 = s3.clone();
        let service = hyper::service::service_fn(move |req| {
            let s3 = s3.clone();
            async move { Ok::<_, Infallible>(with_cors(&s3, req.map(s3s::Body::from)).await) }
        });
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "embedded store connection ended");
            }
        });
    }
}

/// Answers CORS preflights and adds CORS headers, so a page on any origin can PUT to a
/// presigned URL and read the `ETag` of each part (s3s-fs has no CORS of its own).
async fn with_cors(
    s3: &s3s::service::S3Service,
    req: http::Request<s3s::Body>,
) -> Response<s3s::Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    if req.method() == Method::OPTIONS && origin.is_some() {
        let allow_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
        let mut resp = Response::new(s3s::Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        insert_static(
            h,
            &[
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "GET, HEAD, PUT, POST, DELETE",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "3600"),
            ],
        );
        add_cors_headers(h, origin);
        return resp;
    }
    let unsigned = unsigned_amz_headers(req.uri(), req.headers());
    let mut resp = if !unsigned.is_empty() {
        tracing::debug!(headers = ?unsigned, "embedded store refused headers that were not signed");
        headers_not_signed(&unsigned)
    } else {
        match s3.call(req).await {
            Ok(resp) => resp,
            Err(err) => {
                tracing::debug!(error = ?err, "embedded store refused a request");
                let mut resp = Response::new(s3s::Body::empty());
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp
            }
        }
    };
    add_cors_headers(resp.headers_mut(), origin);
    resp
}

/// The `x-amz-*` headers of a SigV4-signed request that its signature does not cover.
/// s3s checks only the headers a signature names, so anyone holding a presigned URL could
/// add metadata, tags or an ACL to the object; AWS refuses such a request, and so does
/// this store. A header must be signed by every signature the request carries (in its
/// query and in its `Authorization` header).
fn unsigned_amz_headers(uri: &http::Uri, headers: &http::HeaderMap) -> Vec<String> {
    let mut signed_lists = Vec::new();
    if let Some(query) = uri.query() {
        signed_lists.extend(
            form_urlencoded::parse(query.as_bytes())
                .filter(|(name, _)| name == "X-Amz-SignedHeaders")
                .map(|(_, list)| list.to_ascii_lowercase()),
        );
    }
    if let Some(params) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AWS4-HMAC-SHA256"))
    {
        signed_lists.extend(
            params
                .split(',')
                .filter_map(|p| p.trim().strip_prefix("SignedHeaders="))
                .map(str::to_ascii_lowercase),
        );
    }
    headers
        .keys()
        .map(header::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .filter(|name| {
            signed_lists
                .iter()
                .any(|list| !list.split(';').any(|signed| signed.trim() == *name))
        })
        .map(str::to_owned)
        .collect()
}

/// AWS's answer to a request with `x-amz-*` headers it did not sign.
fn headers_not_signed(unsigned: &[String]) -> Response<s3s::Body> {
    // Header names are tokens: of XML's special characters they may hold `&` and `'`.
    let names = unsigned.join(", ").replace('&', "&amp;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
         <Message>There were headers present in the request which were not signed</Message>\
         <HeadersNotSigned>{names}</HeadersNotSigned></Error>"
    );
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// Whether an answer carries CORS headers depends on the request's `Origin`, so every
/// answer says it varies with it.
fn add_cors_headers(h: &mut http::HeaderMap, origin: Option<HeaderValue>) {
    crate::vary::vary_on_origin(h);
    if origin.is_none() {
        return;
    }
    insert_static(
        h,
        &[
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "ETag, x-amz-checksum-sha256, x-amz-request-id",
            ),
        ],
    );
}

fn insert_static(h: &mut http::HeaderMap, pairs: &[(header::HeaderName, &'static str)]) {
    for (name, value) in pairs {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
}

/// The key pair lives beside the store, so URLs signed before a restart still work after it.
async fn load_or_create_credentials(root: &Path) -> Result<(String, Secret), EmbeddedStoreError> {
    let path = root.with_extension("credentials");
    let cred_err = |source| EmbeddedStoreError::Credentials {
        path: path.clone(),
        source,
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => {
            if let Some((access, secret)) = text.trim().split_once(':') {
                return Ok((access.to_owned(), Secret::new(secret)));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(cred_err(err)),
    }
    let access = format!("UB{}", &uuid::Uuid::new_v4().simple().to_string()[..18]).to_uppercase();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, format!("{access}:{secret}\n").as_bytes())
        .await
        .map_err(cred_err)?;
    Ok((access, Secret::new(secret)))
}

async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
    file.sync_all().await
}
