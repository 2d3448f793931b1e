//! `POST /v1/signup`: a new tenant and its owner, on the platform host.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, post, web};
use plinth_domain::entities::{Tenant, User};
use plinth_domain::usecases::SignupInput;
use serde::{Deserialize, Serialize};

use super::extract::JsonBody;
use super::respond;
use crate::problem::ApiError;
use crate::state::AppState;

/// The signup form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    /// 3–63 characters of a-z, 0-9 and '-'.
    #[schema(example = "acme")]
    pub tenant_slug: String,
    /// 1–255 characters.
    #[schema(example = "Acme Inc.")]
    pub tenant_name: String,
    /// The owner's email.
    #[schema(example = "ada@acme.test")]
    pub email: String,
    /// 10–256 characters.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// What signup created, and a token for the owner.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    /// The new tenant.
    pub tenant: Tenant,
    /// Its owner.
    pub user: User,
    /// A bearer token for the owner.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Creates a tenant on the free plan and its owner.
#[utoipa::path(
    tag = "auth",
    operation_id = "signup",
    request_body = SignupRequest,
    responses((status = 201, body = SignupResponse))
)]
#[post("/signup")]
pub async fn signup(state: web::Data<AppState>, body: JsonBody<SignupRequest>) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let out = state
        .plinth
        .signup(SignupInput {
            tenant_slug: b.tenant_slug,
            tenant_name: b.tenant_name,
            email: b.email,
            password: b.password,
        })
        .await?;
    let mut res = respond::json(
        StatusCode::CREATED,
        &SignupResponse {
            tenant: out.tenant,
            user: out.user,
            access_token: out.token.token,
            token_type: "Bearer",
            expires_in: out.token.expires_in,
        },
    )?;
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(res)
}
