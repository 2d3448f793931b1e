//! `/admin/v1`: the operator's API, on the platform host, behind the operator's own bearer
//! token (`PLINTH_OPERATOR_TOKEN_HASHES`). The same use cases as `plinth tenant …`.
//!
//! Off (every route answers 404, as an unknown path does) when no token is configured, and on
//! any host but the platform's. A request without a valid operator token answers 401 and is
//! counted by its client's IP quota; an operator's own requests are not rate-limited.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error as ActixError, HttpRequest, HttpResponse, delete, get, post, put, web};
use plinth_domain::Error;
use plinth_domain::host::HostTarget;
use plinth_domain::ports::TenantState;
use plinth_domain::usecases::{Subject, TenantList, TenantView};
use plinth_domain::values::Slug;
use serde::Deserialize;

use super::extract::JsonBody;
use super::respond;
use crate::middleware::gate::{self, AuthState, bearer};
use crate::problem::ApiError;
use crate::state::AppState;

/// Lets through the requests an operator token authorises (see the module's documentation).
pub async fn operator_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, ActixError> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::Domain(Error::internal("application state is missing")).into());
    };
    let on_platform = matches!(gate::host_target(req.request(), &state.base_domain), HostTarget::Platform);
    if !state.operators.enabled() || !on_platform {
        return Ok(gate::reject(req, ApiError::Domain(Error::NotFound), None));
    }
    let presented = bearer(req.headers());
    if !presented.is_some_and(|token| state.operators.admits(token)) {
        let auth = if presented.is_some() { AuthState::Invalid } else { AuthState::Missing };
        let limit = gate::count(&state, Subject::Ip(gate::client(&req, &state))).await;
        if let Some(refusal) = gate::refused(limit) {
            return Ok(gate::too_many(req, refusal, auth));
        }
        let error = if presented.is_some() { Error::InvalidToken } else { Error::Unauthorized };
        return Ok(gate::reject(req, ApiError::Domain(error), limit));
    }
    let res = if req.method().is_safe() {
        next.call(req).await?
    } else {
        let origin = gate::origin(req.request(), &state);
        plinth_domain::audit::with_origin(origin, next.call(req)).await?
    };
    Ok(res.map_into_left_body())
}

/// The tenant named in the path; 404 `tenant_not_found` for a malformed slug, as for one that
/// names no tenant.
fn slug(raw: &str) -> Result<Slug, ApiError> {
    Slug::parse(raw).map_err(|_| ApiError::Domain(Error::TenantNotFound))
}

/// The filters of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only tenants in this state.
    #[param(inline)]
    pub state: Option<TenantState>,
    /// Only tenants whose slug comes after this one (the previous page's `next_cursor`).
    #[param(schema_with = super::schemas::slug)]
    pub after: Option<String>,
    /// How many, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Every tenant, by slug, with its plan's limits and its state.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminListTenants",
    security(("operatorToken" = [])),
    params(ListParams),
    responses((status = 200, body = TenantList))
)]
#[get("/tenants")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<ListParams>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::Malformed("The query string is malformed: state, after or limit.".into()))?;
    let after = params
        .after
        .map(|a| Slug::parse(&a).map_err(|_| ApiError::Malformed("after must be a tenant's slug.".into())))
        .transpose()?;
    let list = state.plinth.list_tenants(after.as_ref(), params.limit.unwrap_or(100), params.state).await?;
    respond::private(&list)
}

/// One tenant: its plan, the plan's limits, its usage and its state.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminGetTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    responses((status = 200, body = TenantView))
)]
#[get("/tenants/{slug}")]
pub async fn show(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.operator_show(&slug(&path)?).await?)
}

/// A plan to move a tenant to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// One of the configured plans' names.
    #[schema(example = "pro", min_length = 1, max_length = 32, pattern = r"^[a-z][a-z0-9-]{0,31}$")]
    pub plan: String,
}

/// Moves a tenant to another plan: its quota and limits change on every instance at once.
/// Audited as `tenant.plan_changed`, and sent to its webhooks as that event.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminSetPlan",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    request_body = PlanRequest,
    responses((status = 200, body = TenantView))
)]
#[put("/tenants/{slug}/plan")]
pub async fn set_plan(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.set_plan(&slug(&path)?, &body.value.plan).await?)
}

/// Why a tenant is suspended.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// For the tenant's audit log: at most 500 characters, not all white space (it is trimmed),
    /// with no control, bidirectional or zero-width format character and no line or paragraph
    /// separator.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]*[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]*$",
        example = "payment overdue"
    )]
    pub reason: Option<String>,
}

/// Suspends a tenant: within seconds every instance answers its hosts with 403
/// `tenant_suspended`, its tokens and keys stop working, and its webhook deliveries and emails
/// wait (they are not failed). Suspending a suspended tenant changes nothing.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminSuspendTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    request_body = SuspendRequest,
    responses((status = 200, body = TenantView))
)]
#[post("/tenants/{slug}/suspend")]
pub async fn suspend(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<SuspendRequest>,
) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.suspend(&slug(&path)?, body.value.reason.as_deref()).await?)
}

/// Resumes a suspended tenant: its hosts answer again and its waiting deliveries and emails go
/// on. Resuming an active tenant changes nothing.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminResumeTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    responses((status = 200, body = TenantView))
)]
#[post("/tenants/{slug}/resume")]
pub async fn resume(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.resume(&slug(&path)?).await?)
}

/// Deletes a tenant: its hosts answer 404 at once on every instance, its sessions, keys and
/// jobs stop, and its data is erased once `PLINTH_TENANT_DELETE_GRACE_DAYS` have passed
/// (`purge_after`), unless it is restored first.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminDeleteTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    responses((status = 200, body = TenantView))
)]
#[delete("/tenants/{slug}")]
pub async fn remove(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.delete_tenant(&slug(&path)?).await?)
}

/// Everything a tenant holds, as `GET /v1/tenant/export` gives it to its owner (the same
/// format, snapshot, pace and one-at-a-time rule), whatever the tenant's state: a suspended
/// tenant, or a deleted one within its grace, can be given its data. Audited in the tenant's log
/// as `tenant.exported` by the operator.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminExportTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    responses((
        status = 200,
        description = "The export: NDJSON, one line per record, the `end` line last",
        content_type = "application/x-ndjson",
        body = String,
        example = super::export::example
    ))
)]
#[get("/tenants/{slug}/export")]
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug(&path)?;
    // A read, but an audited one: its entry names the request.
    let origin = gate::origin(&req, &state);
    let (tenant, export) = plinth_domain::audit::with_origin(origin, state.plinth.operator_export(&slug)).await?;
    Ok(super::export::streamed(&tenant.slug, export))
}

/// Undoes a tenant's deletion while its grace lasts: its hosts answer again (still suspended,
/// if it was). Restoring a tenant that is not deleted changes nothing; one already erased is
/// not found.
#[utoipa::path(
    tag = "operator",
    operation_id = "adminRestoreTenant",
    security(("operatorToken" = [])),
    params(("slug" = String, Path, description = "The tenant's slug", min_length = 3, max_length = 63, pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")),
    responses((status = 200, body = TenantView))
)]
#[post("/tenants/{slug}/restore")]
pub async fn restore(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::private(&state.plinth.restore(&slug(&path)?).await?)
}
