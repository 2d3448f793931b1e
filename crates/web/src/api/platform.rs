//! Platform routes: health, readiness, metrics and the OpenAPI document. They answer on any
//! host and are never rate-limited.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, get, web};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use plinth_domain::Error;
use plinth_domain::ports::QueueStats;
use serde::Serialize;

use super::respond::JSON;
use crate::problem::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;
use crate::telemetry::metrics::{record_check, record_queue};

/// How long one readiness check (or a scrape-time gauge query) may take: a dependency slower
/// than this counts as down, so `/readyz` answers well within a load balancer's timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The body of `/healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The result of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// It answered.
    Ok,
    /// It answered with an error, or could not be reached.
    Unavailable,
    /// It did not answer within the check's timeout (1 s).
    Timeout,
    /// The process is shutting down (the `shutdown` check only).
    Draining,
}

/// The body of `/readyz` when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Each configured dependency (`database`, `redis`) and its result; empty in embedded mode.
    #[schema(example = json!({"database": "ok", "redis": "ok"}))]
    pub checks: BTreeMap<&'static str, Check>,
}

/// The body of `/readyz` when not ready: a problem document (`service_unavailable`) whose
/// `detail` names what failed, with every check's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotReady {
    /// The problem.
    #[serde(flatten)]
    pub problem: Problem,
    /// Each check and its result: the dependencies (`database`, `redis`), or `shutdown` while
    /// the process drains before it stops.
    #[schema(example = json!({"database": "unavailable", "redis": "ok"}))]
    pub checks: BTreeMap<&'static str, Check>,
}

/// At most one run of a probe in flight: callers that arrive while one runs wait for its
/// result instead of starting their own, so a hammered `/readyz` or `/metrics` costs each
/// dependency one query at a time, however many requests ask.
pub struct SingleFlight<T: Clone> {
    flight: Mutex<Option<Shared<BoxFuture<'static, T>>>>,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self { flight: Mutex::new(None) }
    }
}

impl<T: Clone> std::fmt::Debug for SingleFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// The result of the run in flight, or of a new run of `start` when none is.
    pub async fn run<F>(&self, start: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let flight = {
            let mut slot = self.flight.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                // Still running: join it. (A finished one is never reused: each request that
                // comes after a probe ended gets a fresh answer.)
                Some(running) if running.peek().is_none() => running.clone(),
                _ => {
                    let new = start().boxed().shared();
                    *slot = Some(new.clone());
                    new
                }
            }
        };
        flight.await
    }
}

/// The probes `/readyz` and `/metrics` share among concurrent requests: one per configured
/// dependency, and the queue's numbers.
#[derive(Debug, Default)]
pub struct Probes {
    pings: Vec<(&'static str, SingleFlight<(&'static str, Check)>)>,
    queue: SingleFlight<Option<QueueStats>>,
}

impl Probes {
    /// A probe for each of `dependencies` (the names `Plinth::dependencies` gives).
    pub fn for_dependencies(dependencies: &[&'static str]) -> Self {
        Self {
            pings: dependencies.iter().map(|d| (*d, SingleFlight::default())).collect(),
            queue: SingleFlight::default(),
        }
    }
}

/// The OpenAPI document, rendered once at start-up.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub bytes::Bytes);

/// Liveness: touches nothing.
#[utoipa::path(tag = "platform", operation_id = "healthz", responses((status = 200, body = Status)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, JSON)).body(r#"{"status":"ok"}"#)
}

