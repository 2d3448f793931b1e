//! Errors as problem documents: 404 for unknown paths, 405 with `Allow`, 413, 415, 400 for
//! malformed JSON and 422 naming the field.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

const LIMIT: usize = 64 * 1024;

/// A JSON body `{"name":"x"}` padded with spaces to exactly `len` bytes.
fn padded(len: usize) -> Vec<u8> {
    let mut body = br#"{"name":"x""#.to_vec();
    body.resize(len - 1, b' ');
    body.push(b'}');
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn a_known_path_with_an_unknown_method_is_405_with_allow() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    for (method, host, path, allow) in [
        (Method::POST, "localhost", "/healthz", "GET"),
        (Method::DELETE, "example.com", "/readyz", "GET"),
        (Method::PUT, "localhost", "/openapi.json", "GET"),
        (Method::GET, "localhost", "/v1/signup", "POST"),
        (Method::POST, "acme.localhost", "/v1/tenant", "DELETE, GET"),
        (Method::GET, "acme.localhost", "/v1/auth/login", "POST"),
        (Method::DELETE, "acme.localhost", "/v1/me", "GET"),
        (Method::PUT, "acme.localhost", "/v1/users", "GET, POST"),
        (Method::GET, "acme.localhost", "/v1/users/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d", "DELETE, PATCH"),
        (Method::DELETE, "acme.localhost", "/v1/projects", "GET, POST"),
        (Method::PUT, "acme.localhost", "/v1/projects/anything", "DELETE, GET, PATCH"),
        (Method::OPTIONS, "acme.localhost", "/v1/projects", "GET, POST"),
    ] {
        let res = app.request(method.clone(), host, path).bearer_auth(&token).send().await.unwrap();
        assert_eq!(header(&res, "allow").as_deref(), Some(allow), "{method} {path}");
        assert_problem(res, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn an_unknown_path_is_404_not_found() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    for (method, host, path) in [
        (Method::GET, "localhost", "/"),
        (Method::GET, "localhost", "/nope"),
        (Method::POST, "127.0.0.1", "/healthz/extra"),
        (Method::GET, "acme.localhost", "/v1/nope"),
        (Method::GET, "acme.localhost", "/v1/projects/a/b"),
        (Method::GET, "acme.localhost", "/v1/projects/"),
        (Method::GET, "acme.localhost", "/v2/projects"),
    ] {
        let res = app.request(method.clone(), host, path).bearer_auth(&token).send().await.unwrap();
        assert!(header(&res, "allow").is_none(), "{path}");
        assert_problem(res, 404, "not_found").await;
    }
}

on_every_backend! {
    async fn a_body_over_64_kib_is_413_and_one_of_exactly_64_kib_is_accepted(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let res = app
            .on(Method::POST, "acme", "/v1/projects", Some(&token))
            .header("content-type", "application/json")
            .body(padded(LIMIT + 1))
            .send()
            .await
            .unwrap();
        assert_problem(res, 413, "payload_too_large").await;
        let res = app
            .on(Method::PATCH, "acme", "/v1/projects/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d", Some(&token))
            .header("content-type", "application/json")
            .body(padded(LIMIT + 1))
            .send()
            .await
            .unwrap();
        assert_problem(res, 413, "payload_too_large").await;
        let res = app
            .request(Method::POST, "localhost", "/v1/signup")
            .header("content-type", "application/json")
            .body(padded(4 * LIMIT))
            .send()
            .await
            .unwrap();
        assert_problem(res, 413, "payload_too_large").await;
        assert_eq!(app.project_count("acme", &token).await, 0);
        let res = app
            .on(Method::POST, "acme", "/v1/projects", Some(&token))
            .header("content-type", "application/json")
            .body(padded(LIMIT))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(app.project_count("acme", &token).await, 1);
    }

    async fn a_body_without_a_json_content_type_is_415_and_changes_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonx"),
            Some("json"),
        ] {
            let mut req = app.on(Method::POST, "acme", "/v1/projects", Some(&token)).body(r#"{"name":"Apollo"}"#);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            assert_problem(req.send().await.unwrap(), 415, "unsupported_media_type").await;
        }
        let res = app.request(Method::POST, "localhost", "/v1/signup").body("{}").send().await.unwrap();
        assert_problem(res, 415, "unsupported_media_type").await;
        let res = app.on(Method::POST, "acme", "/v1/auth/login", None).body("{}").send().await.unwrap();
        assert_problem(res, 415, "unsupported_media_type").await;
        assert_eq!(app.project_count("acme", &token).await, 0);
        // JSON with parameters, in any case, and a +json type are JSON.
        for ct in ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"] {
            let res = app
                .on(Method::POST, "acme", "/v1/projects", Some(&token))
                .header("content-type", ct)
                .body(r#"{"name":"Apollo"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED, "{ct}");
        }
    }

    async fn malformed_json_is_400_bad_request_and_changes_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        for body in
            ["", "{", r#"{"name": "x""#, "not json", r#"{"name": 'x'}"#, r#"{"name": "x"} trailing"#, "\u{feff}{}"]
        {
            let res = app
                .on(Method::POST, "acme", "/v1/projects", Some(&token))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body:?}");
            let problem = assert_problem(res, 400, "bad_request").await;
            assert!(problem.get("errors").is_none(), "{body:?}: {problem}");
        }
        let res = app
            .request(Method::POST, "localhost", "/v1/signup")
            .header("content-type", "application/json")
            .body("{\"tenant_slug\":")
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "bad_request").await;
        assert_eq!(app.project_count("acme", &token).await, 0);
    }

    async fn well_formed_json_of_the_wrong_shape_is_422_naming_the_field(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        for (body, field) in
            [(json!({"name": 1}), "name"), (json!({"name": true}), "name"), (json!({"name": ""}), "name")]
        {
            let res = app.on(Method::POST, "acme", "/v1/projects", Some(&token)).json(&body).send().await.unwrap();
            let problem = assert_problem(res, 422, "validation_failed").await;
            let errors = problem["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{problem}");
            assert_eq!(errors[0]["field"], field, "{problem}");
            assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty() && !m.contains("line")), "{problem}");
        }
        for body in [json!([1]), json!("name"), json!(null), json!(7)] {
            let res = app.on(Method::POST, "acme", "/v1/projects", Some(&token)).json(&body).send().await.unwrap();
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert!(problem["errors"][0]["field"].is_string(), "{problem}");
        }
        assert_eq!(app.project_count("acme", &token).await, 0);
    }

    async fn no_error_body_reveals_sql_internals_or_secrets(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let nasty = "'; DROP TABLE projects; --";
        let p = app.project("acme", &owner.token, nasty).await;
        assert_eq!(p["name"], nasty, "stored as given");
        let user = json!({"email": "owner@acme.test", "password": PASSWORD, "role": "admin"});
        let tenant = json!({"tenant_slug": "acme", "tenant_name": "x", "email": "a@b.test", "password": PASSWORD});
        let token = Some(owner.token.as_str());
        let mut bodies: Vec<Value> = Vec::new();
        for req in [
            app.on(Method::GET, "acme", &format!("/v1/projects/{nasty}"), token),
            app.on(Method::GET, "acme", "/v1/projects?cursor=%27%3B%20SELECT%201", token),
            app.on(Method::POST, "acme", "/v1/users", token).json(&user),
            app.request(Method::POST, "localhost", "/v1/signup").json(&tenant),
            app.on(Method::GET, "acme", "/v1/me", Some("eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")),
        ] {
            let res = req.send().await.unwrap();
            assert!(res.status().is_client_error());
            bodies.push(res.json().await.unwrap());
        }
        for body in bodies {
            let text = body.to_string().to_lowercase();
            for leak in [
                "select",
                "insert",
                "constraint",
                "duplicate key",
                "relation",
                "panicked",
                "backtrace",
                "argon2",
                "secret",
                "eyj",
                "correct horse",
            ] {
                assert!(!text.contains(leak), "{leak} in {body}");
            }
        }
    }
}
