//! Which origin a request reached the service at, and whether that host is one the service
//! answers for (`ALLOWED_HOSTS`, else 400 `unknown_host`). The origin is the `Host` (or an
//! HTTP/2 request's authority), with `X-Forwarded-Host`/`X-Forwarded-Proto` believed only
//! from `TRUSTED_PROXIES`; with `PUBLIC_URL` set it is that, whatever the request says.

use std::sync::Arc;

use poem::http::header;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::limits::from_trusted_proxy;
use super::routes;
use crate::config::{Config, IpNet};
use crate::origin::{AllowedHost, ClientOrigin};
use crate::problem::Problem;

/// What decides a request's origin.
#[derive(Clone)]
pub struct Reach {
    /// `PUBLIC_URL`: every request's origin.
    public_url: Option<ClientOrigin>,
    allowed: Arc<[AllowedHost]>,
    trusted: Arc<[IpNet]>,
}

impl Reach {
    pub fn from_config(config: &Config) -> Self {
        Self {
            public_url: config.server.public_url.clone(),
            allowed: config.server.allowed_hosts.clone().into(),
            trusted: config.access.trusted_proxies.clone().into(),
        }
    }

    /// The `host[:port]` and scheme the client used, as far as this request can tell.
    fn reached(&self, req: &Request) -> (Option<String>, bool) {
        let first = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let proxied = from_trusted_proxy(&self.trusted, req);
        let host = proxied
            .then(|| first("x-forwarded-host"))
            .flatten()
            .or_else(|| first(header::HOST.as_str()))
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
        let https = if proxied && let Some(proto) = first("x-forwarded-proto") {
            proto.eq_ignore_ascii_case("https")
        } else {
            req.uri().scheme_str() == Some("https")
        };
        (host, https)
    }
}

/// What a request's host means here.
enum Reached {
    /// The origin its URLs are made for.
    At(ClientOrigin),
    /// No host usable in a URL (the store's own address is used).
    Nowhere,
    /// A host outside `ALLOWED_HOSTS`.
    Unknown,
}

/// Refuses a host outside `ALLOWED_HOSTS` (except on `/health`, which load balancers and
/// the container's health check ask by address), and hands the request the origin its
/// URLs are made for.
pub async fn reach<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    match req.data::<Reach>().map(|reach| reach.decide(&req)) {
        Some(Reached::Unknown) => {
            let problem = Problem::bad_request(
                "unknown_host",
                "this service does not answer for that host name (ALLOWED_HOSTS)",
            )
            .legacy("Unknown host");
            let style = routes::error_style(routes::route_of_request(&req));
            return Ok(super::error::render(style, &problem));
        }
        Some(Reached::At(origin)) => {
            req.extensions_mut().insert(origin);
        }
        Some(Reached::Nowhere) | None => {}
    }
    next.call(req).await.map(IntoResponse::into_response)
}

impl Reach {
    fn decide(&self, req: &Request) -> Reached {
        let (host, https) = self.reached(req);
        let health =
            routes::route_of_request(req).is_some_and(|r| r.template.starts_with("/health"));
        if !self.allowed.is_empty()
            && !health
            && !host
                .as_deref()
                .is_some_and(|host| self.allowed.iter().any(|a| a.allows(host)))
        {
            tracing::debug!(
                host = host.as_deref().unwrap_or(""),
                "host not in ALLOWED_HOSTS"
            );
            return Reached::Unknown;
        }
        let origin = match &self.public_url {
            Some(public) => Some(public.clone()),
            None => host.and_then(|host| ClientOrigin::new(https, &host)),
        };
        origin.map_or(Reached::Nowhere, Reached::At)
    }
}
