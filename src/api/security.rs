//! Browser-facing safety: headers on every answer, a strict policy for the upload page,
//! and CORS for the configured origins only.

use poem::http::{HeaderName, HeaderValue, Method, header};
use poem::middleware::Cors;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

/// The page runs only its own scripts and styles, loads no plugins, and no other site may
/// frame it. Storage URLs (PUTs, thumbnails) live on other origins, so `connect-src` and
/// `img-src` stay open.
const PAGE_POLICY: &str = "script-src 'self'; style-src 'self'; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Every answer: no content sniffing, no referrer (signed URLs and ids stay private). The
/// upload page also gets its content security policy.
pub async fn security_headers<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let page = super::routes::route_of_request(&req).is_some_and(|r| r.page);
    let mut resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let headers = resp.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if page && html {
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok(resp)
}

/// CORS for `origins` (the `CORS_ORIGINS` setting): the API's methods and the headers its
/// clients send (tus's too), and `Retry-After` readable, so a page can wait as a 429 or 503
/// asks, with `Location` and tus's answer headers for a tus client.
/// Other origins get no CORS headers, so browsers keep them out. Every answer says it
/// varies with `Origin` (poem's `Cors` says so only for wildcard origins).
pub fn cors(origins: &[String]) -> ApiCors {
    ApiCors(
        Cors::new()
            .allow_origins(origins.iter().map(String::as_str))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::DELETE,
                Method::PATCH,
                Method::HEAD,
            ])
            .allow_headers(
                [header::CONTENT_TYPE, header::AUTHORIZATION]
                    .into_iter()
                    .chain(TUS_REQUEST_HEADERS.map(HeaderName::from_static)),
            )
            .expose_headers(
                [header::RETRY_AFTER, header::LOCATION]
                    .into_iter()
                    .chain(TUS_ANSWER_HEADERS.map(HeaderName::from_static)),
            )
            .max_age(600),
    )
}

/// What a tus client sends, besides the type and credentials.
const TUS_REQUEST_HEADERS: [&str; 8] = [
    "tus-resumable",
    "upload-length",
    "upload-metadata",
    "upload-offset",
    "upload-checksum",
    "upload-defer-length",
    "upload-concat",
    "x-http-method-override",
];

/// What a tus client reads from the answers.
const TUS_ANSWER_HEADERS: [&str; 9] = [
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
];

/// poem's `Cors`, with `Vary: Origin` on every answer.
pub struct ApiCors(Cors);

impl<E: Endpoint> Middleware<E> for ApiCors {
    type Output = VaryOrigin<<Cors as Middleware<E>>::Output>;

    fn transform(&self, ep: E) -> Self::Output {
        VaryOrigin(self.0.transform(ep))
    }
}

pub struct VaryOrigin<E>(E);

impl<E: Endpoint> Endpoint for VaryOrigin<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut resp = match self.0.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => err.into_response(),
        };
        crate::vary::vary_on_origin(resp.headers_mut());
        Ok(resp)
    }
}
