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
use poem::{Endpoint, IntoResponse, Request, Response};

use super::routes::{self, Route};
use crate::config::{Config, IpNet};
use crate::problem::Problem;

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
        let rate = NonZeroU32::new(config.limits.rate_limit)?;
        let burst = NonZeroU32::new(config.limits.rate_limit_burst).unwrap_or(rate);
        Some(Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            trusted: config.access.trusted_proxies.clone().into(),
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

/// Whether the request's peer is one of `TRUSTED_PROXIES`, whose `X-Forwarded-*` headers
/// are believed.
pub(super) fn from_trusted_proxy(trusted: &[IpNet], req: &Request) -> bool {
    req.remote_addr().as_socket_addr().is_some_and(|peer| {
        trusted
            .iter()
            .any(|net| net.contains(peer.ip().to_canonical()))
    })
}

pub async fn rate_limit<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let route = routes::route_of_request(&req);
    let limited = route
        .and_then(|r| r.operation(req.method().as_str()))
        .is_some_and(|op| op.limited);
    let wait = match req.data::<RateLimits>() {
        Some(limits) if limited => {
            let clients = [
                limits.client_address(&req).map(Client::Address),
                super::auth::credential(&req, true).map(Client::Credential),
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
    if let (Some(wait), Some(route)) = (wait, route) {
        crate::metrics::rate_limited(route.label());
        return Ok(too_many(route, wait));
    }
    Ok(next.call(req).await?.into_response())
}

fn too_many(route: &Route, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let problem = Problem::new(429, "rate_limited", "too many requests; try again shortly")
        .legacy("Too many requests; try again shortly")
        .retry_after(u32::try_from(seconds.max(1)).unwrap_or(u32::MAX));
    super::error::render(route.error_style(), &problem)
}
