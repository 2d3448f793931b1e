//! Building and running the HTTP server: `Application::build(config)` binds (port 0 in tests)
//! and exposes `port()`; `run_until_stopped()` serves until a graceful shutdown (SIGTERM,
//! SIGINT, or [`Application::shutdown_handle`]) has run its course; see [`crate::shutdown`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};
use plinth_domain::clock::SystemClock;
use plinth_domain::ports::Clock;
use plinth_domain::usecases::{Plinth, Ports};
use utoipa_actix_web::AppExt as _;

use crate::api::docs::DocsPage;
use crate::api::fallback::{RouteTable, unmatched};
use crate::api::platform::{OpenApiJson, Probes};
use crate::api::{configure, extract, openapi};
use crate::composition::{self, Composed, DemoLogin, StartupError};
use crate::config::Config;
use crate::middleware::metrics::track;
use crate::middleware::request_id::request_id;
use crate::middleware::server_timing::server_timing;
use crate::shutdown::{self, Phase, ShutdownHandle, ShutdownSignal};
use crate::state::AppState;
use crate::telemetry::metrics::{self as telemetry_metrics, MetricsEndpoint};
use crate::worker::WorkerHandle;

/// How often the API keys' last uses are written (one write per key used since the last).
const KEY_USAGE_EVERY: Duration = Duration::from_secs(5);

/// How often the in-process limiter's idle keys are pruned.
const LIMITER_PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often cache invalidations that failed while Redis was down are retried.
const RETRY_INVALIDATIONS_EVERY: Duration = Duration::from_secs(1);

