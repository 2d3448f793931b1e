//! Hosts and tenants: `{slug}.{base_domain}` names a tenant (port, case and one trailing dot
//! ignored); any other host on a tenant route is `tenant_not_found`, but an undeclared method on
//! a known path is 405 on every host.

use std::io::{Read as _, Write as _};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

/// Hosts that name no tenant, with why.
const NO_TENANT: &[(&str, &str)] = &[
    ("nobody.localhost", "an unknown slug"),
    ("127.0.0.1", "an IPv4 literal"),
    ("127.0.0.1:8080", "an IPv4 literal with a port"),
    ("[::1]:8080", "an IPv6 literal"),
    ("a.acme.localhost", "extra labels"),
    ("acme.example.com", "another domain"),
    ("acmelocalhost", "no dot before the base domain"),
    ("localhost", "the platform host"),
    ("localhost:8080", "the platform host with a port"),
    ("www.localhost", "a reserved slug"),
    ("admin.localhost", "a reserved slug"),
    ("acme.localhost..", "two trailing dots"),
    ("acme.localhost:http", "a port that is not a number"),
    ("ac.localhost", "a label too short to be a slug"),
];

on_every_backend! {
    async fn a_host_that_names_no_tenant_gets_tenant_not_found_on_every_tenant_route(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        for (host, why) in NO_TENANT {
            let res = app.request(Method::GET, host, "/v1/tenant").send().await.unwrap();
            let body = assert_problem(res, 404, "tenant_not_found").await;
            assert!(!body.to_string().contains("acme"), "{why}: no tenant's data in {body}");
            let res = app
                .request(Method::POST, host, "/v1/auth/login")
                .json(&json!({"email": "owner@acme.test", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_problem(res, 404, "tenant_not_found").await;
            // A valid token of a real tenant does not make another host a tenant.
            let res = app.request(Method::GET, host, "/v1/projects").bearer_auth(&token).send().await.unwrap();
            assert_problem(res, 404, "tenant_not_found").await;
        }
    }

    async fn a_tenant_host_is_matched_whatever_its_case_port_or_one_trailing_dot(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let signup = app.signup("acme").await;
        for host in [
            "acme.localhost",
            "ACME.LOCALHOST",
            "AcMe.LocalHost",
            "acme.localhost:8080",
            "acme.localhost.",
            "Acme.Localhost.:443",
        ] {
            let res = app.request(Method::GET, host, "/v1/tenant").send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{host}");
            let tenant: Value = res.json().await.unwrap();
            assert_eq!(tenant["slug"], "acme", "{host}");
            assert_eq!(tenant["id"], signup.tenant_id.as_str(), "{host}");
            let res = app.request(Method::GET, host, "/v1/me").bearer_auth(&signup.token).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "the token is valid on {host}");
            let res = app
                .request(Method::POST, host, "/v1/auth/login")
                .json(&json!({"email": "owner@acme.test", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "login on {host}");
        }
    }

    async fn each_host_names_its_own_tenant(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let a = app.signup("alpha").await;
        let b = app.signup("bravo").await;
        for (slug, id) in [("alpha", &a.tenant_id), ("bravo", &b.tenant_id)] {
            let tenant: Value =
                app.on(Method::GET, slug, "/v1/tenant", None).send().await.unwrap().json().await.unwrap();
            assert_eq!(tenant["id"], id.as_str());
            assert_eq!(tenant["slug"], slug);
            assert_eq!(tenant["name"], format!("Tenant {slug}"));
            assert_eq!(tenant["plan"], "free");
        }
    }
}

/// Sends `GET path HTTP/1.0` with no `Host` header at all; returns the status and the body.
fn without_host(port: u16, path: &str) -> (u16, Value) {
    let (status, _, body) = without_host_as(port, "GET", path);
    (status, body)
}

/// Sends `METHOD path HTTP/1.0` with no `Host` header at all; returns the status, the `Allow`
/// header and the body.
fn without_host_as(port: u16, method: &str, path: &str) -> (u16, Option<String>, Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // An empty body said as such: actix refuses a POST that leaves its length open.
    stream.write_all(format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let allow = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("allow")))
        .map(|(_, v)| v.trim().to_owned());
    // A HEAD answer has no body.
    (status, allow, serde_json::from_str(body).unwrap_or(Value::Null))
}

on_every_backend! {
    async fn an_undeclared_method_on_a_known_path_is_405_with_allow_on_every_host(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let known = [
            (Method::POST, "/v1/tenant", "DELETE, GET"),
            (Method::GET, "/v1/signup", "POST"),
            (Method::DELETE, "/v1/me", "GET"),
            (Method::PUT, "/v1/projects", "GET, POST"),
            (Method::PUT, "/v1/projects/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d", "DELETE, GET, PATCH"),
            (Method::POST, "/v1/webhooks/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d/deliveries", "GET"),
            (Method::HEAD, "/v1/users", "GET, POST"),
            (Method::POST, "/healthz", "GET"),
        ];
        // The platform host, a tenant's, one that names no tenant, and hosts outside the base
        // domain; with and without the tenant's token.
        for host in ["localhost", "acme.localhost", "nobody.localhost", "127.0.0.1", "example.com"] {
            for bearer in [None, Some(token.as_str())] {
                for (method, path, allow) in &known {
                    let mut req = app.request(method.clone(), host, path);
                    if let Some(t) = bearer {
                        req = req.bearer_auth(t);
                    }
                    let res = req.send().await.unwrap();
                    let what = format!("{method} {host}{path} (token: {})", bearer.is_some());
                    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{what}");
                    assert_eq!(header(&res, "allow").as_deref(), Some(*allow), "{what}");
                    if *method != Method::HEAD {
                        assert_problem(res, 405, "method_not_allowed").await;
                    }
                }
            }
        }
        let port = app.port();
        for (method, path, allow) in known {
            let name = method.as_str().to_owned();
            let (status, got, body) =
                tokio::task::spawn_blocking(move || without_host_as(port, &name, path)).await.unwrap();
            assert_eq!((status, got.as_deref()), (405, Some(allow)), "{method} {path} without a host");
            if method != Method::HEAD {
                assert_eq!(body["code"], "method_not_allowed", "{method} {path} without a host");
            }
        }
    }
}

#[tokio::test]
async fn a_request_without_any_host_gets_tenant_not_found_but_platform_routes_still_answer() {
    let app = TestApp::spawn(Backend::Memory).await;
    app.signup("acme").await;
    let port = app.port();
    let (status, body) = tokio::task::spawn_blocking(move || without_host(port, "/v1/tenant")).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(body["code"], "tenant_not_found");
    let (status, body) = tokio::task::spawn_blocking(move || without_host(port, "/healthz")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn the_base_domain_comes_from_the_configuration() {
    let app = TestApp::spawn_with(Backend::Memory, &[("PLINTH_BASE_DOMAIN", "Plinth.Example.")]).await;
    let res = app
        .request(Method::POST, "plinth.example:8080", "/v1/signup")
        .json(&json!({"tenant_slug": "acme", "tenant_name": "Acme", "email": "ada@acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app.request(Method::GET, "acme.plinth.example", "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.request(Method::GET, "acme.localhost", "/v1/tenant").send().await.unwrap();
    assert_problem(res, 404, "tenant_not_found").await;
    let res = app
        .request(Method::POST, "localhost", "/v1/signup")
        .json(&json!({"tenant_slug": "other", "tenant_name": "Other", "email": "ada@other.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    assert!(header(&app.request(Method::GET, "x", "/healthz").send().await.unwrap(), "x-request-id").is_some());
}
