//! Rate limits on the endpoints that write (issuing, signing parts, confirming, legacy
//! uploads, minting links): per client address and, when the request carries one, per API
//! key or upload link. Over the limit: 429 with `Retry-After`. Off unless `RATE_LIMIT` is
//! set. `X-Forwarded-For` names the client only when the peer is a trusted proxy.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::config::{Config, IpNet};
use crate::metrics::route_of;

/// Stale buckets are dropped after this many checks, so memory stays bounded.
const PRUNE_EVERY: u64 = 10_000;

/// What a bucket is kept for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Client {
    Address(IpAddr),
    Credential(String),
}

#[derive(Clone)]
pub struct RateLimits {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
    trusted: Arc<[IpNet]>,
    checks: Arc<AtomicU64>,
}

impl RateLimits {
    /// `None` when `RATE_LIMIT` is 0.
    pub fn from_config(config: &Config) -> Option<Self> {
        let rate = NonZeroU32::new(config.rate_limit)?;
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
        Some(Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            trusted: config.trusted_proxies.clone().into(),
            checks: Arc::default(),
        })
    }

    /// How long `client` must wait, or `None` when it may go now.
    fn wait(&self, client: &Client) -> Option<Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(client)
            .err()
            .map(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// The client's address: the peer, or when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not one.
    fn client_address(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.remote_addr().as_socket_addr()?.ip().to_canonical();
        let trusted = |ip: IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

/// Whether a request is one of the limited writes.
fn limited(req: &Request) -> bool {
    req.method() == Method::POST
        && matches!(
            route_of(req.uri().path()),
            "/api/v1/uploads"
                | "/api/v1/uploads/{upload_id}/parts"
                | "/api/v1/uploads/{upload_id}/confirm"
                | "/api/v1/links"
                | "/upload/{image_id}"
        )
}

/// The credential a request carries: a bearer token or a legacy `?token=`.
fn credential(req: &Request) -> Option<String> {
    super::bearer_token(req).or_else(|| {
        req.uri().query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        })
    })
}

pub async fn rate_limit<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let wait = match req.data::<RateLimits>() {
        Some(limits) if limited(&req) => {
            let clients = [
                limits.client_address(&req).map(Client::Address),
                credential(&req).map(Client::Credential),
            ];
            // Every bucket is charged, so a key cannot hide an address's flood or the
            // reverse.
            clients
                .iter()
                .flatten()
                .filter_map(|client| limits.wait(client))
                .max()
        }
        _ => None,
    };
    if let Some(wait) = wait {
        crate::metrics::rate_limited(route_of(req.uri().path()));
        return Ok(too_many(&req, wait));
    }
    Ok(next.call(req).await?.into_response())
}

fn too_many(req: &Request, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = if route_of(req.uri().path()) == "/upload/{image_id}" {
        serde_json::json!({"success": false, "error": "Too many requests; try again shortly"})
    } else {
        serde_json::json!({"code": "rate_limited", "message": "too many requests; try again shortly"})
    };
    let mut resp = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string());
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, value);
    }
    resp
}
