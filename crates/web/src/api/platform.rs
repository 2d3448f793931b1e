//! Platform routes: health, readiness and the OpenAPI document. They answer on any host and
//! are never rate-limited.

use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError as _, get, web};
use plinth_domain::Error;
use serde::Serialize;

use super::respond::JSON;
use crate::problem::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok`, `ready` or `unavailable`.
    #[schema(example = "ok")]
    pub status: &'static str,
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

/// Readiness: every configured dependency answers; else 503 naming the one that does not.
#[utoipa::path(
    tag = "platform",
    operation_id = "readyz",
    responses(
        (status = 200, body = Status),
        (status = 503, description = "A dependency does not answer; `detail` names it", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if let Some(db) = &state.database
        && let Err(e) = db.ping().await
    {
        let dependency = match &e {
            Error::Unavailable { dependency, .. } => *dependency,
            _ => "database",
        };
        tracing::warn!(error = %e, dependency, "not ready");
        let error = ApiError::Domain(Error::Unavailable { dependency, source: None });
        let mut problem = error.problem();
        problem.detail = format!("Not ready: the {dependency} does not answer.");
        return HttpResponse::build(error.status_code())
            .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::RETRY_AFTER, "1"))
            .body(serde_json::to_vec(&problem).unwrap_or_default());
    }
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, JSON)).body(r#"{"status":"ready"}"#)
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
