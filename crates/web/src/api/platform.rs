//! Platform routes: health, readiness and the OpenAPI document. They answer on any host and
//! are never rate-limited.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use super::respond::JSON;

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

/// Readiness: every configured dependency answers.
#[utoipa::path(tag = "platform", operation_id = "readyz", responses((status = 200, body = Status)))]
#[get("/readyz")]
pub async fn readyz() -> HttpResponse {
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
