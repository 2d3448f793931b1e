//! `POST /v1/signup`: a new tenant and its owner, on the platform host.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, post, web};
use plinth_domain::Error;
use plinth_domain::entities::{Tenant, User};
use plinth_domain::host::HostTarget;
use plinth_domain::usecases::SignupInput;
use serde::{Deserialize, Serialize};

use super::auth::TokenResponse;
use super::extract::{Client, JsonBody};
use super::respond;
use super::schemas;
use crate::middleware::gate::host_target;
use crate::problem::ApiError;
use crate::state::AppState;

/// The signup form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    /// 3–63 characters of a-z, 0-9 and '-', neither first nor last a '-'; not www, api, app,
    /// admin, static or status.
    #[schema(schema_with = schemas::slug)]
    pub tenant_slug: String,
    /// 1–255 characters after trimming, no control characters.
    #[schema(schema_with = schemas::display_name)]
    pub tenant_name: String,
    /// The owner's email: text, '@', text, without spaces or control characters, at most 254
    /// characters once trimmed and lowercased.
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// 10–256 characters.
    #[schema(schema_with = schemas::password)]
    pub password: String,
}

/// What signup created, and a token for the owner.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    /// The new tenant.
    pub tenant: Tenant,
    /// Its owner.
    pub user: User,
    /// The owner's session: a bearer token and a refresh token.
    #[serde(flatten)]
    pub tokens: TokenResponse,
}

/// Creates a tenant on the free plan and its owner; on the platform host only.
#[utoipa::path(
    tag = "auth",
    operation_id = "signup",
    request_body = SignupRequest,
    responses((status = 201, body = SignupResponse))
)]
#[post("/signup")]
pub async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    client: Client,
    body: JsonBody<SignupRequest>,
) -> Result<HttpResponse, ApiError> {
    // The gate refuses signup off the platform host already; this holds should the gate ever
    // classify a request otherwise than the router matched it.
    if host_target(&req, &state.base_domain) != HostTarget::Platform {
        return Err(ApiError::Domain(Error::NotFound));
    }
    let b = body.value;
    let out = state
        .plinth
        .signup(
            SignupInput {
                tenant_slug: b.tenant_slug,
                tenant_name: b.tenant_name,
                email: b.email,
                password: b.password,
                email_verified: false,
            },
            client.0,
        )
        .await?;
    let mut res = respond::json(
        StatusCode::CREATED,
        &SignupResponse { tenant: out.tenant, user: out.user, tokens: TokenResponse::from(out.token) },
    )?;
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use actix_web::{App, test};
    use plinth_domain::values::Slug;
    use utoipa_actix_web::AppExt as _;
    use utoipa_actix_web::scope;

    use super::*;
    use crate::api::fallback::RouteTable;
    use crate::config::Config;
    use crate::startup::openapi_document;
    use crate::telemetry::metrics::MetricsEndpoint;
    use crate::{composition, shutdown};

    #[actix_web::test]
    async fn the_handler_itself_refuses_signup_off_the_platform_host() {
        let config = Config::from_lookup(|_| None).unwrap();
        let composed = composition::compose(&config).await.unwrap();
        let plinth = composed.plinth.clone();
        let state = web::Data::new(AppState {
            plinth: composed.plinth,
            base_domain: config.base_domain.clone(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            routes: Arc::new(RouteTable::from_openapi(&openapi_document())),
            shutdown: shutdown::channel().1,
            metrics: MetricsEndpoint::new(None),
            operators: Default::default(),
            probes: Default::default(),
        });
        // The handler alone, without the gate in front of it.
        let app = test::init_service(
            App::new().into_utoipa_app().app_data(state).service(scope("/v1").service(signup)).into_app(),
        )
        .await;
        let form = |slug: &str| {
            serde_json::json!({
                "tenant_slug": slug, "tenant_name": "Evil", "email": "ada@evil.test", "password": "correct horse battery",
            })
        };
        for host in ["demo.localhost", "nobody.localhost", "127.0.0.1", "elsewhere.example"] {
            let req = test::TestRequest::post()
                .uri("/v1/signup")
                .insert_header((header::HOST, host))
                .set_json(form("evil"))
                .to_request();
            assert_eq!(test::call_service(&app, req).await.status(), StatusCode::NOT_FOUND, "{host}");
        }
        let evil = Slug::parse("evil").unwrap();
        assert!(plinth.resolve_tenant(&evil).await.is_err(), "nothing was created");
        let req = test::TestRequest::post()
            .uri("/v1/signup")
            .insert_header((header::HOST, "localhost"))
            .set_json(form("good"))
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status(), StatusCode::CREATED);
    }
}
