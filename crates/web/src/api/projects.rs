//! `/v1/projects`: every member works on the tenant's projects.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use plinth_domain::entities::Project;
use plinth_domain::page::Page;
use serde::Deserialize;

use super::extract::{Auth, IdempotencyKeyHeader, JsonBody, PageQuery, Paging, resource_id};
use super::idempotency;
use super::respond;
use super::schemas;
use crate::problem::ApiError;
use crate::state::AppState;
use plinth_domain::usecases::Idempotency;

/// A project's editable fields.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProjectRequest {
    /// 1–255 characters after trimming, no control characters.
    #[schema(schema_with = schemas::display_name)]
    pub name: String,
}

/// The tenant's projects, newest first.
#[utoipa::path(
    tag = "projects",
    operation_id = "listProjects",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Project>))
)]
#[get("/projects")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let body = state.plinth.list_projects(who.0.tenant, &page.0).await?;
    Ok(respond::get_tagged(&req, &body))
}

/// Creates a project.
#[utoipa::path(
    tag = "projects",
    operation_id = "createProject",
    security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body = ProjectRequest,
    responses((status = 201, body = Project, headers(("Location" = String, description = "The project's URL"))))
)]
#[post("/projects")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    body: JsonBody<ProjectRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody { value, fingerprint } = body;
    let kept = |p: &Project| idempotency::stored(StatusCode::CREATED, p, Some(format!("/v1/projects/{}", p.id)));
    let run = async |key: Option<Idempotency<'_, Project>>| state.plinth.create_project(&who.0, &value.name, key).await;
    idempotency::guarded(&req, fingerprint, &kept, run, |p| Ok(idempotency::to_response(&kept(&p)?, false))).await
}

/// One project.
#[utoipa::path(
    tag = "projects",
    operation_id = "getProject",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The project's id")),
    responses((status = 200, body = Project))
)]
#[get("/projects/{id}")]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let body = state.plinth.get_project(who.0.tenant, resource_id(&id)?).await?;
    Ok(respond::get_tagged(&req, &body))
}

/// Renames a project.
#[utoipa::path(
    tag = "projects",
    operation_id = "updateProject",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The project's id")),
    request_body = ProjectRequest,
    responses((status = 200, body = Project))
)]
#[patch("/projects/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    who: Auth,
    id: web::Path<String>,
    body: JsonBody<ProjectRequest>,
) -> Result<HttpResponse, ApiError> {
    let project = state.plinth.rename_project(&who.0, resource_id(&id)?, &body.value.name).await?;
    respond::json(StatusCode::OK, &project)
}

/// Deletes a project.
#[utoipa::path(
    tag = "projects",
    operation_id = "deleteProject",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The project's id")),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/projects/{id}")]
pub async fn remove(state: web::Data<AppState>, who: Auth, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.plinth.delete_project(&who.0, resource_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
