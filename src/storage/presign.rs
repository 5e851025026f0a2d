//! SigV4 query-string presigning of the URLs clients use, without the SDK's request
//! pipeline: the SDK's presigner builds a whole operation (interceptors, endpoint
//! resolution, retries) for every URL, which made signing most of an issue request's cost.
//! The endpoint and addressing style still come from the SDK, read once from a URL it
//! signed at start-up, so both agree on where a key lives.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

use super::StorageError;
use crate::crypto::hmac_sha256 as hmac;
use crate::origin::ClientOrigin;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Credentials are fetched again this long before they expire (roles, SSO).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// A request the client sends itself: the URL and the headers it must carry verbatim.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// The request to sign: method, key, its own query parameters (sorted by name) and the
/// headers the client must send (lower-case names, sorted).
pub struct Unsigned<'a> {
    pub method: &'a str,
    pub key: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
}

/// Credentials with the day's signing key derived from them.
struct SigningKey {
    access_key_id: String,
    session_token: Option<String>,
    expires_at: Option<SystemTime>,
    /// Days since the epoch the key is for.
    day: u64,
    key: [u8; 32],
    secret: String,
}

pub struct Presigner {
    /// `scheme://authority`, as the SDK resolved it.
    origin: String,
    /// The `host` header value the store checks.
    host: String,
    /// The path before the key: `/bucket/` (path style) or `/` (virtual-hosted).
    prefix: String,
    region: String,
    credentials: SharedCredentialsProvider,
    cached: RwLock<Option<std::sync::Arc<SigningKey>>>,
    /// The store is served on the service's own listener too (the embedded one): URLs
    /// signed while a request is answered point at the origin that request reached
    /// (`for_client`).
    follows_client: bool,
}

tokio::task_local! {
    /// The origin the request being answered reached the service at.
    static CLIENT_ORIGIN: Option<ClientOrigin>;
}

/// Runs `call` (a request's handling) with URLs for the embedded store signed for
/// `origin`, the one the client reached.
pub async fn for_client<F: Future>(origin: Option<ClientOrigin>, call: F) -> F::Output {
    CLIENT_ORIGIN.scope(origin, call).await
}

/// Runs `call` with URLs signed for the store's own origin, whatever request is being
/// answered: for what others read later (an event's body).
pub(super) async fn for_no_client<F: Future>(call: F) -> F::Output {
    CLIENT_ORIGIN.scope(None, call).await
}

fn client_origin() -> Option<ClientOrigin> {
    CLIENT_ORIGIN.try_with(Clone::clone).ok().flatten()
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("origin", &self.origin)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Presigner {
    /// `probe_url` is a URL the SDK presigned for the key `probe_key`.
    pub fn new(
        probe_url: &str,
        probe_key: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<Self, StorageError> {
        let unsigned = probe_url.split('?').next().unwrap_or(probe_url);
        let base = unsigned
            .strip_suffix(probe_key)
            .ok_or_else(|| StorageError::Signing(format!("unexpected URL shape: {unsigned}")))?;
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| StorageError::Signing(format!("no scheme in {base}")))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Self {
            origin: format!("{scheme}://{host}"),
            host: host.to_owned(),
            prefix: format!("/{path}"),
            region: region.to_owned(),
            credentials,
            cached: RwLock::new(None),
            follows_client: false,
        })
    }

    /// URLs name `origin` (`PUBLIC_URL`) instead of the one the SDK resolved, with the same
    /// path: the embedded store as the service's listener serves it.
    pub fn at_origin(self, origin: &ClientOrigin) -> Self {
        Self {
            origin: origin.url(),
            host: origin.authority().to_owned(),
            ..self
        }
    }

    /// URLs signed while a request is answered name the origin it reached (`for_client`).
    pub fn following_client(self) -> Self {
        Self {
            follows_client: true,
            ..self
        }
    }

    /// `(origin, host)` a URL signed now names: borrowed from the presigner unless the
    /// request being answered reached another origin.
    fn target(&self) -> (Cow<'_, str>, Cow<'_, str>) {
        match self.follows_client.then(client_origin).flatten() {
            Some(reached) => (
                Cow::Owned(reached.url()),
                Cow::Owned(reached.authority().to_owned()),
            ),
            None => (Cow::Borrowed(&self.origin), Cow::Borrowed(&self.host)),
        }
    }

    /// The URL of a key without any signature (public buckets).
    pub fn unsigned_url(&self, key: &str) -> String {
        let (origin, _) = self.target();
        let mut url = format!("{origin}{}", self.prefix);
        encode_path(&mut url, key);
        url
    }

    /// Signs `request` as of `at` for `expires`. The returned headers are the signed ones
    /// the client must send, `host` and `content-length` left to its HTTP stack.
    pub async fn sign(
        &self,
        request: &Unsigned<'_>,
        at: SystemTime,
        expires: Duration,
    ) -> Result<SignedRequest, StorageError> {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map_err(|e| StorageError::Signing(e.to_string()))?
            .as_secs();
        let key = self.signing_key(secs / 86_400).await?;
        let (origin, host) = self.target();
        Ok(sign_with(
            request,
            &key,
            &host,
            &origin,
            &self.prefix,
            &self.region,
            secs,
            expires,
        ))
    }

    async fn signing_key(&self, day: u64) -> Result<std::sync::Arc<SigningKey>, StorageError> {
        let fresh = |k: &SigningKey| {
            k.expires_at
                .is_none_or(|t| SystemTime::now() + REFRESH_BEFORE_EXPIRY < t)
        };
        if let Ok(guard) = self.cached.read()
            && let Some(key) = guard.as_ref()
            && fresh(key)
        {
            if key.day == day {
                return Ok(key.clone());
            }
            // Another day (a URL anchored at the start of today, near midnight).
            return Ok(std::sync::Arc::new(derive(
                key.access_key_id.clone(),
                key.session_token.clone(),
                key.expires_at,
                &key.secret,
                day,
                &self.region,
            )));
        }
        let creds: Credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| StorageError::Signing(format!("no credentials: {e}")))?;
        let key = std::sync::Arc::new(derive(
            creds.access_key_id().to_owned(),
            creds.session_token().map(str::to_owned),
            creds.expiry(),
            creds.secret_access_key(),
            day,
            &self.region,
        ));
        if let Ok(mut guard) = self.cached.write() {
            *guard = Some(key.clone());
        }
        Ok(key)
    }
}

