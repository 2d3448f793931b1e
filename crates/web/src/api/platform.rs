//! Platform routes: health, readiness, metrics and the OpenAPI document. They answer on any
//! host and are never rate-limited.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, get, web};
use plinth_domain::Error;
use serde::Serialize;

use super::respond::JSON;
use crate::problem::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;
use crate::telemetry::metrics::{record_check, record_pool, record_queue};

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

/// The OpenAPI document, rendered once at start-up.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub bytes::Bytes);

/// Liveness: touches nothing.
#[utoipa::path(tag = "platform", operation_id = "healthz", responses((status = 200, body = Status)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, JSON)).body(r#"{"status":"ok"}"#)
}

/// Readiness: checks every configured dependency at once, each with a 1 s timeout. Answers 503
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
    let database = async {
        match &state.database {
            Some(db) => Some(check("database", db.ping()).await),
            None => None,
        }
    };
    let redis = async {
        match &state.redis {
            Some(conn) => Some(check("redis", conn.ping()).await),
            None => None,
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let checks: BTreeMap<&'static str, Check> = [database, redis].into_iter().flatten().collect();
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
/// requires `Authorization: Bearer <that token>`. Gauges of the database pool and the job
/// queue are refreshed at each scrape.
#[utoipa::path(
    tag = "platform",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "PLINTH_METRICS_TOKEN is set and the bearer token is missing (`unauthorized`) or wrong (`invalid_token`)", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/metrics")]
pub async fn scrape(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.metrics.authorize(req.headers())?;
    if let Some(db) = &state.database {
        record_pool(db.status());
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.plinth.ports().jobs.stats()).await {
        Ok(Ok(stats)) => record_queue(stats),
        Ok(Err(e)) => tracing::debug!(error = %e, "job queue stats unavailable for this scrape"),
        Err(_) => tracing::debug!("job queue stats timed out for this scrape"),
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
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, JSON)).body(doc.0.clone())
}
