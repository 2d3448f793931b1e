//! Platform routes: `/healthz`, `/readyz` and `/openapi.json` answer on any host and are never
//! rate-limited; the OpenAPI document lists every route of the contract.

use std::time::{Duration, Instant};

use plinth_testkit::{APP_PASSWORD, PrivateCluster};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, JWT_SECRET, TestApp, assert_problem, header};
use crate::on_every_backend;

/// Hosts of every kind: platform, tenant, unknown slug, IP literals, another domain, extra
/// labels, a reserved slug.
const ANY_HOSTS: &[&str] = &[
    "localhost",
    "localhost:8080",
    "acme.localhost",
    "nobody-here.localhost",
    "127.0.0.1",
    "127.0.0.1:8080",
    "[::1]:8080",
    "example.com",
    "a.b.acme.localhost",
    "www.localhost",
];

#[tokio::test]
async fn healthz_answers_ok_on_any_host() {
    let app = TestApp::spawn(Backend::Memory).await;
    app.signup("acme").await;
    for host in ANY_HOSTS {
        let res = app.request(Method::GET, host, "/healthz").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{host}");
        assert_eq!(header(&res, "content-type").as_deref(), Some("application/json"));
        assert!(header(&res, "x-request-id").is_some(), "{host}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"status": "ok"}), "{host}");
    }
}

#[tokio::test]
async fn openapi_json_answers_on_any_host() {
    let app = TestApp::spawn(Backend::Memory).await;
    for host in ANY_HOSTS {
        let res = app.request(Method::GET, host, "/openapi.json").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{host}");
        let doc: Value = res.json().await.unwrap();
        assert!(doc["paths"].is_object(), "{host}");
    }
}

on_every_backend! {
    async fn readyz_answers_200_on_any_host_when_every_dependency_answers(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for host in ANY_HOSTS {
            let res = app.request(Method::GET, host, "/readyz").send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{host}");
            assert!(header(&res, "x-request-id").is_some());
        }
    }
}

#[tokio::test]
async fn readyz_answers_503_naming_the_database_while_it_is_down_and_200_once_it_is_back() {
    let cluster = PrivateCluster::start();
    let admin = plinth_testkit::connect(&cluster.url("postgres", None, "postgres")).await;
    admin.batch_execute("CREATE DATABASE plinth").await.expect("create database");
    plinth_postgres::migrate::migrate(&cluster.url("postgres", None, "plinth"), Some(APP_PASSWORD))
        .await
        .expect("migrate");
    let app_url = cluster.url("plinth_app", Some(APP_PASSWORD), "plinth");
    let owner_url = cluster.url("postgres", None, "plinth");
    let app = TestApp::start(
        &[
            ("DATABASE_URL", &app_url),
            ("PLINTH_DATABASE_OWNER_URL", &owner_url),
            ("PLINTH_JWT_SECRET", JWT_SECRET),
            ("PLINTH_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("PLINTH_DB_POOL_TIMEOUT_MS", "500"),
            ("PLINTH_DB_STATEMENT_TIMEOUT_MS", "1000"),
        ],
        None,
    )
    .await;
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    cluster.stop();
    let started = Instant::now();
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "answered within the configured timeouts");
    assert!(header(&res, "retry-after").is_some(), "a 503 carries Retry-After");
    let body = assert_problem(res, 503, "service_unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("database"), "{body}");
    // Liveness touches no dependency.
    let res = app.request(Method::GET, "localhost", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "/readyz did not recover after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn platform_routes_are_never_rate_limited() {
    let app = TestApp::spawn_with(
        Backend::Memory,
        &[("PLINTH_IP_QUOTA", "1"), ("PLINTH_LOGIN_QUOTA", "1"), ("PLINTH_QUOTA_FREE", "1")],
    )
    .await;
    // Spend the IP quota on a tenant route first.
    let res = app.request(Method::GET, "nobody.localhost", "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.request(Method::GET, "nobody.localhost", "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..10 {
        for path in ["/healthz", "/readyz", "/openapi.json"] {
            let res = app.request(Method::GET, "localhost", path).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert!(header(&res, "ratelimit").is_none() && header(&res, "ratelimit-policy").is_none(), "{path}");
        }
    }
}

/// Every route of the contract that exists now, with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/openapi.json", &["get"]),
    ("/docs", &["get"]),
    ("/docs/redoc.standalone.js", &["get"]),
    ("/v1/signup", &["post"]),
    ("/v1/tenant", &["delete", "get"]),
    ("/v1/tenant/export", &["get"]),
    ("/admin/v1/tenants", &["get"]),
    ("/admin/v1/tenants/{slug}", &["delete", "get"]),
    ("/admin/v1/tenants/{slug}/plan", &["put"]),
    ("/admin/v1/tenants/{slug}/suspend", &["post"]),
    ("/admin/v1/tenants/{slug}/resume", &["post"]),
    ("/admin/v1/tenants/{slug}/restore", &["post"]),
    ("/admin/v1/tenants/{slug}/export", &["get"]),
    ("/v1/auth/login", &["post"]),
    ("/v1/auth/refresh", &["post"]),
    ("/v1/auth/logout", &["post"]),
    ("/v1/me", &["get"]),
    ("/v1/me/sessions", &["get"]),
    ("/v1/me/sessions/{id}", &["delete"]),
    ("/v1/me/password", &["put"]),
    ("/v1/me/verify-email", &["post"]),
    ("/v1/auth/password-reset", &["post"]),
    ("/v1/auth/password-reset/confirm", &["post"]),
    ("/v1/auth/verify-email", &["post"]),
    ("/v1/invitations", &["get", "post"]),
    ("/v1/invitations/{id}", &["delete"]),
    ("/v1/invitations/accept", &["post"]),
    ("/v1/users", &["get", "post"]),
    ("/v1/users/{id}", &["delete", "patch"]),
    ("/v1/users/{id}/sessions", &["delete"]),
    ("/v1/projects", &["get", "post"]),
    ("/v1/projects/{id}", &["delete", "get", "patch"]),
    ("/v1/api-keys", &["get", "post"]),
    ("/v1/api-keys/{id}", &["delete"]),
    ("/v1/audit-log", &["get"]),
    ("/v1/audit-log/verify", &["get"]),
    ("/v1/webhooks", &["get", "post"]),
    ("/v1/webhooks/{id}", &["delete", "get", "patch"]),
    ("/v1/webhooks/{id}/deliveries", &["get"]),
    ("/v1/webhooks/{id}/rotate-secret", &["post"]),
    ("/v1/webhooks/{id}/test", &["post"]),
    ("/v1/webhooks/{id}/recover", &["post"]),
    ("/v1/webhooks/{id}/deliveries/{delivery_id}/retry", &["post"]),
    ("/v1/events", &["get"]),
    ("/v1/events/{id}", &["get"]),
];

/// Routes of the contract that don't exist yet; the document may list them once they do.
const LATER: &[&str] = &["/metrics"];

#[tokio::test]
async fn the_openapi_document_is_openapi_3_1_and_lists_every_route_of_the_contract() {
    let app = TestApp::spawn(Backend::Memory).await;
    let res = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type").as_deref(), Some("application/json"));
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is missing"));
        let mut documented: Vec<&str> =
            ["get", "post", "put", "patch", "delete"].into_iter().filter(|m| item.get(*m).is_some()).collect();
        documented.sort_unstable();
        assert_eq!(&documented, methods, "{path}");
    }
    for path in paths.keys() {
        let known = ROUTES.iter().any(|(p, _)| p == path) || LATER.contains(&path.as_str());
        assert!(known, "{path} is not a route of the contract");
    }
}

#[tokio::test]
async fn every_documented_operation_has_an_id_and_the_bearer_routes_name_the_scheme() {
    let app = TestApp::spawn(Backend::Memory).await;
    let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.push(id.to_owned());
            let secured = op.get("security").is_some();
            if path.starts_with("/admin/") {
                assert_eq!(op["security"], serde_json::json!([{"operatorToken": []}]), "{method} {path}");
                assert_eq!(op["tags"], serde_json::json!(["operator"]), "{method} {path}");
                continue;
            }
            let needs_token = path.starts_with("/v1/")
                && (path != "/v1/tenant" || method == "delete")
                && ![
                    "/v1/signup",
                    "/v1/auth/login",
                    "/v1/auth/refresh",
                    "/v1/auth/password-reset",
                    "/v1/auth/password-reset/confirm",
                    "/v1/auth/verify-email",
                    "/v1/invitations/accept",
                ]
                .contains(&path.as_str());
            assert_eq!(secured, needs_token, "{method} {path}");
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "operation ids are unique");
}

#[tokio::test]
async fn without_a_token_the_metrics_answer_only_this_machine() {
    let app = TestApp::spawn(Backend::Memory).await;
    let res = app.request(Method::GET, "localhost", "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The same request relayed by a proxy on this machine for someone elsewhere.
    let res = app
        .request(Method::GET, "localhost", "/metrics")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
}
