//! `/v1/webhooks`: owners and admins subscribe URLs to events and watch their deliveries.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use plinth_domain::entities::{Delivery, Webhook};
use plinth_domain::ids::WebhookId;
use plinth_domain::page::Page;
use serde::{Deserialize, Serialize};

use super::extract::{Auth, IdempotencyKeyHeader, JsonBody, PageQuery, Paging, resource_id};
use super::idempotency;
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;
use plinth_domain::usecases::{CreatedWebhook, Idempotency};

/// A webhook to register.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateWebhookRequest {
    /// An absolute http(s) URL of at most 2048 characters, without credentials, whose host
    /// resolves only to public addresses (and to allowed ones, when PLINTH_WEBHOOK_ALLOWED_CIDRS
    /// is set).
    #[schema(schema_with = schemas::webhook_url)]
    pub url: String,
    /// The events to receive: at least one.
    #[schema(
        value_type = Vec<plinth_domain::events::EventKind>,
        min_items = 1,
        example = json!(["project.created", "project.deleted"])
    )]
    pub events: Vec<String>,
}

/// A new webhook, with its secret: shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhookResponse {
    /// The webhook's id.
    pub id: WebhookId,
    /// Where deliveries go.
    pub url: String,
    /// The events it receives.
    pub events: Vec<plinth_domain::events::EventKind>,
    /// The signing secret; a replay of this request (same Idempotency-Key) leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
}

/// Registers a webhook; the response is the only time its secret is shown.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "createWebhook",
    security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = CreateWebhookRequest,
    responses((status = 201, body = CreatedWebhookResponse))
)]
#[post("/webhooks")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody { value, fingerprint } = body;
    let answer = |created: &CreatedWebhook, secret: bool| {
        let w = &created.webhook;
        CreatedWebhookResponse {
            id: w.id,
            url: w.url.clone(),
            events: w.events.clone(),
            secret: secret.then(|| created.secret.clone()),
            created_at: w.created_at,
        }
    };
    // A replay leaves the secret out: it is shown once, and never stored in the clear.
    let kept = |created: &CreatedWebhook| idempotency::stored(StatusCode::CREATED, &answer(created, false), None);
    let run = async |key: Option<Idempotency<'_, CreatedWebhook>>| {
        state.plinth.create_webhook(&who.0, &value.url, &value.events, key).await
    };
    let first = |created: CreatedWebhook| {
        Ok(idempotency::to_response(&idempotency::stored(StatusCode::CREATED, &answer(&created, true), None)?, false))
    };
    idempotency::guarded(&req, fingerprint, &kept, run, first).await
}

/// The tenant's webhooks, newest first, without secrets.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "listWebhooks",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Webhook>))
)]
#[get("/webhooks")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let page = state.plinth.list_webhooks(&who.0, &page.0).await?;
    respond::get(&req, &page)
}

/// Deletes a webhook and its deliveries.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "deleteWebhook",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/webhooks/{id}")]
pub async fn remove(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.delete_webhook(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A webhook's deliveries, newest first, with their attempts.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "listDeliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id"), PageQuery),
    responses((status = 200, body = Page<Delivery>))
)]
#[get("/webhooks/{id}/deliveries")]
pub async fn deliveries(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let page = state.plinth.list_deliveries(&who.0, resource_id(&id)?, &page.0).await?;
    respond::get(&req, &page)
}
