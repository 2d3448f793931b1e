//! Sessions: `POST /v1/auth/refresh`, `POST /v1/auth/logout`, `GET /v1/me/sessions`,
//! `DELETE /v1/me/sessions/{id}`, `DELETE /v1/users/{id}/sessions` and `PUT /v1/me/password`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use plinth_domain::entities::Session;
use plinth_domain::usecases::SignedIn;
use serde::{Deserialize, Serialize};

use super::auth::TokenResponse;
use super::extract::{Auth, JsonBody, TenantCtx, resource_id};
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;

/// A refresh token to spend.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    /// The session's live refresh token.
    #[schema(schema_with = schemas::refresh_token)]
    pub refresh_token: String,
}

/// A password change.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    /// The password now (any string: a wrong one is `401 invalid_credentials`).
    #[schema(example = "correct horse battery staple")]
    pub current_password: String,
    /// 10–256 characters.
    #[schema(schema_with = schemas::password)]
    pub new_password: String,
}

/// One of the caller's sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// Whether the request was made with this session's access token.
    #[schema(example = true)]
    pub current: bool,
}

/// The caller's live sessions, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// The sessions.
    pub items: Vec<SessionView>,
}

/// The answer that hands out a session's tokens: `no-store`, as it carries secrets.
pub(super) fn signed_in(status: StatusCode, out: SignedIn) -> Result<HttpResponse, ApiError> {
    let mut res = respond::json(status, &TokenResponse::from(out))?;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Spends a refresh token for a new access token and a new refresh token. A token presented
/// again after it was spent ends its session, unless it is a retry within
/// `PLINTH_REFRESH_REUSE_S` (which gets the same new refresh token).
#[utoipa::path(
    tag = "auth",
    operation_id = "refresh",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse))
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    body: JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let out = state.plinth.refresh(&tenant.0, &body.value.refresh_token).await?;
    signed_in(StatusCode::OK, out)
}

/// Ends the caller's session: its refresh token and its access tokens stop working.
#[utoipa::path(
    tag = "auth",
    operation_id = "logout",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out"))
)]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    state.plinth.logout(&who.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's live sessions.
#[utoipa::path(
    tag = "auth",
    operation_id = "listMySessions",
    security(("bearer" = [])),
    responses((status = 200, body = SessionList))
)]
#[get("/me/sessions")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    let sessions = state.plinth.my_sessions(&who.0).await?;
    let current = who.0.person()?.1;
    let items = sessions.into_iter().map(|session| SessionView { current: session.id == current, session }).collect();
    respond::get(&req, &SessionList { items })
}

/// Ends one of the caller's sessions.
#[utoipa::path(
    tag = "auth",
    operation_id = "deleteMySession",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The session's id")),
    responses((status = 204, description = "Ended"))
)]
#[delete("/me/sessions/{id}")]
pub async fn remove(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.end_my_session(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of a user (the same rules as changing that user).
#[utoipa::path(
    tag = "users",
    operation_id = "deleteUserSessions",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user's id")),
    responses((status = 204, description = "Ended"))
)]
#[delete("/users/{id}/sessions")]
pub async fn remove_all(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.plinth.end_user_sessions(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the caller's password and ends every other session of theirs.
#[utoipa::path(
    tag = "auth",
    operation_id = "changePassword",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed"))
)]
#[put("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = &body.value;
    state.plinth.change_password(&who.0, &b.current_password, &b.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}
