//! Builds the service: storage, database, routes and the listener; serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, Route, Server};

use crate::api;
use crate::auth::Access;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::frontend::{self, Assets};
use crate::origin::ClientOrigin;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::storage::embedded::{EMBEDDED_BUCKET, EmbeddedStoreError, StoreService};
use crate::storage::{self, Storage};
use crate::telemetry;
use crate::uploads::{UploadService, spawn_sweeper};
use crate::webhooks::{WebhookService, schedule, spawn_dispatcher};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Storage(#[from] EmbeddedStoreError),
    #[error("cannot open the database: {0}")]
    Database(#[from] DbError),
    #[error("cannot start the webhook dispatcher: {0}")]
    Webhooks(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A built service: the listener is bound, so `address` is the real one (port 0 in tests).
pub struct Application {
    address: SocketAddr,
    uploads: UploadService,
    db: Db,
    storage: Storage,
    server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
    store_stop: ShutdownTrigger,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(config: Config, shutdown: Shutdown) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        // The embedded store outlives the HTTP server's drain, so uploads cut short by the
        // shutdown can still abort what they started in it.
        let (store_stop, store_shutdown) = shutdown::channel();
        let storage = Storage::connect(&config, store_shutdown).await?;
        let db = Db::connect(&config).await?;
        db.sync_config_endpoints(&config.webhooks.urls).await?;
        let access = Arc::new(
            Access::new(
                config.access.api_keys.clone(),
                config.access.secret_key.clone(),
                config.access.admin_keys.clone(),
            )
            .with_storage_events(config.access.storage_events_token.clone()),
        );
        let uploads = UploadService::new(
            db.clone(),
            storage.clone(),
            config.clone(),
            access.clone(),
            shutdown.clone(),
        );

        let addr = SocketAddr::new(config.server.bind_addr, config.server.port);
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map(NoDelay)
            .map_err(|source| StartupError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let address = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(addr);

        if !config.sweeper.interval.is_zero() {
            spawn_sweeper(
                uploads.clone(),
                config.sweeper.interval,
                config.sweeper.clock_skew_margin,
                shutdown.clone(),
            );
        }
        let dispatcher = spawn_dispatcher(
            db.clone(),
            config.webhooks.clone(),
            shutdown.clone(),
            config.server.shutdown_grace,
        )?;
        if !config.webhooks.urls.is_empty() {
            tracing::info!(
                endpoints = config.webhooks.urls.len(),
                retries = %schedule::describe(&config.webhooks.retry_schedule),
                "webhooks on"
            );
        }
        if let Some(queue) = crate::storage::EventQueue::connect(&config).await {
            tracing::info!("storage events queue on");
            crate::uploads::spawn_queue_poller(uploads.clone(), queue, shutdown.clone());
        }
        if let Some(landed) = storage.take_landed() {
            crate::uploads::spawn_auto_confirm(uploads.clone(), landed, shutdown.clone());
        }
        if config.variants.enabled() {
            crate::variants::spawn_variant_worker(
                db.clone(),
                uploads.clone(),
                config.variants.workers,
                shutdown.clone(),
            );
        }
        let webhooks = WebhookService::new(db.clone(), config.clone());
        let app = routes(
            uploads.clone(),
            webhooks,
            access,
            Assets::new(config.server.frontend_dir.clone()),
            storage.store_service(),
            &config,
        );
        let grace = config.server.shutdown_grace;
        let mut stop = shutdown;
        let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            app,
            async move { stop.wait().await },
            Some(grace),
        );
        tracing::info!(%address, environment = %config.server.environment, "upload-broker listening");
        Ok(Self {
            address,
            uploads,
            db,
            storage,
            server: Box::pin(server),
            store_stop,
            dispatcher,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn uploads(&self) -> &UploadService {
        &self.uploads
    }

    /// The database the service uses, for tests and tools that read it directly.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The object store, for tests and tools that look at what the service stored.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The URL the service reaches its object store at: the embedded store's address, or
    /// `AWS_ENDPOINT_URL`; `None` for AWS itself.
    pub fn storage_endpoint(&self) -> Option<&str> {
        self.storage.endpoint()
    }

    /// Serves until the shutdown signal, then drains for at most `SHUTDOWN_GRACE`.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
        // The dispatcher stopped claiming at the same signal; its attempts get the grace.
        if let Err(err) = self.dispatcher.await {
            tracing::error!(error = %err, "the webhook dispatcher stopped abnormally");
        }
        self.store_stop.trigger();
        result
    }
}

/// Every route: the documented API, its spec and docs, the page's assets.
pub fn routes(
    uploads: UploadService,
    webhooks: WebhookService,
    access: Arc<Access>,
    assets: Assets,
    store: Option<StoreService>,
    config: &Config,
) -> impl poem::Endpoint + 'static {
    let cors_origins = &config.access.cors_origins;
    let storage_budget = config.storage.operation_timeout;
    let limits = api::RateLimits::from_config(config);
    // Swagger UI is a 3 MiB page (its script inlined) that few ever open: it is made when
    // asked for, from an instance of the API kept for that, not held in memory.
    let docs_api = api::service(
        uploads.clone(),
        webhooks.clone(),
        assets.clone(),
        &config.server.environment,
    );
    let api = api::service(
        uploads,
        webhooks,
        assets.clone(),
        &config.server.environment,
    );
    let raw = std::sync::Arc::new(api.spec());
    let spec = std::sync::Arc::new(api::document(&raw, config.limits.max_upload_size));
    let served = std::sync::Arc::clone(&spec);
    let spec_endpoint = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(served.as_str().to_owned())
    });
    let docs = Route::new().at(
        "/",
        poem::endpoint::make_sync(move |_| {
            // The page embeds poem-openapi's document; it shows the served one instead.
            poem::web::Html(docs_api.swagger_ui_html().replacen(raw.as_str(), &spec, 1))
        }),
    );
    let answered = Route::new()
        .at("/openapi.json", spec_endpoint)
        .nest("/docs", docs)
        .at("/static/:name", frontend::asset)
        .at("/favicon.ico", frontend::favicon)
        .nest("/", api)
        .around(frontend::root_redirect)
        .data(assets)
        // Boxed layers keep the endpoint's type within the compiler's depth limit, and each
        // request's future off the stack (a debug build's nested futures overflowed it).
        .boxed()
        .around(move |next, req| async move {
            // Every request waits on storage for S3_OPERATION_TIMEOUT at most, in all, and
            // the embedded store's URLs it is handed name the origin it reached.
            let origin = req.extensions().get::<ClientOrigin>().cloned();
            let call = storage::with_budget(storage_budget, next.call(req));
            storage::for_client(origin, call).await
        })
        .around(api::limit_json_body)
        .around(api::authenticate)
        .data(access)
        .boxed()
        .around(api::json_errors)
        .around(api::rate_limit)
        .data_opt(limits)
        .with_if(!cors_origins.is_empty(), api::cors(cors_origins))
        .boxed();
    let mut paths = Route::new();
    if let Some(store) = store {
        // The embedded store on the page's own origin. A presigned URL's path is already
        // `/<bucket>/<key>`, so it is signed for this listener as for the store's own port;
        // the store checks each request's signature and answers CORS itself, so none of the
        // API's authentication, limits or CORS rules apply here.
        paths = paths.at(
            format!("/{EMBEDDED_BUCKET}/*key"),
            poem::endpoint::make(move |req: poem::Request| {
                let store = store.clone();
                async move {
                    let req: http::Request<_> = req.into();
                    // A task of its own: s3s's futures are deep, and this way they are
                    // polled from a fresh stack rather than under the middleware's.
                    let answer =
                        tokio::spawn(
                            async move { store.answer(req.map(s3s::Body::http_body)).await },
                        )
                        .await;
                    match answer {
                        Ok(answer) => poem::Response::from(answer.map(|body| {
                            http_body_util::BodyExt::map_err(body, std::io::Error::other)
                        })),
                        Err(err) => {
                            tracing::error!(error = %err, "the embedded store's answer was lost");
                            poem::Response::from(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                        }
                    }
                }
            }),
        );
    }
    paths
        .nest("/", answered)
        .boxed()
        .around(api::reach)
        .data(api::Reach::from_config(config))
        .around(telemetry::log_request)
        .around(api::security_headers)
        .around(api::routes::found_route)
        .around(api::tus_protocol)
}

/// The listener's connections, with TCP_NODELAY: a response's body (an object the embedded
/// store serves here, say) must not wait behind its headers for the client's delayed ACK.
struct NoDelay(poem::listener::TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(
        Self::Io,
        poem::web::LocalAddr,
        poem::web::RemoteAddr,
        poem::http::uri::Scheme,
    )> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        if let Err(err) = io.set_nodelay(true) {
            tracing::debug!(error = %err, "connection without TCP_NODELAY");
        }
        Ok((io, local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route table names the embedded store's path without reaching into storage.
    #[test]
    fn the_store_route_is_the_embedded_bucket() {
        assert_eq!(
            api::routes::STORE_TEMPLATE,
            format!("/{EMBEDDED_BUCKET}/{{key}}")
        );
    }
}
