//! The OpenAPI document: paths come from the handlers' annotations; this adds what every
//! operation shares (the error answers, the common headers, the bearer scheme) and the schema of
//! each event type's envelope.

use std::sync::LazyLock;

use plinth_domain::entities::{ApiKey, Project, Tenant, User, Webhook};
use plinth_domain::events::{AcceptedInvitation, EventKind, Subject};
use plinth_domain::ports::StoredEvent;
use plinth_domain::values::Scope;
use plinth_domain::{Conflict, Error, FieldError};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{ResponseBuilder, Responses};
use utoipa::openapi::schema::{Discriminator, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, Content, OpenApi, Ref, RefOr, Schema};
use utoipa::{OpenApi as _, PartialSchema as _, ToSchema as _};

use super::access::{Access, access};
use crate::problem::{ApiError, Problem};

/// The document's fixed parts.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "plinth", description = "A multi-tenant SaaS API: tenants by host, JWT auth, per-plan rate limits."),
    components(schemas(Problem, FieldError, Project, Tenant, User, AcceptedInvitation, ApiKey, Webhook)),
    tags(
        (name = "platform", description = "Health, readiness, metrics and this document; any host, never rate-limited"),
        (name = "auth", description = "Signup (platform host), login, sessions, password reset, address verification and the caller"),
        (name = "tenant", description = "The tenant a host names"),
        (name = "users", description = "A tenant's users (owners and admins)"),
        (name = "invitations", description = "Inviting people to a tenant by email, and accepting"),
        (name = "projects", description = "A tenant's projects"),
        (name = "webhooks", description = "A tenant's webhooks and their deliveries (owners and admins)"),
        (name = "events", description = "A tenant's events, as its webhooks receive them, for replaying what a consumer missed (owners and admins, or a key with `webhooks:read`); each type's envelope is the schema `event.<type>`, all of them `Event`"),
        (name = "api-keys", description = "A tenant's API keys, for scripts and integrations (owners and admins; people only)"),
        (name = "audit", description = "A tenant's tamper-evident audit log (owners and admins, or a key with `audit:read`)"),
        (name = "operator", description = "The platform operator's API: tenants, their plans, suspension and deletion. On the platform host only, with an operator token (`PLINTH_OPERATOR_TOKEN_HASHES`); every route answers 404 when none is configured"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The error answers an operation can give, by operation id. Every `/v1` operation also may
/// answer 429, 500 and 503.
fn errors_of(operation_id: &str) -> &'static [(u16, &'static str)] {
    const BODY: (u16, &str) = (400, "Malformed JSON");
    const UNAUTH: (u16, &str) = (401, "No bearer token (`unauthorized`) or not a valid one here (`invalid_token`)");
    const FORBIDDEN: (u16, &str) = (
        403,
        "The caller's role may not do this (`forbidden`), or a write by a user whose address is not verified while verification is required (`email_unverified`)",
    );
    const TENANT: (u16, &str) = (404, "No tenant at this host (`tenant_not_found`), or no such resource (`not_found`)");
    const EMAILED: (u16, &str) = (
        400,
        "Malformed JSON, or an emailed token that is not (or no longer) valid, whatever the reason (`invalid_email_token`)",
    );
    const LIMITED: (u16, &str) = (
        403,
        "The caller's role may not do this (`forbidden`), a write by a user whose address is not verified while verification is required (`email_unverified`), or the tenant's plan allows no more of this (`plan_limit_reached`, with `resource`, `limit` and `usage`)",
    );
    const CONFLICT: (u16, &str) = (409, "Conflict with the current state");
    const WEBHOOK_DISABLED: (u16, &str) = (409, "The webhook is disabled: enable it first (`conflict`)");
    const TOO_LARGE: (u16, &str) = (413, "Body over 64 KiB");
    const MEDIA: (u16, &str) = (415, "Body without Content-Type: application/json");
    const INVALID: (u16, &str) = (422, "A validation rule is broken, or an Idempotency-Key reused with another body");
    const QUERY: (u16, &str) = (400, "Malformed limit or cursor");
    const OPERATOR: (u16, &str) = (
        401,
        "No operator token (`unauthorized`) or not a valid one (`invalid_token`); counted by the client's IP quota (429 past it)",
    );
    const OFF: (u16, &str) =
        (404, "The operator API is off (no PLINTH_OPERATOR_TOKEN_HASHES), or not the platform host (`not_found`)");
    const NO_TENANT: (u16, &str) =
        (404, "No such tenant (`tenant_not_found`), or the operator API is off or not on this host (`not_found`)");
    const SLOW: (u16, &str) =
        (408, "The body did not arrive within PLINTH_BODY_TIMEOUT_S (`request_timeout`); the connection is closed");
    match operation_id {
        "signup" => &[BODY, (404, "Not the platform host"), SLOW, CONFLICT, TOO_LARGE, MEDIA, INVALID],
        "login" => {
            &[BODY, (401, "Wrong email or password (`invalid_credentials`)"), TENANT, SLOW, TOO_LARGE, MEDIA, INVALID]
        }
        "refresh" => &[
            BODY,
            (
                401,
                "The refresh token is malformed, unknown, spent, or of an ended or expired session (`invalid_token`)",
            ),
            TENANT,
            SLOW,
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        "changePassword" => &[
            BODY,
            (401, "No bearer token, not a valid one here, or the wrong current password (`invalid_credentials`)"),
            TENANT,
            SLOW,
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        "acceptInvitation" => &[
            EMAILED,
            (403, "The tenant's plan allows no more members (`plan_limit_reached`); the invitation stays pending"),
            TENANT,
            SLOW,
            CONFLICT,
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        "confirmPasswordReset" | "verifyEmail" => &[EMAILED, TENANT, SLOW, CONFLICT, TOO_LARGE, MEDIA, INVALID],
        "requestPasswordReset" => &[BODY, TENANT, SLOW, TOO_LARGE, MEDIA, INVALID],
        "createInvitation" => &[
            BODY,
            UNAUTH,
            (
                403,
                "The caller's role may not do this (`forbidden`), or their address is not verified (`email_unverified`)",
            ),
            TENANT,
            SLOW,
            (409, "A member has this address, or the tenant has too many pending invitations (`conflict`)"),
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        "listInvitations" => &[UNAUTH, FORBIDDEN, TENANT],
        "deleteInvitation" => &[UNAUTH, FORBIDDEN, TENANT],
        "resendVerification" => &[UNAUTH, TENANT],
        "logout" | "listMySessions" | "deleteMySession" => &[UNAUTH, TENANT],
        "deleteUserSessions" => &[UNAUTH, FORBIDDEN, TENANT],
        "getTenant" => &[TENANT],
        "deleteTenant" => &[
            BODY,
            UNAUTH,
            (403, "Not the tenant's owner, or an API key (`forbidden`)"),
            TENANT,
            SLOW,
            TOO_LARGE,
            MEDIA,
            (422, "`confirm` is not the tenant's slug (`validation_failed`)"),
        ],
        "adminListTenants" => &[(400, "Malformed state, after or limit"), OPERATOR, OFF],
        "adminGetTenant" | "adminResumeTenant" | "adminDeleteTenant" => &[OPERATOR, NO_TENANT],
        "adminExportTenant" => {
            &[OPERATOR, NO_TENANT, (409, "An export of this tenant is already running (`export_in_progress`)")]
        }
        "adminRestoreTenant" => {
            &[OPERATOR, NO_TENANT, (409, "The tenant's grace has run out: its data is being erased (`conflict`)")]
        }
        "adminSetPlan" | "adminSuspendTenant" => &[
            BODY,
            OPERATOR,
            NO_TENANT,
            SLOW,
            TOO_LARGE,
            MEDIA,
            (422, "No such plan, or a reason that is empty, too long or holds a control character"),
        ],
        "exportTenant" => &[
            UNAUTH,
            (403, "The caller is not the tenant's owner, or is an API key (`forbidden`)"),
            TENANT,
            (409, "An export of this tenant is already running (`export_in_progress`)"),
        ],
        "createApiKey" => &[
            BODY,
            UNAUTH,
            (
                403,
                "The caller's role may not do this, or the caller is an API key (`forbidden`), or the tenant's plan allows no more keys (`plan_limit_reached`)",
            ),
            TENANT,
            SLOW,
            (409, "The tenant has as many live keys as it may (`conflict`)"),
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        "listApiKeys" | "revokeApiKey" => &[UNAUTH, FORBIDDEN, TENANT],
        "listAuditLog" => &[(400, "Malformed limit, cursor or filter"), UNAUTH, FORBIDDEN, TENANT],
        "verifyAuditLog" => &[UNAUTH, FORBIDDEN, TENANT],
        "me" => &[UNAUTH, TENANT],
        "listUsers" | "listProjects" | "listWebhooks" | "listDeliveries" => &[QUERY, UNAUTH, FORBIDDEN, TENANT],
        "listEvents" => &[
            (400, "Malformed limit, cursor or query string"),
            UNAUTH,
            FORBIDDEN,
            TENANT,
            (422, "`type` is not an event type, or `since` is not an RFC 3339 time (`validation_failed`)"),
        ],
        "getEvent" => &[UNAUTH, FORBIDDEN, TENANT],
        "createUser" | "createProject" => &[BODY, UNAUTH, LIMITED, TENANT, SLOW, CONFLICT, TOO_LARGE, MEDIA, INVALID],
        "updateUser" | "updateProject" => &[BODY, UNAUTH, FORBIDDEN, TENANT, SLOW, CONFLICT, TOO_LARGE, MEDIA, INVALID],
        "createWebhook" => &[BODY, UNAUTH, LIMITED, TENANT, SLOW, TOO_LARGE, MEDIA, INVALID],
        "deleteUser" | "deleteProject" | "getProject" | "deleteWebhook" => &[UNAUTH, FORBIDDEN, TENANT, CONFLICT],
        "getWebhook" => &[UNAUTH, FORBIDDEN, TENANT],
        "updateWebhook" => &[BODY, UNAUTH, FORBIDDEN, TENANT, SLOW, TOO_LARGE, MEDIA, INVALID],
        "rotateWebhookSecret" => &[BODY, UNAUTH, FORBIDDEN, TENANT, SLOW, TOO_LARGE, MEDIA, INVALID],
        "testWebhook" | "retryDelivery" => &[UNAUTH, FORBIDDEN, TENANT, WEBHOOK_DISABLED],
        "recoverWebhook" => &[BODY, UNAUTH, FORBIDDEN, TENANT, SLOW, WEBHOOK_DISABLED, TOO_LARGE, MEDIA, INVALID],
        _ => &[],
    }
}

fn problem_response(status: u16, description: &str) -> RefOr<utoipa::openapi::response::Response> {
    let mut content = Content::new(Some(RefOr::<Schema>::Ref(Ref::from_schema_name(Problem::name()))));
    content.example = problem_example(status, description);
    ResponseBuilder::new().description(description).content("application/problem+json", content).into()
}

/// One error of each kind an operation can answer, to show as its example: what plinth itself
/// renders for it, so an example never drifts from the real answer.
fn sample_errors() -> Vec<ApiError> {
    vec![
        ApiError::Malformed("Malformed JSON: expected `,` or `}` at line 1 column 17.".into()),
        ApiError::PayloadTooLarge,
        ApiError::RequestTimeout,
        ApiError::UnsupportedMediaType,
        ApiError::RateLimited { retry_after: 12 },
        Error::Validation(vec![FieldError::new("name", "must not be empty")]).into(),
        Error::BadRequest("malformed cursor").into(),
        Error::Unauthorized.into(),
        Error::InvalidToken.into(),
        Error::InvalidCredentials.into(),
        Error::InvalidEmailToken.into(),
        Error::Forbidden("owners and admins only").into(),
        Error::EmailUnverified.into(),
        Error::InsufficientScope(Scope::ProjectsWrite).into(),
        Error::PlanLimitReached { resource: "projects", limit: 100, usage: 100 }.into(),
        Error::TenantSuspended.into(),
        Error::TenantNotFound.into(),
        Error::NotFound.into(),
        Error::Conflict(Conflict::ChangedMeanwhile).into(),
        Error::Conflict(Conflict::ExportRunning).into(),
        Error::IdempotencyKeyReused.into(),
        Error::QueueFull.into(),
        Error::Unavailable { dependency: "database", source: None }.into(),
        Error::Internal("example".into()).into(),
    ]
}

/// The example of an error answer: the problem document of the first code its description
/// names (in backticks), or else of the first sample with its status.
fn problem_example(status: u16, description: &str) -> Option<serde_json::Value> {
    // Rendered once: the document has some six hundred error answers.
    static SAMPLES: LazyLock<Vec<Problem>> = LazyLock::new(|| sample_errors().iter().map(ApiError::problem).collect());
    let samples = &*SAMPLES;
    let named = description.split('`').skip(1).step_by(2);
    let problem = named
        .filter_map(|code| samples.iter().find(|p| p.code == code && p.status == status))
        .next()
        .or_else(|| samples.iter().find(|p| p.status == status))?;
    serde_json::to_value(problem).ok()
}

/// Says on an authenticated operation whether an API key may call it and with which scope: as
/// an `apiKey` security requirement naming the scope, and in words.
fn document_access(method: &str, path: &str, op: &mut Operation) {
    let Some(security) = &mut op.security else { return };
    let note = match access(method, path) {
        Access::Scope(scope) => {
            security.push(SecurityRequirement::new("apiKey", [scope.as_str()]));
            format!("API keys: needs the `{scope}` scope (403 `insufficient_scope` without it).")
        }
        Access::People => "Not for API keys (403 `forbidden`): a person must call it.".to_owned(),
    };
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
        _ => note,
    });
}

fn add_common(method: &str, path: &str, op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    if path.starts_with("/v1/") {
        document_access(method, path, op);
    }
    let responses: &mut Responses = &mut op.responses;
    for (status, description) in errors_of(&id) {
        responses.responses.entry(status.to_string()).or_insert_with(|| problem_response(*status, description));
    }
    // Every route on a tenant's host is refused while the tenant is suspended.
    if path.starts_with("/v1/") && id != "signup" {
        const SUSPENDED: &str = "the tenant is suspended (`tenant_suspended`)";
        let described = match responses.responses.get("403") {
            Some(RefOr::T(r)) => format!("{}; or {SUSPENDED}", r.description),
            _ => format!("Refused: {SUSPENDED}"),
        };
        responses.responses.insert("403".into(), problem_response(403, &described));
    }
    if path.starts_with("/v1/") {
        // Project writes enqueue their webhooks' deliveries, which a tenant's cap bounds.
        let enqueues = matches!(
            id.as_str(),
            "createProject"
                | "updateProject"
                | "deleteProject"
                | "testWebhook"
                | "retryDelivery"
                | "recoverWebhook"
                | "createUser"
                | "createApiKey"
        );
        let too_many = if enqueues {
            "Rate limit exceeded (`rate_limited`), or the tenant's pending webhook deliveries are at their cap \
             (`queue_full`); see Retry-After"
        } else {
            "Rate limit exceeded (`rate_limited`; for a request that sends a message, the `mailbox` policy too); see Retry-After"
        };
        responses.responses.entry("429".into()).or_insert_with(|| problem_response(429, too_many));
        responses
            .responses
            .entry("503".into())
            .or_insert_with(|| problem_response(503, "A dependency is unavailable; see Retry-After"));
    }
    if path.starts_with("/admin/") {
        let too_many = "Too many requests without a valid operator token from this address (`rate_limited`, the `ip` policy); see Retry-After";
        responses.responses.entry("429".into()).or_insert_with(|| problem_response(429, too_many));
        responses
            .responses
            .entry("503".into())
            .or_insert_with(|| problem_response(503, "A dependency is unavailable; see Retry-After"));
    }
    responses.responses.entry("500".into()).or_insert_with(|| problem_response(500, "Internal error"));
    let get = matches!(
        id.as_str(),
        "getTenant"
            | "me"
            | "listMySessions"
            | "listUsers"
            | "listProjects"
            | "getProject"
            | "listWebhooks"
            | "getWebhook"
            | "listDeliveries"
            | "listInvitations"
            | "listApiKeys"
            | "listAuditLog"
            | "listEvents"
            | "getEvent"
    );
    if get {
        responses.responses.entry("304".into()).or_insert_with(|| {
            ResponseBuilder::new().description("Not modified: the If-None-Match ETag is current").into()
        });
    }
    for (status, response) in responses.responses.iter_mut() {
        if let RefOr::T(r) = response {
            // Error answers a handler documents itself get their example here.
            if let Some(content) = r.content.get_mut("application/problem+json")
                && content.example.is_none()
                && matches!(&content.schema, Some(RefOr::Ref(schema)) if schema.ref_location.ends_with("/Problem"))
            {
                content.example = problem_example(status.parse().unwrap_or_default(), &r.description);
            }
            r.headers.insert(
                "X-Request-Id".into(),
                HeaderBuilder::new().schema(String::schema()).description(Some("The request's id")).build(),
            );
            if path.starts_with("/v1/") {
                r.headers.insert(
                    "RateLimit".into(),
                    HeaderBuilder::new()
                        .schema(String::schema())
                        .description(Some("\"policy\";r=remaining;t=seconds"))
                        .build(),
                );
                r.headers.insert(
                    "RateLimit-Policy".into(),
                    HeaderBuilder::new().schema(String::schema()).description(Some("\"policy\";q=quota;w=60")).build(),
                );
            }
        }
    }
}

/// The schema of an event's `data`: the entity it is about, as the API shows it. Only a new
/// [`Subject`] needs a line here; a new event kind needs none.
fn data_schema(subject: Subject) -> String {
    match subject {
        Subject::Project => Project::name(),
        Subject::Tenant => Tenant::name(),
        Subject::User => User::name(),
        Subject::Invitation => AcceptedInvitation::name(),
        Subject::ApiKey => ApiKey::name(),
        Subject::Webhook => Webhook::name(),
    }
    .into_owned()
}

/// The name of `kind`'s envelope schema: `event.user.created`.
pub fn event_schema_name(kind: EventKind) -> String {
    format!("event.{}", kind.as_str())
}

/// One schema per event type, from [`EventKind::ALL`]: the envelope, its `type` that one and its
/// `data` the schema of what the type is about; and `Event`, any one of them by `type`.
fn add_event_schemas(components: &mut Components) {
    let string = |format: KnownFormat| {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)))
    };
    let mut any = OneOfBuilder::new().description(Some("An event of any type: the envelope webhooks receive"));
    let mut mapping = Vec::new();
    for kind in EventKind::ALL {
        let name = event_schema_name(kind);
        let envelope = ObjectBuilder::new()
            .description(Some(format!("The envelope of a `{}` event, exactly as webhooks receive it", kind.as_str())))
            .property(
                "id",
                string(KnownFormat::Uuid)
                    .description(Some("The event's id (`Plinth-Event-Id`), the same on every attempt"))
                    .examples(["0193a7c5-0a11-7f60-b172-9d0e1f203142"]),
            )
            .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([kind.as_str()])))
            .property(
                "created_at",
                string(KnownFormat::DateTime)
                    .description(Some("When it happened (RFC 3339)"))
                    .examples(["2026-12-04T09:30:00Z"]),
            )
            .property(
                "tenant_id",
                string(KnownFormat::Uuid)
                    .description(Some("Whose data it is"))
                    .examples(["0193a0c4-7e52-7b1c-9d3e-5f1a2b3c4d5e"]),
            )
            .property("data", Ref::from_schema_name(data_schema(kind.subject())))
            .required("id")
            .required("type")
            .required("created_at")
            .required("tenant_id")
            .required("data");
        components.schemas.insert(name.clone(), envelope.into());
        any = any.item(Ref::from_schema_name(name.clone()));
        mapping.push((kind.as_str(), format!("#/components/schemas/{name}")));
    }
    let any = any.discriminator(Some(Discriminator::with_mapping("type", mapping)));
    components.schemas.insert(StoredEvent::SCHEMA.into(), any.into());
}

/// The complete document: `paths` (from the registered handlers) on top of [`ApiDoc`].
pub fn finish(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("PATCH", &mut item.patch),
            ("PUT", &mut item.put),
            ("DELETE", &mut item.delete),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                add_common(method, path, op);
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    add_event_schemas(components);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.add_security_scheme(
        "operatorToken",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("plop_<secret>")
                .description(Some("The platform operator's token (`plinth operator-token` makes one)"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("plk_<id>_<secret>")
                .description(Some("A tenant API key; each operation names the scope it needs"))
                .build(),
        ),
    );
    doc
}

/// The base document the handlers' paths are added to.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}
