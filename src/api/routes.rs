//! The route table: every path the service answers, once. Metric labels, rate limits,
//! who must authenticate, the upload page's content security policy, a 405's `Allow`, the
//! ids a request's log line names, and whether an error takes the v1 or the seed's shape
//! all come from here. A new endpoint is added here, or a test fails.

/// How a route's errors are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{code, message}`.
    V1,
    /// The seed's `{success: false, error}`.
    Legacy,
}

/// Which API a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/api/v1/...`: JSON bodies (bounded to `MAX_JSON_BODY`), v1 errors.
    V1,
    /// The seed's routes: its error shape.
    Legacy,
    /// Health, metrics, the document, docs, the page and its files: v1 errors.
    Service,
    /// The embedded store, served here under its bucket's path: S3's own answers, each
    /// request checked by the store against its signature.
    Store,
    /// tus (`/api/v1/tus...`): v1 errors, bodies streamed to storage rather than bounded.
    Tus,
}

/// Who may call an operation; checked before its input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Open,
    /// With `API_KEYS` set, an API key or an upload link.
    Caller,
    /// One of `ADMIN_KEYS` (403 `admin_disabled` when there are none).
    Admin,
    /// `STORAGE_EVENTS_TOKEN` (403 `storage_events_disabled` when unset).
    StorageEvents,
}

/// One method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub method: &'static str,
    /// Counted against `RATE_LIMIT`.
    pub limited: bool,
    pub auth: Auth,
}

const fn read(method: &'static str) -> Operation {
    Operation {
        method,
        limited: false,
        auth: Auth::Open,
    }
}

const fn write(method: &'static str) -> Operation {
    Operation {
        method,
        limited: true,
        auth: Auth::Caller,
    }
}

