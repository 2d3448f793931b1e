//! Common headers: `X-Request-Id` on every response, `Cache-Control` on authenticated ones,
//! the public tenant document, and `ETag`s with conditional GETs on every successful `/v1` GET.

use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, header};
use crate::on_every_backend;

fn plain_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Requests of every kind of answer: platform, success, 4xx from the gate, the router and a
/// handler.
fn assorted(app: &TestApp, token: &str) -> Vec<(&'static str, RequestBuilder)> {
    vec![
        ("healthz", app.request(Method::GET, "localhost", "/healthz")),
        ("openapi", app.request(Method::GET, "127.0.0.1", "/openapi.json")),
        ("tenant", app.on(Method::GET, "acme", "/v1/tenant", None)),
        ("list", app.on(Method::GET, "acme", "/v1/projects", Some(token))),
        ("create", app.on(Method::POST, "acme", "/v1/projects", Some(token)).json(&json!({"name": "x"}))),
        ("unknown host", app.request(Method::GET, "nobody.localhost", "/v1/tenant")),
        ("no token", app.on(Method::GET, "acme", "/v1/me", None)),
        ("unknown path", app.request(Method::GET, "localhost", "/nope")),
        ("unknown /v1 path", app.on(Method::GET, "acme", "/v1/nope", Some(token))),
        ("405", app.on(Method::PUT, "acme", "/v1/projects", Some(token))),
        ("415", app.on(Method::POST, "acme", "/v1/projects", Some(token)).body(r#"{"name":"x"}"#)),
        ("422", app.on(Method::POST, "acme", "/v1/projects", Some(token)).json(&json!({"name": ""}))),
        ("signup on a tenant host", app.on(Method::POST, "acme", "/v1/signup", None).json(&json!({}))),
    ]
}

#[tokio::test]
async fn every_response_carries_a_new_request_id_when_the_client_sent_none() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    let mut ids = Vec::new();
    for (what, req) in assorted(&app, &token) {
        let res = req.send().await.unwrap();
        let id = header(&res, "x-request-id").unwrap_or_else(|| panic!("{what} has no X-Request-Id"));
        assert!(plain_id(&id), "{what}: {id}");
        ids.push(id);
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every request gets its own id");
}

#[tokio::test]
async fn a_plain_client_request_id_of_1_to_128_characters_is_kept_on_every_response() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    let longest = "a".repeat(128);
    for id in ["x", "abc-123_DEF.ghi", "0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d", longest.as_str()] {
        for (what, req) in assorted(&app, &token) {
            let res = req.header("x-request-id", id).send().await.unwrap();
            assert_eq!(header(&res, "x-request-id").as_deref(), Some(id), "{what}");
        }
    }
}

#[tokio::test]
async fn any_other_client_request_id_is_replaced_by_a_new_one() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    let too_long = "a".repeat(129);
    let bad: Vec<HeaderValue> = [
        HeaderValue::from_static(""),
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_static("a b"),
        HeaderValue::from_static("a/b"),
        HeaderValue::from_static("id\"><script>"),
        HeaderValue::from_static("a,b"),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
    ]
    .into();
    for value in bad {
        for (what, req) in assorted(&app, &token) {
            let res = req.header("x-request-id", value.clone()).send().await.unwrap();
            let id = header(&res, "x-request-id").unwrap_or_else(|| panic!("{what}: no id"));
            assert_ne!(id.as_bytes(), value.as_bytes(), "{what}");
            assert!(plain_id(&id), "{what}: {id}");
        }
    }
}