/// Readiness: checks every configured dependency at once, each with a 1 s timeout (concurrent
/// requests share the checks in flight: one ping per dependency at a time). Answers 503
/// naming the ones that fail, and 503 from the moment graceful shutdown begins (so a load
/// balancer moves traffic away while the API still serves it).
#[utoipa::path(
    tag = "platform",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Every configured dependency answers", body = Ready),
        (status = 503, description = "A dependency does not answer (`detail` names it, `checks` says how each fared), or the process is shutting down (`checks.shutdown` is `draining`); carries Retry-After", body = NotReady, content_type = "application/problem+json")
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_shutting_down() {
        let checks = BTreeMap::from([("shutdown", Check::Draining)]);
        return not_ready("Not ready: shutting down.".into(), checks);
    }
    let pings = state.probes.pings.iter().map(|(dependency, flight)| {
        let (dependency, plinth) = (*dependency, state.plinth.clone());
        flight.run(move || async move { check(dependency, plinth.ping(dependency)).await })
    });
    let checks: BTreeMap<&'static str, Check> = futures_util::future::join_all(pings).await.into_iter().collect();
    let failing: Vec<&str> = checks.iter().filter(|(_, c)| **c != Check::Ok).map(|(name, _)| *name).collect();
    if failing.is_empty() {
        let body = serde_json::to_vec(&Ready { status: "ready", checks }).unwrap_or_default();
        return HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, JSON))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body);
    }
    let verb = if failing.len() == 1 { "does" } else { "do" };
    not_ready(format!("Not ready: the {} {verb} not answer.", failing.join(" and ")), checks)
}

/// Runs one readiness check within [`CHECK_TIMEOUT`].
async fn check(dependency: &'static str, ping: impl Future<Output = Result<(), Error>>) -> (&'static str, Check) {
    let result = match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => Check::Ok,
        Ok(Err(e)) => {
            let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
            tracing::warn!(dependency, error = %e, cause = %cause, "readiness check failed");
            Check::Unavailable
        }
        Err(_) => {
            tracing::warn!(dependency, timeout_ms = CHECK_TIMEOUT.as_millis(), "readiness check timed out");
            Check::Timeout
        }
    };
    record_check(dependency, result == Check::Ok);
    (dependency, result)
}

/// The 503 answer of `/readyz`.
fn not_ready(detail: String, checks: BTreeMap<&'static str, Check>) -> HttpResponse {
    let error = ApiError::Domain(Error::Unavailable { dependency: "dependency", source: None });
    let mut problem = error.problem();
    problem.detail = detail;
    let body = serde_json::to_vec(&NotReady { problem, checks }).unwrap_or_default();
    HttpResponse::build(error.status_code())
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, "1"))
        .body(body)
}

/// Prometheus metrics in the text exposition format. When `PLINTH_METRICS_TOKEN` is set, it
/// requires `Authorization: Bearer <that token>`; when it is not, it answers only clients on
/// this machine (a loopback peer, with no forwarding header). Gauges of the database pool and the job
/// queue are refreshed at each scrape (the queue's from counters, one query shared by
/// concurrent scrapes).
#[utoipa::path(
    tag = "platform",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "PLINTH_METRICS_TOKEN is set and the bearer token is missing (`unauthorized`) or wrong (`invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "PLINTH_METRICS_TOKEN is not set and the client is not on this machine (`forbidden`)", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/metrics")]
pub async fn scrape(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let peer = req.peer_addr().map(|a| crate::middleware::client_ip::canonical(a.ip()));
    state.metrics.authorize(peer, req.headers())?;
    state.plinth.record_dependency_gauges();
    let plinth = state.plinth.clone();
    let stats = state
        .probes
        .queue
        .run(|| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, plinth.queue_stats()).await {
                Ok(Ok(stats)) => Some(stats),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "job queue stats unavailable for this scrape");
                    None
                }
                Err(_) => {
                    tracing::debug!("job queue stats timed out for this scrape");
                    None
                }
            }
        })
        .await;
    if let Some(stats) = stats {
        record_queue(stats);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(state.metrics.render()))
}

/// This document.
#[utoipa::path(
    tag = "platform",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
pub async fn openapi(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, JSON))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(doc.0.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_probes_share_one_run_and_a_later_one_runs_again() {
        let flight = SingleFlight::<u32>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<u32>();
        let gate = gate.shared();
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (runs, gate) = (runs.clone(), gate.clone());
                flight.run(move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.await.unwrap_or(0)
                })
            })
            .collect();
        let mut all = std::pin::pin!(futures_util::future::join_all(callers));
        // One poll: every caller has arrived, and the probe is held open by the gate.
        assert!(futures_util::future::poll_immediate(all.as_mut()).await.is_none());
        assert!(release.send(7).is_ok());
        assert_eq!(all.await, vec![7; 50], "every caller gets the shared answer");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one probe for fifty concurrent callers");

        assert_eq!(flight.run(|| async { 8 }).await, 8, "a probe after the last one ended runs anew");
    }
}
