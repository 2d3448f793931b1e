//! `POST /v1/auth/login`, `GET /v1/me`, `GET` and `DELETE /v1/tenant`; the tokens a sign-in answers.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, delete, get, post, web};
use plinth_domain::entities::{Tenant, User};
use plinth_domain::usecases::{SignedIn, TenantView};
use serde::{Deserialize, Serialize};

use super::extract::{Auth, Client, JsonBody, TenantCtx};
use super::respond;
use crate::middleware::gate::{AuthState, RequestCtx};
use crate::problem::ApiError;
use crate::state::AppState;

/// Credentials.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The user's email.
    #[schema(example = "ada@acme.test")]
    pub email: String,
    /// The user's password.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// A session's tokens: a short-lived bearer token, and the refresh token that gets the next.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The JWT.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzYTdjNCJ9.c2lnbmF0dXJl")]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Spend it at `POST /v1/auth/refresh` for the next tokens; it works once.
    #[schema(schema_with = super::schemas::refresh_token)]
    pub refresh_token: String,
}

impl From<SignedIn> for TokenResponse {
    fn from(out: SignedIn) -> Self {
        Self {
            access_token: out.access.token,
            token_type: "Bearer",
            expires_in: out.access.expires_in,
            refresh_token: out.refresh.expose(),
        }
    }
}

/// The caller and its tenant.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    /// The caller.
    pub user: User,
    /// The caller's tenant.
    pub tenant: Tenant,
}

/// Signs a user of this host's tenant in.
#[utoipa::path(
    tag = "auth",
    operation_id = "login",
    request_body = LoginRequest,
    responses((status = 200, body = TokenResponse))
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    client: Client,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let out = state.plinth.login(&tenant.0, &body.value.email, &body.value.password, client.0).await?;
    super::sessions::signed_in(StatusCode::OK, out)
}

/// The caller and its tenant.
#[utoipa::path(tag = "auth", operation_id = "me", security(("bearer" = [])), responses((status = 200, body = MeResponse)))]
#[get("/me")]
pub async fn me(
    req: HttpRequest,
    state: web::Data<AppState>,
    tenant: TenantCtx,
    who: Auth,
) -> Result<HttpResponse, ApiError> {
    let user = state.plinth.me(&who.0).await?;
    respond::get(&req, &MeResponse { user, tenant: Tenant::clone(&tenant.0) })
}

/// The owner's confirmation of a tenant's deletion.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTenantRequest {
    /// The tenant's slug, typed again.
    #[schema(schema_with = super::schemas::slug)]
    pub confirm: String,
}

/// Deletes this tenant (its owner, confirming with the slug): at once its hosts answer 404 on
/// every instance, and its sessions, keys, webhooks and emails stop. Its data is kept for
/// `PLINTH_TENANT_DELETE_GRACE_DAYS` (`purge_after` in the answer), when the platform's operator
/// can still restore it, then erased. Export it first: `GET /v1/tenant/export`.
#[utoipa::path(
    tag = "tenant",
    operation_id = "deleteTenant",
    security(("bearer" = [])),
    request_body = DeleteTenantRequest,
    responses((status = 202, body = TenantView))
)]
#[delete("/tenant")]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    who: Auth,
    body: JsonBody<DeleteTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let view = state.plinth.delete_own_tenant(&who.0, &tenant.0, &body.value.confirm).await?;
    respond::json(StatusCode::ACCEPTED, &view)
}

/// This host's tenant and its plan's limits: public, and cacheable by a CDN. With a token (or
/// key) valid on this host, also how much of each limit the tenant uses (and the answer is
/// private).
#[utoipa::path(tag = "tenant", operation_id = "getTenant", responses((status = 200, body = TenantView)))]
#[get("/tenant")]
pub async fn get_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    tenant: TenantCtx,
) -> Result<HttpResponse, ApiError> {
    let who = req.extensions().get::<RequestCtx>().and_then(|c| match c.auth {
        AuthState::Valid(p) => Some(p),
        AuthState::Missing | AuthState::Invalid => None,
    });
    let view = state.plinth.tenant_view(&tenant.0, who.as_ref()).await?;
    let mut res = respond::get(&req, &view)?;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    h.insert(header::VARY, HeaderValue::from_static("Host"));
    Ok(res)
}
