//! `/v1/webhooks`: owners and admins subscribe URLs to events, watch their deliveries, and run
//! them: change, disable and enable an endpoint, rotate its secret, test it, and send failed
//! deliveries again.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use plinth_domain::entities::{Delivery, Webhook};
use plinth_domain::ids::{DeliveryId, WebhookId};
use plinth_domain::page::Page;
use plinth_domain::usecases::WebhookPatch;
use serde::{Deserialize, Deserializer, Serialize};

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
    #[schema(example = "https://hooks.example.com/plinth")]
    pub url: String,
    /// The events it receives.
    pub events: Vec<plinth_domain::events::EventKind>,
    /// The signing secret; a replay of this request (same Idempotency-Key) leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXA")]
    pub secret: Option<String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z")]
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

/// A whole number written either way JSON Schema's `integer` admits (`14` or `14.0`).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "only a whole float from 0 to 9e15 (below 2^53) is cast, which converts exactly"
)]
fn whole<E: serde::de::Error>(n: &serde_json::Number) -> Result<u64, E> {
    n.as_u64()
        // A whole f64 below 2^53 prints exactly with no decimals: parsing that text converts it
        // without a cast that could truncate.
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..9.0e15).contains(f))
                .and_then(|f| format!("{f:.0}").parse().ok())
        })
        .ok_or_else(|| E::custom("must be a whole number, 0 or more"))
}

/// An optional whole number (see [`whole`]).
fn optional_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.as_ref().map(whole).transpose()
}

/// A present field's whole number, `null` included, as `Some` (an absent one is `None` by
/// default); past `u32` it is out of any range the use case allows, so it saturates.
fn present_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    let n = optional_whole(d)?;
    Ok(Some(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX))))
}

/// A change to a webhook: every field is optional, and what is left out stays.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    /// A new URL, checked like a new webhook's.
    #[schema(schema_with = schemas::webhook_url)]
    pub url: Option<String>,
    /// New events to receive: at least one.
    #[schema(value_type = Option<Vec<plinth_domain::events::EventKind>>, min_items = 1, example = json!(["project.created"]))]
    pub events: Option<Vec<String>>,
    /// `false` disables it (its pending deliveries are skipped, no new ones are made); `true`
    /// enables it again (its failure record starts over; send what it missed with `recover`).
    #[schema(example = true)]
    pub enabled: Option<bool>,
    /// At most this many deliveries a second (1–1000); `null` for no limit.
    #[serde(default, deserialize_with = "present_whole")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000, nullable, example = 10)]
    pub rate_limit_per_second: Option<Option<u32>>,
}

/// One of the tenant's webhooks: its settings, state and health.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "getWebhook",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    responses((status = 200, body = Webhook))
)]
#[get("/webhooks/{id}")]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let webhook = state.plinth.get_webhook(&who.0, resource_id(&id)?).await?;
    respond::get(&req, &webhook)
}

/// Changes a webhook's URL, events, state or pace.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "updateWebhook",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    request_body = UpdateWebhookRequest,
    responses((status = 200, body = Webhook))
)]
#[patch("/webhooks/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    body: JsonBody<UpdateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let UpdateWebhookRequest { url, events, enabled, rate_limit_per_second } = body.value;
    let patch = WebhookPatch { url, events, enabled, rate_limit_per_second };
    let webhook = state.plinth.update_webhook(&who.0, resource_id(&id)?, &patch).await?;
    respond::json(StatusCode::OK, &webhook)
}

/// How long the old secret keeps signing.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// Seconds during which deliveries are signed with both the new and the old secret
    /// (default 86400, at most 604800; 0 ends the old one now).
    #[serde(default, deserialize_with = "optional_whole")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 604800, example = 86400)]
    pub overlap_s: Option<u64>,
}

/// A webhook's new secret: shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecretResponse {
    /// The webhook's id.
    pub id: WebhookId,
    /// The new signing secret.
    #[schema(example = "whsec_EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXA")]
    pub secret: String,
    /// Until when deliveries are also signed with the old secret; absent when they aren't.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z")]
    pub rotation_ends_at: Option<time::OffsetDateTime>,
}

/// Gives a webhook a new secret; during the overlap every delivery carries a signature under
/// each secret (`Plinth-Signature: t=…,v1=<new>,v1=<old>`), after it only the new one.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "rotateWebhookSecret",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    request_body = RotateSecretRequest,
    responses((status = 200, body = RotatedSecretResponse))
)]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    body: JsonBody<RotateSecretRequest>,
) -> Result<HttpResponse, ApiError> {
    let overlap = body.value.overlap_s.map(Duration::from_secs);
    let rotated = state.plinth.rotate_webhook_secret(&who.0, resource_id(&id)?, overlap).await?;
    let answer = RotatedSecretResponse {
        id: rotated.webhook.id,
        secret: rotated.secret,
        rotation_ends_at: rotated.webhook.rotation_ends_at,
    };
    respond::json(StatusCode::OK, &answer)
}

/// Sends a `webhook.ping` event to the webhook now, whatever its events.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "testWebhook",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    responses((status = 202, description = "The ping's delivery, queued", body = Delivery))
)]
#[post("/webhooks/{id}/test")]
pub async fn test(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let delivery = state.plinth.test_webhook(&who.0, resource_id(&id)?).await?;
    respond::json(StatusCode::ACCEPTED, &delivery)
}

/// Sends one delivery again now: the same event, with the same id, one more attempt.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "retryDelivery",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "The webhook's id"),
        ("delivery_id" = String, Path, format = Uuid, description = "The delivery's id"),
    ),
    responses((status = 202, description = "The delivery, pending again", body = Delivery))
)]
#[post("/webhooks/{id}/deliveries/{delivery_id}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    who: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery) = path.into_inner();
    let delivery: DeliveryId = resource_id(&delivery)?;
    let delivery = state.plinth.retry_delivery(&who.0, resource_id(&id)?, delivery).await?;
    respond::json(StatusCode::ACCEPTED, &delivery)
}

/// Which failed deliveries to send again.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Deliveries made at or after this time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-12-01T00:00:00Z")]
    pub since: time::OffsetDateTime,
}

/// What a recovery queued.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoverResponse {
    /// How many deliveries will be attempted again.
    #[schema(example = 3)]
    pub recovered: u64,
    /// Set when more are left than one call takes (1,000): call again with this `since`.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z")]
    pub next_since: Option<time::OffsetDateTime>,
}

/// Sends again every failed delivery (`dead`, `skipped`, or waiting for a retry) of the webhook
/// made since a time, each once, oldest first, paced: at the webhook's `rate_limit_per_second`,
/// or ten a second.
#[utoipa::path(
    tag = "webhooks",
    operation_id = "recoverWebhook",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The webhook's id")),
    request_body = RecoverRequest,
    responses((status = 202, body = RecoverResponse))
)]
#[post("/webhooks/{id}/recover")]
pub async fn recover(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    body: JsonBody<RecoverRequest>,
) -> Result<HttpResponse, ApiError> {
    let recovered = state.plinth.recover_webhook(&who.0, resource_id(&id)?, body.value.since).await?;
    let answer = RecoverResponse { recovered: recovered.deliveries, next_since: recovered.next_since };
    respond::json(StatusCode::ACCEPTED, &answer)
}
