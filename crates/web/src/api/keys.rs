//! `/v1/api-keys` and `/v1/audit-log`: the tenant's API keys (people only) and its audit log.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use plinth_domain::Error;
use plinth_domain::audit::Verification;
use plinth_domain::entities::ApiKey;
use plinth_domain::page::Page;
use plinth_domain::ports::AuditQuery;
use plinth_domain::usecases::{AuditView, NewApiKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::extract::{Auth, JsonBody, PageQuery, Paging, resource_id};
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;

/// A key to create.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    /// What its owners call it: 1–255 characters.
    #[schema(schema_with = schemas::display_name)]
    pub name: String,
    /// The routes it may call: at least one scope.
    #[schema(value_type = Vec<plinth_domain::values::Scope>, min_items = 1, example = json!(["projects:read"]))]
    pub scopes: Vec<String>,
    /// When it stops working (RFC 3339, in the future); never when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z")]
    pub expires_at: Option<OffsetDateTime>,
    /// Its own quota, 1–1000000 requests per minute, counted on top of its tenant's.
    #[schema(minimum = 1, maximum = 1_000_000, example = 600)]
    pub rate_limit_per_minute: Option<u32>,
}

/// A new key, with its secret: shown this once, never stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKeyResponse {
    /// The key as the list shows it.
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The whole key, `plk_<id>_<secret and check>`: send it as `Authorization: Bearer …` on
    /// the tenant's host. Shown in this answer only.
    #[schema(example = "plk_0193a7c45e2f7b1d8c3a6f4e2d1b9a07_EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPA")]
    pub key: String,
}

/// The tenant's keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Newest first; revoked keys are not listed.
    pub items: Vec<ApiKey>,
}

/// Creates an API key with the caller's role as its ceiling; the answer is the only time its
/// secret is shown (and takes no Idempotency-Key, whose replay would keep it).
#[utoipa::path(
    tag = "api-keys",
    operation_id = "createApiKey",
    security(("bearer" = [])),
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyResponse))
)]
#[post("/api-keys")]
pub async fn create(
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let v = body.value;
    let input = NewApiKey {
        name: v.name,
        scopes: v.scopes,
        expires_at: v.expires_at,
        rate_limit_per_minute: v.rate_limit_per_minute,
    };
    let created = state.plinth.create_api_key(&who.0, &input).await?;
    let mut res =
        respond::json(StatusCode::CREATED, &CreatedKeyResponse { api_key: created.key, key: created.secret })?;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The tenant's live keys, newest first: never a secret.
#[utoipa::path(tag = "api-keys", operation_id = "listApiKeys", security(("bearer" = [])), responses((status = 200, body = KeyList)))]
#[get("/api-keys")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    let items = state.plinth.list_api_keys(&who.0).await?;
    respond::get(&req, &KeyList { items })
}

/// Revokes a key: it stops working on every instance within seconds.
#[utoipa::path(
    tag = "api-keys",
    operation_id = "revokeApiKey",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The key's id")),
    responses((status = 204, description = "Revoked"))
)]
#[delete("/api-keys/{id}")]
pub async fn revoke(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.revoke_api_key(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The filters of the audit log, as the OpenAPI document declares them (`audit_query` parses
/// them).
#[derive(Debug, utoipa::IntoParams)]
#[allow(dead_code, reason = "declared for the document; `audit_query` reads the query string")]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this user's or key's entries (its id).
    #[param(format = Uuid)]
    pub actor: Option<String>,
    /// Only this action, such as `project.created` (1–100 characters, no control characters).
    #[param(min_length = 1, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,100}$")]
    pub action: Option<String>,
    /// Only changes to this id (1–100 characters, no control characters).
    #[param(min_length = 1, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,100}$")]
    pub target: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[param(format = DateTime, example = "2026-12-04T09:30:00Z")]
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[param(format = DateTime, example = "2026-12-04T09:30:00Z")]
    pub until: Option<String>,
}

/// The filters of `query`; 400 `bad_request` for one that is malformed.
fn audit_query(query: &str) -> Result<AuditQuery, ApiError> {
    #[derive(Deserialize)]
    struct Raw {
        actor: Option<String>,
        action: Option<String>,
        target: Option<String>,
        since: Option<String>,
        until: Option<String>,
    }
    let raw = web::Query::<Raw>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::Malformed("The query string is malformed.".into()))?;
    // Any RFC 3339 time whose UTC form has a four-digit year: what the driver can send (one
    // at 9999-12-31 in a zone behind UTC is in the year 10000 there, and was a panic).
    let time = |v: Option<String>, what: &'static str| {
        v.map(|t| {
            OffsetDateTime::parse(&t, &Rfc3339)
                .ok()
                .filter(|t| t.checked_to_offset(time::UtcOffset::UTC).is_some())
                .ok_or(Error::BadRequest(what))
        })
        .transpose()
    };
    let short = |v: Option<String>, what: &'static str| match v {
        Some(s) if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) => {
            Err(Error::BadRequest(what))
        }
        v => Ok(v),
    };
    Ok(AuditQuery {
        actor: raw
            .actor
            .map(|a| uuid::Uuid::try_parse(&a).map_err(|_| Error::BadRequest("actor must be a user's or key's id")))
            .transpose()?,
        action: short(raw.action, "action must be 1 to 100 characters, none of them a control character")?,
        target: short(raw.target, "target must be 1 to 100 characters, none of them a control character")?,
        since: time(raw.since, "since must be an RFC 3339 time")?,
        until: time(raw.until, "until must be an RFC 3339 time")?,
    })
}

/// The tenant's audit log, newest first: who did what, when, from where.
#[utoipa::path(
    tag = "audit",
    operation_id = "listAuditLog",
    security(("bearer" = [])),
    params(AuditParams, PageQuery),
    responses((status = 200, body = Page<AuditView>))
)]
#[get("/audit-log")]
pub async fn audit_log(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let query = audit_query(req.query_string())?;
    let page = state.plinth.audit_log(&who.0, &query, &page.0).await?;
    respond::get(&req, &page)
}

/// Recomputes the tenant's audit chain and reports the first entry that was edited, deleted or
/// reordered, if any.
#[utoipa::path(
    tag = "audit",
    operation_id = "verifyAuditLog",
    security(("bearer" = [])),
    responses((status = 200, body = Verification))
)]
#[get("/audit-log/verify")]
pub async fn verify(state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    let report = state.plinth.verify_audit_log(&who.0).await?;
    let mut res = respond::json(StatusCode::OK, &report)?;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