/// An operators' operation: an admin key, and rate-limited like the writes.
const fn admin(method: &'static str) -> Operation {
    Operation {
        method,
        limited: true,
        auth: Auth::Admin,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The template, as the OpenAPI document writes it and metrics label it.
    pub template: &'static str,
    /// Its methods, in alphabetical order (as `Allow` lists them).
    pub operations: &'static [Operation],
    pub family: Family,
    /// The template also covers every path below it (`/docs/...`, `/static/...`).
    pub prefix: bool,
    /// The upload page: gets the strict content security policy.
    pub page: bool,
}

const fn route(template: &'static str, operations: &'static [Operation]) -> Route {
    Route {
        template,
        operations,
        family: Family::Service,
        prefix: false,
        page: false,
    }
}

const fn v1(template: &'static str, operations: &'static [Operation]) -> Route {
    Route {
        family: Family::V1,
        ..route(template, operations)
    }
}

const fn legacy(template: &'static str, operations: &'static [Operation]) -> Route {
    Route {
        family: Family::Legacy,
        ..route(template, operations)
    }
}

const GET: &[Operation] = &[read("GET")];

const fn tree(template: &'static str) -> Route {
    Route {
        prefix: true,
        ..route(template, GET)
    }
}

/// Every route. The order matters only where a fixed path and a template could both match:
/// fixed paths come first.
pub const ROUTES: &[Route] = &[
    v1("/api/v1/uploads", &[write("POST")]),
    v1("/api/v1/links", &[write("POST")]),
    v1(
        "/api/v1/uploads/{upload_id}",
        &[
            Operation {
                method: "DELETE",
                limited: false,
                auth: Auth::Caller,
            },
            read("GET"),
        ],
    ),
    v1(
        "/api/v1/uploads/{upload_id}/parts",
        &[read("GET"), write("POST")],
    ),
    v1("/api/v1/uploads/{upload_id}/confirm", &[write("POST")]),
    v1(
        "/api/v1/storage-events",
        &[Operation {
            method: "POST",
            limited: true,
            auth: Auth::StorageEvents,
        }],
    ),
    v1("/api/v1/uploads/{upload_id}/variants/{variant}", GET),
    v1("/api/v1/webhooks", &[admin("GET"), admin("POST")]),
    v1("/api/v1/webhooks/deliveries", &[admin("GET")]),
    v1(
        "/api/v1/webhooks/deliveries/{delivery_id}/retry",
        &[admin("POST")],
    ),
    v1("/api/v1/webhooks/{webhook_id}", &[admin("DELETE")]),
    v1("/api/v1/webhooks/{webhook_id}/enable", &[admin("POST")]),
    v1("/api/v1/admin/uploads", &[admin("GET")]),
    v1("/api/v1/admin/stats", &[admin("GET")]),
    v1("/api/v1/admin/audit", &[admin("GET")]),
    v1("/api/v1/admin/uploads/{upload_id}", &[admin("DELETE")]),
    v1(
        "/api/v1/admin/uploads/{upload_id}/reverify",
        &[admin("POST")],
    ),
    v1(
        "/api/v1/admin/uploads/{upload_id}/variants",
        &[admin("POST")],
    ),
    v1("/api/v1/images/{image_id}", GET),
    v1("/api/v1/images/{image_id}/latest", GET),
    v1("/api/v1/images/{image_id}/latest/variants/{variant}", GET),
    Route {
        family: Family::Tus,
        ..route("/api/v1/tus", &[read("OPTIONS"), write("POST")])
    },
    Route {
        family: Family::Tus,
        ..route(
            "/api/v1/tus/{upload_id}",
            &[
                Operation {
                    method: "DELETE",
                    limited: false,
                    auth: Auth::Caller,
                },
                read("HEAD"),
                write("PATCH"),
            ],
        )
    },
    legacy("/api/url/{image_id}", GET),
    legacy("/api/images/{image_id}", GET),
    legacy("/upload/{image_id}", &[write("POST")]),
    route("/health", GET),
    route("/health/ready", GET),
    route("/metrics", GET),
    route("/openapi.json", GET),
    tree("/docs"),
    tree("/static"),
    // The browser's icon request, counted with the page's other files.
    Route {
        template: "/favicon.ico",
        ..tree("/static")
    },
    route("/", GET),
    // The embedded store's bucket (`storage::embedded::EMBEDDED_BUCKET`, a test checks),
    // with at least one segment after it: `/upload-broker` alone is an image_id's page.
    Route {
        template: STORE_TEMPLATE,
        operations: &[
            read("DELETE"),
            read("GET"),
            read("HEAD"),
            read("OPTIONS"),
            read("POST"),
            read("PUT"),
        ],
        family: Family::Store,
        prefix: true,
        page: false,
    },
    Route {
        page: true,
        ..route("/admin", GET)
    },
    Route {
        page: true,
        ..route("/{image_id}", GET)
    },
];

/// The embedded store's objects, as the service's listener serves them.
pub const STORE_TEMPLATE: &str = "/upload-broker/{key}";

/// The label of a path that matches no route.
pub const OTHER: &str = "other";

impl Route {
    /// Whether `path` (without its leading `/`) is this route. Walks both without
    /// allocating: every request asks this of the table.
    fn matches(&self, path: &str) -> bool {
        let mut pattern = self.template.trim_start_matches('/').split('/');
        let mut segments = path.split('/');
        loop {
            match (pattern.next(), segments.next()) {
                (Some(part), Some(segment)) if part.starts_with('{') || part == segment => {}
                (None, None) => return true,
                (None, Some(_)) => return self.prefix,
                (Some(_), _) => return false,
            }
        }
    }

    /// The label metrics and logs use: the template, with `/favicon.ico` filed under the
    /// page's other files.
    pub fn label(&self) -> &'static str {
        if self.template == "/favicon.ico" {
            "/static"
        } else {
            self.template
        }
    }

    pub fn error_style(&self) -> ErrorStyle {
        match self.family {
            Family::Legacy => ErrorStyle::Legacy,
            Family::V1 | Family::Service | Family::Store | Family::Tus => ErrorStyle::V1,
        }
    }

    pub fn operation(&self, method: &str) -> Option<&'static Operation> {
        self.operations
            .iter()
            .find(|op| op.method.eq_ignore_ascii_case(method))
    }

    /// The `Allow` header of a 405.
    pub fn allow(&self) -> String {
        self.operations
            .iter()
            .map(|op| op.method)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The upload_id and image_id `path` names, for its log line.
    pub fn ids<'a>(&self, path: &'a str) -> (Option<&'a str>, Option<&'a str>) {
        let pattern = self.template.trim_start_matches('/').split('/');
        let segments = path.trim_start_matches('/').split('/');
        let (mut upload_id, mut image_id) = (None, None);
        for (part, segment) in pattern.zip(segments) {
            match part {
                "{upload_id}" => upload_id = Some(segment),
                "{image_id}" if !self.page => image_id = Some(segment),
                _ => {}
            }
        }
        (upload_id, image_id)
    }
}

