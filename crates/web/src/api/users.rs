//! `/v1/users`: owners and admins manage the tenant's users.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use plinth_domain::entities::User;
use plinth_domain::page::Page;
use plinth_domain::usecases::NewUserInput;
use plinth_domain::values::Role;
use serde::Deserialize;

use super::extract::{Auth, IdempotencyKeyHeader, JsonBody, PageQuery, Paging, resource_id};
use super::idempotency;
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;
use plinth_domain::usecases::Idempotency;

/// A user to add.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateUserRequest {
    /// Their sign-in email, unique within the tenant: text, '@', text, without spaces or
    /// control characters, at most 254 characters once trimmed and lowercased.
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// 10–256 characters.
    #[schema(schema_with = schemas::password)]
    pub password: String,
    /// Their role; only an owner may create an owner.
    pub role: Role,
}

/// A role change.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateUserRequest {
    /// The new role.
    pub role: Role,
}

/// The tenant's users, newest first.
#[utoipa::path(
    tag = "users",
    operation_id = "listUsers",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<User>))
)]
#[get("/users")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let page = state.plinth.list_users(&who.0, &page.0).await?;
    respond::get(&req, &page)
}

/// Adds a user.
#[utoipa::path(
    tag = "users",
    operation_id = "createUser",
    security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = CreateUserRequest,
    responses((status = 201, body = User))
)]
#[post("/users")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody { value, fingerprint } = body;
    let input = NewUserInput { email: value.email, password: value.password, role: value.role };
    let kept = |u: &User| idempotency::stored(StatusCode::CREATED, u, None);
    let run = async |key: Option<Idempotency<'_, User>>| state.plinth.create_user(&who.0, input, key).await;
    idempotency::guarded(&req, fingerprint, &kept, run, |u| Ok(idempotency::to_response(&kept(&u)?, false))).await
}

/// Changes a user's role.
#[utoipa::path(
    tag = "users",
    operation_id = "updateUser",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user's id")),
    request_body = UpdateUserRequest,
    responses((status = 200, body = User))
)]
#[patch("/users/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    body: JsonBody<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state.plinth.change_role(&who.0, resource_id(&id)?, body.value.role).await?;
    respond::json(StatusCode::OK, &user)
}

/// Deletes a user.
#[utoipa::path(
    tag = "users",
    operation_id = "deleteUser",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The user's id")),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/users/{id}")]
pub async fn remove(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.delete_user(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
