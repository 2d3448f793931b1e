//! `/v1/events`: the tenant's events, newest first, exactly as webhooks receive them, for a
//! consumer to replay what it missed; owners and admins, or a key with `webhooks:read`.

use actix_web::{HttpRequest, HttpResponse, get, web};
use plinth_domain::page::Page;
use plinth_domain::ports::{EventQuery, StoredEvent};
use plinth_domain::usecases::{EventDetail, event_query};
use serde::Deserialize;

use super::extract::{Auth, PageQuery, Paging, resource_id};
use super::respond;
use crate::problem::ApiError;
use crate::state::AppState;

/// The filters of the events list, as the OpenAPI document declares them (`filters` parses
/// them).
#[derive(Debug, utoipa::IntoParams)]
#[allow(dead_code, reason = "declared for the document; `filters` reads the query string")]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events of this type (422 for one that is not an event type).
    #[param(rename = "type", value_type = Option<plinth_domain::events::EventKind>)]
    pub kind: Option<String>,
    /// Only events that happened at or after this time (RFC 3339; 422 when it is not one).
    #[param(format = DateTime, example = "2025-01-31T09:30:00Z")]
    pub since: Option<String>,
}

/// The filters of `query`: 400 `bad_request` when the query string is malformed, 422 naming
/// `type` or `since` when one of them is not what it must be.
fn filters(query: &str) -> Result<EventQuery, ApiError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        kind: Option<String>,
        since: Option<String>,
    }
    let raw = web::Query::<Raw>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::Malformed("The query string is malformed.".into()))?;
    Ok(event_query(raw.kind.as_deref(), raw.since.as_deref())?)
}

/// The tenant's events, newest first: each the envelope `{id, type, created_at, tenant_id,
/// data}` exactly as its webhooks receive it, kept for PLINTH_RETENTION_DAYS. To catch up after
/// missing deliveries, page with `since` set to the time of the last event handled, and skip
/// the ids already handled.
#[utoipa::path(
    tag = "events",
    operation_id = "listEvents",
    security(("bearer" = [])),
    params(EventParams, PageQuery),
    responses((status = 200, body = Page<StoredEvent>, example = json!({
        "items": [{
            "id": "01939b6e-5c3a-7d10-9f4e-2b8f3c1a0d55",
            "type": "user.created",
            "created_at": "2025-01-31T09:30:00.123456Z",
            "tenant_id": "01939b6e-1f00-7a22-8c3d-4e5f60718293",
            "data": {"id": "01939b6e-5c3a-7d10-9f4e-2b8f3c1a0d56", "email": "grace@acme.test", "role": "member", "email_verified": false}
        }],
        "next_cursor": null
    })))
)]
#[get("/events")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let query = filters(req.query_string())?;
    let page = state.plinth.list_events(&who.0, &query, &page.0).await?;
    respond::get(&req, &page)
}

/// One of the tenant's events, `{event, deliveries}`: its envelope exactly as delivered, and
/// its deliveries (one per webhook subscribed to its type when it happened), newest first.
#[utoipa::path(
    tag = "events",
    operation_id = "getEvent",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The event's id")),
    responses((status = 200, body = EventDetail, example = json!({
        "event": {
            "id": "01939b6e-5c3a-7d10-9f4e-2b8f3c1a0d55",
            "type": "api_key.revoked",
            "created_at": "2025-01-31T09:30:00.123456Z",
            "tenant_id": "01939b6e-1f00-7a22-8c3d-4e5f60718293",
            "data": {
                "id": "01939b6e-3e21-7b00-a1b2-c3d4e5f60718", "name": "CI",
                "prefix": "plk_01939b6e3e217b00a1b2c3d4e5f60718", "scopes": ["projects:read"], "role": "admin",
                "created_by": "01939b6e-2a10-7c00-b1b2-c3d4e5f60718", "rate_limit_per_minute": null,
                "created_at": "2025-01-30T08:00:00Z", "last_used_at": null, "expires_at": null
            }
        },
        "deliveries": [{
            "webhook_id": "01939b6e-4b00-7e11-9a2b-3c4d5e6f7081",
            "id": "01939b6e-5c3a-7d10-9f4e-2b8f3c1a0d57",
            "event_id": "01939b6e-5c3a-7d10-9f4e-2b8f3c1a0d55",
            "event": "api_key.revoked",
            "state": "delivered",
            "attempts": 1,
            "last_error": null,
            "created_at": "2025-01-31T09:30:00.123456Z"
        }]
    })))
)]
#[get("/events/{id}")]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let detail = state.plinth.get_event(&who.0, resource_id(&id)?).await?;
    respond::get(&req, &detail)
}
