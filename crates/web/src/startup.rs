//! Building and running the HTTP server: `Application::build(config)` binds (port 0 in tests)
//! and exposes `port()`; `run_until_stopped()` serves.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use utoipa_actix_web::AppExt as _;

use crate::api::fallback::{RouteTable, unmatched};
use crate::api::platform::OpenApiJson;
use crate::api::{configure, extract, openapi};
use crate::composition::{self, Composed, DemoLogin, StartupError};
use crate::config::Config;
use crate::middleware::request_id::request_id;
use crate::state::AppState;
use crate::worker::WorkerHandle;

/// How often the in-process limiter's idle keys are pruned.
const LIMITER_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A bound, ready-to-run server.
pub struct Application {
    server: Server,
    port: u16,
    demo: Option<DemoLogin>,
    worker: Option<WorkerHandle>,
}

/// The complete OpenAPI document of every registered route.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new().into_utoipa_app().openapi(openapi::base()).configure(configure).split_for_parts();
    openapi::finish(doc)
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Composes the adapters, binds `config.listen` and prepares the server.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let Composed { plinth, local_limiter, demo, database, redis: _ } = composition::compose(&config).await?;
        let worker = config.worker.then(|| WorkerHandle::spawn(plinth.clone(), config.worker_settings));
        let doc = openapi_document();
        let routes = Arc::new(RouteTable::from_openapi(&doc));
        let doc_json = OpenApiJson(bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()));
        let state = web::Data::new(AppState {
            plinth,
            base_domain: config.base_domain.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            routes: routes.clone(),
            database,
        });
        let listener = TcpListener::bind(config.listen).map_err(StartupError::Listen)?;
        let port = listener.local_addr().map_err(StartupError::Listen)?.port();

        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIMITER_PRUNE_EVERY);
            loop {
                tick.tick().await;
                local_limiter.retain_recent();
            }
        });

        let routes = web::Data::new(routes);
        let doc_json = web::Data::new(doc_json);
        let server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .app_data(state.clone())
                .app_data(routes.clone())
                .app_data(doc_json.clone())
                .app_data(web::PayloadConfig::new(extract::BODY_LIMIT))
                .configure(configure)
                .into_app()
                .default_service(web::to(unmatched))
                .wrap(from_fn(request_id))
        })
        .shutdown_timeout(config.shutdown_grace.as_secs())
        .listen(listener)
        .map_err(StartupError::Listen)?
        .run();
        Ok(Self { server, port, demo, worker })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The demo login, in embedded mode.
    pub fn demo(&self) -> Option<&DemoLogin> {
        self.demo.as_ref()
    }

    /// Serves until the server is stopped (SIGINT, SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(worker) = self.worker {
            worker.stop().await;
        }
        served
    }
}
