//! The upload page: every file of `frontend/`, embedded in the binary so the release build
//! needs no files beside it. `FRONTEND_DIR` serves them from disk instead (to work on the
//! page without rebuilding).

use std::borrow::Cow;
use std::path::PathBuf;

use poem::http::{Method, StatusCode};
use poem::web::Path;
use poem::{Endpoint, IntoResponse, Request, Response, handler};

/// `(file name, bytes)` for each file of `frontend/`.
static EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/frontend_files.rs"));

/// Where the page's files come from.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    dir: Option<PathBuf>,
}

impl Assets {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// A file by name, if `frontend/` has it.
    pub fn get(&self, name: &str) -> Option<Cow<'static, [u8]>> {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return None;
        }
        if let Some(dir) = &self.dir {
            return std::fs::read(dir.join(name)).ok().map(Cow::Owned);
        }
        EMBEDDED
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, bytes)| Cow::Borrowed(*bytes))
    }

    /// The upload page.
    pub fn page(&self) -> String {
        self.text("index.html")
    }

    /// The operators' console.
    pub fn console(&self) -> String {
        self.text("admin.html")
    }

    fn text(&self, name: &str) -> String {
        self.get(name)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /static/{name}`.
#[handler]
pub fn asset(Path(name): Path<String>, assets: poem::web::Data<&Assets>) -> Response {
    match assets.get(&name) {
        Some(bytes) => Response::builder()
            .content_type(content_type(&name))
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff")
            .body(bytes.into_owned()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /favicon.ico`, which browsers ask for on their own: the page's icon.
#[handler]
pub fn favicon(assets: poem::web::Data<&Assets>) -> Response {
    match assets.get("favicon.svg") {
        Some(bytes) => Response::builder()
            .content_type("image/svg+xml")
            .header("Cache-Control", "max-age=86400")
            .body(bytes.into_owned()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /`: the page needs an image_id, so the root shows the API documentation. (A route
/// at `/` would be shadowed by the API nested at `/`.)
pub async fn root_redirect<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" && req.method() == Method::GET {
        return Ok(poem::web::Redirect::see_other("/docs").into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_every_asset_it_names_are_embedded() {
        let assets = Assets::default();
        let page = assets.page();
        assert!(page.contains("<html"));
        let named: Vec<&str> = page
            .split("/static/")
            .skip(1)
            .filter_map(|rest| rest.split(['"', '\'']).next())
            .collect();
        assert!(!named.is_empty(), "the page loads its script and styles");
        for name in named {
            assert!(assets.get(name).is_some(), "{name} is embedded");
        }
        assert!(assets.get("../Cargo.toml").is_none());
        assert!(assets.get("missing.js").is_none());
    }
}