on_every_backend! {
    async fn authenticated_responses_are_private_and_never_public(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let p = app.project("acme", &owner.token, "Apollo").await;
        let path = format!("/v1/projects/{}", p["id"].as_str().unwrap());
        let (member_id, _) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let token = owner.token.as_str();
        let successes: Vec<(&str, RequestBuilder)> = vec![
            ("me", app.on(Method::GET, "acme", "/v1/me", Some(token))),
            ("tenant with a token", app.on(Method::GET, "acme", "/v1/tenant", Some(token))),
            ("users", app.on(Method::GET, "acme", "/v1/users", Some(token))),
            ("projects", app.on(Method::GET, "acme", "/v1/projects", Some(token))),
            ("project", app.on(Method::GET, "acme", &path, Some(token))),
            ("create", app.on(Method::POST, "acme", "/v1/projects", Some(token)).json(&json!({"name": "x"}))),
            ("rename", app.on(Method::PATCH, "acme", &path, Some(token)).json(&json!({"name": "y"}))),
            (
                "role",
                app.on(Method::PATCH, "acme", &format!("/v1/users/{member_id}"), Some(token))
                    .json(&json!({"role": "member"})),
            ),
            ("delete", app.on(Method::DELETE, "acme", &path, Some(token))),
        ];
        for (what, req) in successes {
            let res = req.send().await.unwrap();
            assert!(res.status().is_success(), "{what}: {}", res.status());
            let cc = header(&res, "cache-control").unwrap_or_else(|| panic!("{what}: no Cache-Control"));
            assert!(cc.split(',').any(|d| d.trim() == "private"), "{what}: {cc}");
            assert!(!cc.contains("public"), "{what}: {cc}");
        }
        // Errors of authenticated requests are private too, and not stored at all.
        let failures: Vec<(&str, RequestBuilder)> = vec![
            ("404", app.on(Method::GET, "acme", &path, Some(token))),
            ("400", app.on(Method::GET, "acme", "/v1/projects?limit=0", Some(token))),
            ("422", app.on(Method::POST, "acme", "/v1/projects", Some(token)).json(&json!({"name": ""}))),
        ];
        for (what, req) in failures {
            let res = req.send().await.unwrap();
            assert!(res.status().is_client_error(), "{what}");
            let cc = header(&res, "cache-control").unwrap_or_default();
            let directives: Vec<&str> = cc.split(',').map(str::trim).collect();
            assert!(directives.contains(&"private") && directives.contains(&"no-store"), "{what}: {cc}");
            assert!(!cc.contains("public"), "{what}: {cc}");
        }
    }

    async fn the_tenant_document_is_public_for_a_minute_varies_by_host_and_revalidates(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        app.signup("bravo").await;
        let res = app.on(Method::GET, "acme", "/v1/tenant", None).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "cache-control").as_deref(), Some("public, max-age=60"));
        assert_eq!(header(&res, "vary").as_deref(), Some("Host"));
        assert_eq!(header(&res, "content-type").as_deref(), Some("application/json"));
        let etag = header(&res, "etag").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "a strong ETag: {etag}");
        let body: Value = res.json().await.unwrap();

        let res = app.on(Method::GET, "acme", "/v1/tenant", None).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&res, "etag").as_deref(), Some(etag.as_str()));
        assert_eq!(header(&res, "cache-control").as_deref(), Some("public, max-age=60"));
        assert_eq!(header(&res, "vary").as_deref(), Some("Host"));
        assert!(res.bytes().await.unwrap().is_empty(), "a 304 has no body");

        for matching in [format!("W/{etag}"), format!("\"nope\", {etag}"), "*".to_owned()] {
            let res = app
                .on(Method::GET, "acme", "/v1/tenant", None)
                .header("if-none-match", &matching)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{matching}");
        }
        let res =
            app.on(Method::GET, "acme", "/v1/tenant", None).header("if-none-match", "\"nope\"").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap(), body);

        // Another host is another document: acme's ETag doesn't match bravo's.
        let res = app.on(Method::GET, "bravo", "/v1/tenant", None).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_ne!(header(&res, "etag").unwrap(), etag);
    }

    async fn every_successful_v1_get_carries_an_etag_that_a_conditional_get_answers_with_304(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let p = app.project("acme", &owner.token, "Apollo").await;
        let project = format!("/v1/projects/{}", p["id"].as_str().unwrap());
        for path in ["/v1/tenant", "/v1/me", "/v1/users", "/v1/projects", "/v1/projects?limit=1", project.as_str()] {
            let res = app.on(Method::GET, "acme", path, Some(&owner.token)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let etag = header(&res, "etag").unwrap_or_else(|| panic!("{path} has no ETag"));
            let again = app.on(Method::GET, "acme", path, Some(&owner.token)).send().await.unwrap();
            assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()), "{path}: stable while nothing changes");
            let res = app
                .on(Method::GET, "acme", path, Some(&owner.token))
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(header(&res, "etag").as_deref(), Some(etag.as_str()), "{path}");
            let cc = header(&res, "cache-control").unwrap_or_default();
            assert!(cc.contains("private") && !cc.contains("public"), "{path}: {cc}");
            assert!(header(&res, "x-request-id").is_some());
            assert!(res.bytes().await.unwrap().is_empty(), "{path}: a 304 has no body");
        }
        // A change makes the old ETag stale.
        let res = app.on(Method::GET, "acme", &project, Some(&owner.token)).send().await.unwrap();
        let etag = header(&res, "etag").unwrap();
        let res = app
            .on(Method::PATCH, "acme", &project, Some(&owner.token))
            .json(&json!({"name": "Artemis"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app
            .on(Method::GET, "acme", &project, Some(&owner.token))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["name"], "Artemis");
    }
}