/// How long a new connection may take to send its first request's head (actix's default,
/// set here on purpose): actix answers 408 and closes the connection after it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection may take to shut down once its response is written
/// (actix's default, set on purpose): the client gets this long to read the rest.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A bound, ready-to-run server.
pub struct Application {
    server: Server,
    port: u16,
    demo: Option<DemoLogin>,
    plinth: Arc<Plinth>,
    worker: Option<WorkerHandle>,
    shutdown: ShutdownHandle,
    drain: Duration,
    grace: Duration,
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
        Self::build_with(config, Arc::new(SystemClock::new()), |_| {}).await
    }

    /// As [`Application::build`], on `clock`, letting `adapt` wrap or replace adapters once
    /// they are chosen (see [`composition::compose_with`]).
    pub async fn build_with(
        config: Config,
        clock: Arc<dyn Clock>,
        adapt: impl FnOnce(&mut Ports),
    ) -> Result<Self, StartupError> {
        // The recorder first: the adapters take their metric handles as they are made, and a
        // handle taken before the recorder is installed records nothing.
        let metrics = MetricsEndpoint::new(config.metrics_token.as_ref());
        let Composed { plinth, local_limiter, demo } = composition::compose_with(&config, clock, adapt).await?;
        let worker = config.worker.then(|| WorkerHandle::spawn(plinth.clone(), config.worker_settings));
        let (shutdown, signal) = shutdown::channel();
        let doc = openapi_document();
        let routes = Arc::new(RouteTable::from_openapi(&doc));
        let doc_json = OpenApiJson(bytes::Bytes::from(serde_json::to_vec(&doc).map_err(StartupError::OpenApi)?));
        let probes = Probes::for_dependencies(&plinth.dependencies());
        let state = web::Data::new(AppState {
            plinth: plinth.clone(),
            base_domain: config.base_domain.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            ipv6_prefix: config.ipv6_prefix,
            routes: routes.clone(),
            shutdown: signal.clone(),
            metrics: metrics.clone(),
            operators: plinth_domain::values::OperatorTokens::new(config.operator_token_hashes.clone()),
            probes,
        });
        let listener = TcpListener::bind(config.listen).map_err(StartupError::Listen)?;
        let port = listener.local_addr().map_err(StartupError::Listen)?.port();

        every(LIMITER_PRUNE_EVERY, signal.clone(), move || {
            local_limiter.retain_recent();
            std::future::ready(())
        });
        every(telemetry_metrics::UPKEEP_EVERY, signal.clone(), move || {
            metrics.upkeep();
            std::future::ready(())
        });
        let app = state.plinth.clone();
        every(KEY_USAGE_EVERY, signal.clone(), move || {
            let app = app.clone();
            async move { app.flush_key_usage().await }
        });
        let app = state.plinth.clone();
        every(plinth_postgres::REPLICA_CHECK_EVERY, signal.clone(), move || {
            let app = app.clone();
            async move { app.tend_dependencies().await }
        });
        let app = state.plinth.clone();
        every(RETRY_INVALIDATIONS_EVERY, signal, move || {
            let app = app.clone();
            async move { app.retry_failed_invalidations().await }
        });

        let routes = web::Data::new(routes);
        let doc_json = web::Data::new(doc_json);
        let docs_page = web::Data::new(DocsPage { enabled: config.docs });
        let body_timeout = extract::BodyTimeout(config.server.body_timeout);
        let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let timed = config.server_timing;
        let keep_alive = match config.server.keep_alive {
            Duration::ZERO => KeepAlive::Disabled,
            idle => KeepAlive::Timeout(idle),
        };
        let server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .app_data(state.clone())
                .app_data(routes.clone())
                .app_data(doc_json.clone())
                .app_data(docs_page.clone())
                .app_data(web::PayloadConfig::new(extract::BODY_LIMIT))
                .app_data(body_timeout)
                .configure(configure)
                .into_app()
                .default_service(web::to(unmatched))
                .wrap(Condition::new(timed, from_fn(server_timing)))
                .wrap(from_fn(request_id))
                .wrap(from_fn(track))
        })
        // Signals are ours (see `run_until_stopped`): actix would stop accepting at once.
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace.as_secs())
        // actix's limit is per worker thread (25,000 each by default): the setting is the
        // process's, shared out so that the workers together hold at most about that many.
        .workers(workers)
        .max_connections(config.server.max_connections.div_ceil(workers))
        .keep_alive(keep_alive)
        .client_request_timeout(HEAD_TIMEOUT)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .listen(listener)
        .map_err(StartupError::Listen)?
        .run();
        Ok(Self {
            server,
            port,
            demo,
            plinth,
            worker,
            shutdown,
            drain: config.shutdown_drain,
            grace: config.shutdown_grace,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The demo login, in embedded mode.
    pub fn demo(&self) -> Option<&DemoLogin> {
        self.demo.as_ref()
    }

    /// The use cases this server serves: an embedder (or a test) may drive the job worker's
    /// steps itself (`Plinth::work_one`) when `PLINTH_WORKER` is off.
    pub fn plinth(&self) -> Arc<Plinth> {
        self.plinth.clone()
    }

    /// Starts a graceful shutdown when triggered, as SIGTERM does (tests, embedders). A second
    /// trigger cuts the drain short.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until shut down by SIGTERM or SIGINT, or through [`Self::shutdown_handle`]:
    ///
    /// 1. draining: `/readyz` answers 503 at once while the API serves everything for
    ///    `PLINTH_SHUTDOWN_DRAIN_S` (a second signal ends the drain early);
    /// 2. stopping: the listener closes; in-flight requests and the worker's jobs in hand get
    ///    `PLINTH_SHUTDOWN_GRACE_S` to finish;
    /// 3. the pools close, and this returns `Ok(())`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self { server, worker, shutdown, plinth, drain, grace, .. } = self;
        let signals = listen_for_signals(shutdown.clone());
        let server_handle = server.handle();
        let mut server = std::pin::pin!(server);
        let signal = shutdown.signal();

        tokio::select! {
            served = &mut server => {
                // Stopped on its own (it only does on a fatal error): wind down all the same.
                signals.abort();
                wind_down(worker, grace).await;
                plinth.close_dependencies();
                return served;
            }
            () = signal.draining() => {}
        }
        telemetry_metrics::record_shutting_down();
        tracing::info!(
            drain_s = drain.as_secs(),
            grace_s = grace.as_secs(),
            "shutting down: draining (readiness fails, requests are still served)"
        );
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            () = signal.stopping() => tracing::info!("drain cut short"),
        }
        shutdown.advance(Phase::Stopping);
        tracing::info!("shutting down: the listener is closed; finishing in-flight requests and jobs");
        let (served, (), ()) = tokio::join!(&mut server, server_handle.stop(true), wind_down(worker, grace));
        signals.abort();
        plinth.close_dependencies();
        tracing::info!("shut down");
        served
    }
}

/// Stops the worker, letting it finish the jobs in hand for up to `grace`.
async fn wind_down(worker: Option<WorkerHandle>, grace: Duration) {
    if let Some(worker) = worker
        && tokio::time::timeout(grace, worker.stop()).await.is_err()
    {
        tracing::warn!(grace_s = grace.as_secs(), "the worker did not finish its jobs within the grace period");
    }
}

/// Triggers `shutdown` on every SIGTERM and SIGINT: the first starts draining, the next ends
/// the drain. The handlers are installed before this returns (so before the server serves a
/// request): a signal that arrives once plinth answers is never met by the default action.
fn listen_for_signals(shutdown: ShutdownHandle) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "can't listen for SIGTERM and SIGINT; shut down through the handle only");
            return tokio::spawn(async {});
        }
    };
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = int.recv() => "SIGINT",
                else => return,
            };
            let phase = shutdown.trigger();
            tracing::info!(signal = name, ?phase, "shutdown requested");
        }
    })
}

/// Runs `task` every `period` until the shutdown reaches [`Phase::Stopping`].
fn every<F, Fut>(period: Duration, signal: ShutdownSignal, mut task: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => task().await,
                () = signal.stopping() => return,
            }
        }
    });
}