fn derive(
    access_key_id: String,
    session_token: Option<String>,
    expires_at: Option<SystemTime>,
    secret: &str,
    day: u64,
    region: &str,
) -> SigningKey {
    let date = yyyymmdd(day * 86_400);
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    SigningKey {
        access_key_id,
        session_token,
        expires_at,
        day,
        key: hmac(&k, b"aws4_request"),
        secret: secret.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn sign_with(
    request: &Unsigned<'_>,
    key: &SigningKey,
    host: &str,
    origin: &str,
    prefix: &str,
    region: &str,
    secs: u64,
    expires: Duration,
) -> SignedRequest {
    let date = yyyymmdd(secs);
    let amz_date = amz_datetime(secs);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let credential = format!("{}/{scope}", key.access_key_id);

    // Signed headers: the request's plus host, sorted by name.
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.push(("host", host));
    headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let signed_headers = headers
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(";");

    let expires = expires.as_secs().to_string();
    let mut query: Vec<(&str, &str)> = request.query.to_vec();
    query.extend([
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", amz_date.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", signed_headers.as_str()),
    ]);
    if let Some(token) = &key.session_token {
        query.push(("X-Amz-Security-Token", token));
    }
    // Every name here is unreserved, so sorting the raw names sorts the encoded ones.
    query.sort_unstable();
    let mut canonical_query = String::with_capacity(512);
    for (i, (name, value)) in query.iter().enumerate() {
        if i > 0 {
            canonical_query.push('&');
        }
        encode(&mut canonical_query, name, false);
        canonical_query.push('=');
        encode(&mut canonical_query, value, false);
    }

    let mut path = String::with_capacity(prefix.len() + request.key.len() + 8);
    path.push_str(prefix);
    encode_path(&mut path, request.key);

    let mut canonical = String::with_capacity(1024);
    let _ = write!(canonical, "{}\n{path}\n{canonical_query}\n", request.method);
    for (name, value) in &headers {
        let _ = writeln!(canonical, "{name}:{}", value.trim());
    }
    let _ = write!(canonical, "\n{signed_headers}\nUNSIGNED-PAYLOAD");

    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let signature = hex(&hmac(&key.key, string_to_sign.as_bytes()));
    SignedRequest {
        url: format!("{origin}{path}?{canonical_query}&X-Amz-Signature={signature}"),
        headers: request
            .headers
            .iter()
            .filter(|(name, _)| *name != "content-length")
            .map(|(name, value)| (canonical_header_name(name), (*value).to_owned()))
            .collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// SigV4's URI encoding: RFC 3986 unreserved characters stay, all else is `%XX`;
/// `/` stays too when `keep_slash` (object keys in the path).
fn encode(out: &mut String, text: &str, keep_slash: bool) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
    }
}

fn encode_path(out: &mut String, key: &str) {
    encode(out, key, true);
}

fn utc(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `content-type` -> `Content-Type`; `x-amz-*` headers keep S3's lower case.
pub(super) fn canonical_header_name(name: &str) -> String {
    if name.starts_with("x-amz-") {
        return name.to_owned();
    }
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn yyyymmdd(secs: u64) -> String {
    utc(secs)
        .format(format_description!("[year][month][day]"))
        .unwrap_or_default()
}

fn amz_datetime(secs: u64) -> String {
    utc(secs)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presigned_get_matches_the_s3_documentation_example() {
        // The presigned GET example of the S3 SigV4 documentation (query-string auth).
        let key = derive(
            "AKIAIOSFODNN7EXAMPLE".into(),
            None,
            None,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            1_369_353_600 / 86_400,
            "us-east-1",
        );
        let signed = sign_with(
            &Unsigned {
                method: "GET",
                key: "test.txt",
                query: &[],
                headers: &[],
            },
            &key,
            "examplebucket.s3.amazonaws.com",
            "https://examplebucket.s3.amazonaws.com",
            "/",
            "us-east-1",
            1_369_353_600,
            Duration::from_secs(86_400),
        );
        assert!(
            signed.url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{}",
            signed.url
        );
        assert!(
            signed
                .url
                .starts_with("https://examplebucket.s3.amazonaws.com/test.txt?")
        );
    }
}
