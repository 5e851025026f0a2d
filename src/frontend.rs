//! The upload page, embedded in the binary so the release build needs no files beside it.

use poem::http::StatusCode;
use poem::web::Path;
use poem::{IntoResponse, Response, handler};

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

/// `GET /`: the page needs an image_id, so the root shows the API documentation.
#[handler]
pub fn index() -> poem::web::Redirect {
    poem::web::Redirect::see_other("/docs")
}