/// The route `path` belongs to, if any.
pub fn route_of(path: &str) -> Option<&'static Route> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return ROUTES.iter().find(|r| r.template == "/");
    }
    ROUTES.iter().find(|r| r.template != "/" && r.matches(path))
}

/// The route of a request, found once by the outermost middleware (`found_route`) and
/// read from the request after that.
pub fn route_of_request(req: &poem::Request) -> Option<&'static Route> {
    match req.extensions().get::<Found>() {
        Some(Found(route)) => *route,
        None => route_of(req.uri().path()),
    }
}

/// The route a request was found to belong to.
#[derive(Clone, Copy)]
struct Found(Option<&'static Route>);

/// Finds the request's route once, for every middleware and log line after it.
pub async fn found_route<E: poem::Endpoint>(
    next: E,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let route = route_of(req.uri().path());
    req.extensions_mut().insert(Found(route));
    next.call(req).await.map(IntoResponse::into_response)
}

/// The metric label of a request's route: its template, or `other` for none.
pub fn label(route: Option<&Route>) -> &'static str {
    route.map_or(OTHER, Route::label)
}

/// How errors on a request's route are drawn (v1 unless it is one of the seed's).
pub fn error_style(route: Option<&Route>) -> ErrorStyle {
    route.map_or(ErrorStyle::V1, Route::error_style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_templates() {
        for (path, label) in [
            (
                "/api/v1/uploads/0190/confirm",
                "/api/v1/uploads/{upload_id}/confirm",
            ),
            ("/api/v1/uploads/0190", "/api/v1/uploads/{upload_id}"),
            ("/api/v1/links", "/api/v1/links"),
            ("/api/url/cat", "/api/url/{image_id}"),
            ("/cat", "/{image_id}"),
            ("/", "/"),
            ("/health", "/health"),
            ("/docs/", "/docs"),
            ("/docs/index.css", "/docs"),
            ("/static/app.js", "/static"),
            ("/favicon.ico", "/static"),
            ("/a/b/c/d/e/f", OTHER),
            ("/upload-broker/staging/cat/0190.png", STORE_TEMPLATE),
            ("/upload-broker", "/{image_id}"),
        ] {
            assert_eq!(self::label(route_of(path)), label, "{path}");
        }
        assert_eq!(error_style(route_of("/upload/cat")), ErrorStyle::Legacy);
        assert_eq!(error_style(route_of("/api/v1/uploads")), ErrorStyle::V1);
        assert_eq!(error_style(route_of("/nowhere/at/all")), ErrorStyle::V1);
    }

    #[test]
    fn ids_come_from_the_template() {
        let confirm = route_of("/api/v1/uploads/abc/confirm").expect("route");
        assert_eq!(
            confirm.ids("/api/v1/uploads/abc/confirm"),
            (Some("abc"), None)
        );
        let legacy = route_of("/upload/cat").expect("route");
        assert_eq!(legacy.ids("/upload/cat"), (None, Some("cat")));
        assert_eq!(
            route_of("/upload/cat").map(Route::allow).as_deref(),
            Some("POST")
        );
    }

    /// Every documented operation, and the paths outside the document, are in the table
    /// with their methods; a new endpoint missing from it fails here.
    #[test]
    fn the_table_covers_the_document_and_the_undocumented_paths() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi/openapi.json")).expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(!paths.is_empty());
        for (path, item) in paths {
            let route = ROUTES
                .iter()
                .find(|r| r.template == path)
                .unwrap_or_else(|| panic!("{path} is not in the route table"));
            let mut documented: Vec<String> = item
                .as_object()
                .expect("operations")
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            documented.sort();
            let listed: Vec<&str> = route.operations.iter().map(|op| op.method).collect();
            assert_eq!(documented, listed, "{path}");
            assert_eq!(route_of(&example(path)), Some(route), "{path}");
        }
        for path in [
            "/openapi.json",
            "/docs",
            "/static",
            "/favicon.ico",
            "/metrics",
            "/{image_id}",
            "/",
            STORE_TEMPLATE,
        ] {
            assert!(ROUTES.iter().any(|r| r.template == path), "{path}");
        }
    }

    /// A concrete path of a template.
    fn example(template: &str) -> String {
        template
            .split('/')
            .map(|part| if part.starts_with('{') { "x1" } else { part })
            .collect::<Vec<_>>()
            .join("/")
    }
}
