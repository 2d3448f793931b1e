//! The flows that go through someone's mailbox: `POST/GET /v1/invitations`,
//! `DELETE /v1/invitations/{id}`, `POST /v1/invitations/accept`, `POST /v1/auth/password-reset`,
//! `POST /v1/auth/password-reset/confirm`, `POST /v1/auth/verify-email` and
//! `POST /v1/me/verify-email` (a new link).
//!
//! A bad emailed token, whatever is wrong with it, is one answer: 400 `invalid_email_token`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use plinth_domain::entities::Invitation;
use plinth_domain::values::Role;
use serde::{Deserialize, Serialize};

use super::extract::{Auth, Client, JsonBody, TenantCtx, resource_id};
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;

/// Whom to invite, as what.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct InviteRequest {
    /// Their address.
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// The role they get on accepting; nobody invites to a role above their own.
    pub role: Role,
}

/// The tenant's pending invitations, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationList {
    /// The invitations.
    pub items: Vec<Invitation>,
}

/// An invitation's token and the new member's password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct AcceptInvitationRequest {
    /// The token from the invitation's link.
    #[schema(schema_with = schemas::invitation_token)]
    pub token: String,
    /// 10–256 characters.
    #[schema(schema_with = schemas::password)]
    pub password: String,
}

/// Whose password to reset.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordResetRequest {
    /// The member's address.
    #[schema(schema_with = schemas::email)]
    pub email: String,
}

/// A reset link's token and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmResetRequest {
    /// The token from the reset link.
    #[schema(schema_with = schemas::reset_token)]
    pub token: String,
    /// 10–256 characters.
    #[schema(schema_with = schemas::password)]
    pub new_password: String,
}

/// A verification link's token.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerifyEmailRequest {
    /// The token from the verification link.
    #[schema(schema_with = schemas::verify_token)]
    pub token: String,
}

/// The one answer to a password-reset request, whoever the address belongs to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// What happens next.
    #[schema(example = "If the address belongs to a user here, a message is on its way.")]
    pub detail: &'static str,
}

const RESET_ACCEPTED: Accepted = Accepted {
    status: "accepted",
    detail: "If this address belongs to a member, a link to reset the password is on its way.",
};

const VERIFICATION_ACCEPTED: Accepted =
    Accepted { status: "accepted", detail: "If the address is not verified yet, a new link is on its way." };

/// A `202 Accepted` that no cache keeps.
fn accepted(body: &Accepted) -> Result<HttpResponse, ApiError> {
    let mut res = respond::json(StatusCode::ACCEPTED, body)?;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Invites someone to this tenant: they get a link to choose a password (owner or admin).
#[utoipa::path(
    tag = "invitations",
    operation_id = "createInvitation",
    security(("bearer" = [])),
    request_body = InviteRequest,
    responses((status = 201, body = Invitation))
)]
#[post("/invitations")]
pub async fn create(
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<InviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let invitation = state.plinth.invite(&who.0, &body.value.email, body.value.role).await?;
    respond::json(StatusCode::CREATED, &invitation)
}

/// This tenant's pending invitations (owner or admin).
#[utoipa::path(
    tag = "invitations",
    operation_id = "listInvitations",
    security(("bearer" = [])),
    responses((status = 200, body = InvitationList))
)]
#[get("/invitations")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    let items = state.plinth.invitations(&who.0).await?;
    respond::get(&req, &InvitationList { items })
}

/// Revokes a pending invitation: its link stops working (owner or admin).
#[utoipa::path(
    tag = "invitations",
    operation_id = "deleteInvitation",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The invitation's id")),
    responses((status = 204, description = "Revoked"))
)]
#[delete("/invitations/{id}", guard = "not_accept")]
pub async fn revoke(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.revoke_invitation(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Whether the request is not for `/v1/invitations/accept`, which is that route's (POST only),
/// not an invitation's id: a DELETE of it falls through to the 405 with `Allow: POST`.
fn not_accept(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    !ctx.head().uri.path().ends_with("/invitations/accept")
}

/// Accepts an invitation: the invited address becomes a member with this password and a
/// verified address, and is signed in (as by login).
#[utoipa::path(
    tag = "invitations",
    operation_id = "acceptInvitation",
    request_body = AcceptInvitationRequest,
    responses((status = 200, body = super::auth::TokenResponse))
)]
#[post("/invitations/accept")]
pub async fn accept(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    client: Client,
    body: JsonBody<AcceptInvitationRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = &body.value;
    let out = state.plinth.accept_invitation(&tenant.0, &b.token, &b.password, client.0).await?;
    super::sessions::signed_in(StatusCode::OK, out)
}

/// Asks for a password-reset link. The answer is the same whether or not the address
/// belongs to a member; a member gets a link that works once, for `PLINTH_RESET_TTL_S`.
#[utoipa::path(
    tag = "auth",
    operation_id = "requestPasswordReset",
    request_body = PasswordResetRequest,
    responses((status = 202, body = Accepted))
)]
#[post("/auth/password-reset")]
pub async fn request_reset(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    body: JsonBody<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    state.plinth.request_password_reset(&tenant.0, &body.value.email).await?;
    accepted(&RESET_ACCEPTED)
}

/// Sets a new password with a reset link's token; every session of the user ends.
#[utoipa::path(
    tag = "auth",
    operation_id = "confirmPasswordReset",
    request_body = ConfirmResetRequest,
    responses((status = 204, description = "Password set; every session ended"))
)]
#[post("/auth/password-reset/confirm")]
pub async fn confirm_reset(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    body: JsonBody<ConfirmResetRequest>,
) -> Result<HttpResponse, ApiError> {
    state.plinth.confirm_password_reset(&tenant.0, &body.value.token, &body.value.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Verifies an address with a verification link's token.
#[utoipa::path(
    tag = "auth",
    operation_id = "verifyEmail",
    request_body = VerifyEmailRequest,
    responses((status = 204, description = "Verified"))
)]
#[post("/auth/verify-email")]
pub async fn verify(
    state: web::Data<AppState>,
    tenant: TenantCtx,
    body: JsonBody<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    state.plinth.verify_email(&tenant.0, &body.value.token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends the caller a new verification link (nothing when their address is verified).
#[utoipa::path(
    tag = "auth",
    operation_id = "resendVerification",
    security(("bearer" = [])),
    responses((status = 202, body = Accepted))
)]
#[post("/me/verify-email")]
pub async fn resend(state: web::Data<AppState>, who: Auth) -> Result<HttpResponse, ApiError> {
    state.plinth.resend_verification(&who.0).await?;
    accepted(&VERIFICATION_ACCEPTED)
}
