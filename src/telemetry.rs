//! Logging: JSON lines in production, readable text otherwise, level from `LOG_LEVEL`.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Libraries stay at `warn` so a request is one line; the
/// embedded store's debug output would print signed URLs.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},s3s=warn,s3s_fs=warn,aws_config=warn,aws_smithy_runtime=warn,\
             aws_sdk_s3=warn,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,poem=warn"
        ))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Another subscriber may already be set (tests): keep it.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// One line per request: method, path (never a query string), status and duration.
pub async fn log_request<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = crate::api::routes::route_of_request(&req);
    let result = next.call(req).await;
    let response = match result {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    crate::metrics::http_request(
        crate::api::routes::label(route),
        method.as_str(),
        status,
        elapsed,
    );
    let ms = elapsed.as_micros() as f64 / 1000.0;
    let (upload_id, image_id) = route.map_or((None, None), |r| r.ids(&path));
    if status >= 500 {
        tracing::warn!(target: "http", %method, path, status, ms, upload_id, image_id, "request");
    } else {
        tracing::info!(target: "http", %method, path, status, ms, upload_id, image_id, "request");
    }
    Ok(response)
}
