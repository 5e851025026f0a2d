//! The upload page, embedded in the binary so the release build needs no files beside it.

use poem::http::{Method, StatusCode};
use poem::web::Path;
use poem::{Endpoint, IntoResponse, Request, Response, handler};

pub const INDEX_HTML: &str = include_str!("../frontend/index.html");
const APP_JS: &str = include_str!("../frontend/app.js");
const APP_CSS: &str = include_str!("../frontend/app.css");

/// `GET /static/{name}`.
#[handler]
pub fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Response::builder()
        .content_type(content_type)
        .header("Cache-Control", "no-cache")
        .body(body)
}

/// `GET /`: the page needs an image_id, so the root shows the API documentation. (A route
/// at `/` would be shadowed by the API nested at `/`.)
pub async fn root_redirect<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" && req.method() == Method::GET {
        return Ok(poem::web::Redirect::see_other("/docs").into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}
