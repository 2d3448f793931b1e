//! `POST /v1/signup` on the platform host: a tenant on the free plan and its owner.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

fn form(slug: &str) -> Value {
    json!({"tenant_slug": slug, "tenant_name": "Acme Inc.", "email": "ada@acme.test", "password": PASSWORD})
}

async fn signup(app: &TestApp, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "localhost:8080", "/v1/signup").json(body).send().await.unwrap()
}

/// Whether tenant `slug` exists, by its host.
async fn exists(app: &TestApp, slug: &str) -> bool {
    let res = app.on(Method::GET, slug, "/v1/tenant", None).send().await.unwrap();
    match res.status() {
        StatusCode::OK => true,
        _ => {
            assert_problem(res, 404, "tenant_not_found").await;
            false
        }
    }
}

/// Asserts a 422 `validation_failed` naming `field`, and that nothing was created.
async fn refused(app: &TestApp, body: Value, field: &str) {
    let res = signup(app, &body).await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, [field], "{body} -> {problem}");
    assert!(problem["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    if let Some(slug) = body["tenant_slug"].as_str()
        && slug.len() >= 3
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !["www", "api", "app", "admin", "static", "status"].contains(&slug)
    {
        assert!(!exists(app, slug).await, "a refused signup created {slug}");
    }
}

on_every_backend! {
    async fn signup_creates_a_free_tenant_and_its_owner_and_signs_the_owner_in(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let res = signup(&app, &form("acme")).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "content-type").as_deref(), Some("application/json"));
        let cc = header(&res, "cache-control").unwrap_or_default();
        assert!(!cc.contains("public"), "a token is never publicly cacheable: {cc}");
        let body: Value = res.json().await.unwrap();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{body}");
        let tenant = &body["tenant"];
        assert!(tenant["id"].as_str().is_some_and(|s| s.len() == 36), "{body}");
        assert_eq!(tenant["slug"], "acme");
        assert_eq!(tenant["name"], "Acme Inc.");
        assert_eq!(tenant["plan"], "free");
        assert_eq!(tenant.as_object().unwrap().len(), 4, "{tenant}");
        let user = &body["user"];
        assert!(user["id"].as_str().is_some_and(|s| s.len() == 36), "{body}");
        assert_eq!(user["email"], "ada@acme.test");
        assert_eq!(user["role"], "owner");
        assert_eq!(user["email_verified"], false, "a link to verify it is on its way");
        assert_eq!(user.as_object().unwrap().len(), 4, "no password hash, no tenant id: {user}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().is_some_and(|t| t.starts_with("plr_")), "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(token.split('.').count(), 3, "a JWT");

        let me: Value = app.on(Method::GET, "acme", "/v1/me", Some(token)).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["user"], *user);
        assert_eq!(me["tenant"], *tenant);
        let mut t: Value = app.on(Method::GET, "acme", "/v1/tenant", None).send().await.unwrap().json().await.unwrap();
        let limits = t.as_object_mut().unwrap().remove("limits");
        assert!(limits.is_some_and(|l| l.is_object()), "the tenant comes with its plan's limits");
        assert_eq!(t, *tenant);
        // The owner can log in with the password given.
        app.login("acme", "ada@acme.test").await;
    }

    async fn signup_trims_the_name_and_lowercases_the_email(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body =
            json!({"tenant_slug": "acme", "tenant_name": "  Acme  ", "email": " Ada@ACME.test ", "password": PASSWORD});
        let res = signup(&app, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["tenant"]["name"], "Acme");
        assert_eq!(body["user"]["email"], "ada@acme.test");
        app.login("acme", "ada@acme.test").await;
    }

    async fn a_taken_slug_is_a_conflict_and_leaves_the_first_tenant_as_it_was(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let first = app.signup("acme").await;
        let res = signup(
            &app,
            &json!({
                "tenant_slug": "acme", "tenant_name": "Impostor", "email": "eve@evil.test", "password": PASSWORD,
            }),
        )
        .await;
        let problem = assert_problem(res, 409, "conflict").await;
        let text = problem.to_string().to_lowercase();
        for leak in ["constraint", "duplicate", "insert", "sql", "owner@acme.test"] {
            assert!(!text.contains(leak), "{leak} in {problem}");
        }
        let t: Value = app.on(Method::GET, "acme", "/v1/tenant", None).send().await.unwrap().json().await.unwrap();
        assert_eq!(t["name"], "Tenant acme");
        assert_eq!(t["id"], first.tenant_id.as_str());
        let res = app
            .on(Method::POST, "acme", "/v1/auth/login", None)
            .json(&json!({"email": "eve@evil.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_credentials").await;
    }

    async fn the_same_email_may_own_several_tenants(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for slug in ["alpha", "bravo"] {
            let res = signup(
                &app,
                &json!({
                    "tenant_slug": slug, "tenant_name": slug, "email": "ada@example.test", "password": PASSWORD,
                }),
            )
            .await;
            assert_eq!(res.status(), StatusCode::CREATED, "{slug}");
        }
        let a = app.login("alpha", "ada@example.test").await;
        let b = app.login("bravo", "ada@example.test").await;
        let me_a: Value = app.on(Method::GET, "alpha", "/v1/me", Some(&a)).send().await.unwrap().json().await.unwrap();
        let me_b: Value = app.on(Method::GET, "bravo", "/v1/me", Some(&b)).send().await.unwrap().json().await.unwrap();
        assert_ne!(me_a["user"]["id"], me_b["user"]["id"]);
        assert_eq!(me_a["tenant"]["slug"], "alpha");
        assert_eq!(me_b["tenant"]["slug"], "bravo");
    }

    async fn reserved_and_malformed_slugs_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let long = "a".repeat(64);
        for slug in [
            "www",
            "api",
            "app",
            "admin",
            "static",
            "status",
            "ab",
            "-acme",
            "acme-",
            "Acme",
            "ac_me",
            "ac.me",
            "ac me",
            long.as_str(),
            "",
        ] {
            refused(&app, form(slug), "tenant_slug").await;
        }
        // 63 characters is still a slug.
        let res = signup(&app, &form(&"a".repeat(63))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    async fn passwords_must_be_10_to_256_characters(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for password in ["123456789".to_owned(), "x".repeat(257), String::new()] {
            let mut body = form("acme");
            body["password"] = json!(password);
            refused(&app, body, "password").await;
        }
        for (slug, password) in [("ten", "1234567890".to_owned()), ("max", "x".repeat(256))] {
            let mut body = form(slug);
            body["password"] = json!(password);
            assert_eq!(signup(&app, &body).await.status(), StatusCode::CREATED, "{slug}");
        }
    }

    async fn tenant_names_must_be_1_to_255_characters_after_trimming(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for name in [String::new(), "   ".into(), "\t\n ".into(), "x".repeat(256)] {
            let mut body = form("acme");
            body["tenant_name"] = json!(name);
            refused(&app, body, "tenant_name").await;
        }
        let mut body = form("acme");
        body["tenant_name"] = json!(format!("  {}  ", "é".repeat(255)));
        assert_eq!(signup(&app, &body).await.status(), StatusCode::CREATED);
    }

    async fn malformed_emails_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let long = format!("{}@example.test", "a".repeat(242));
        assert_eq!(long.len(), 255);
        for email in ["", "ada", "@acme.test", "ada@", "a@b@c.test", "a da@acme.test", long.as_str()] {
            let mut body = form("acme");
            body["email"] = json!(email);
            refused(&app, body, "email").await;
        }
    }

    async fn every_broken_field_is_named_at_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let res =
            signup(&app, &json!({"tenant_slug": "x", "tenant_name": " ", "email": "nope", "password": "short"})).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        let mut fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["email", "password", "tenant_name", "tenant_slug"]);
        assert!(!problem.to_string().contains("short"), "the password is never echoed: {problem}");
    }

    async fn a_missing_or_mistyped_field_is_a_validation_failure_naming_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let res = signup(&app, &json!({"tenant_slug": "acme", "tenant_name": "Acme", "email": "ada@acme.test"})).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("password"), "{problem}");
        let mut body = form("acme");
        body["tenant_name"] = json!(42);
        refused(&app, body, "tenant_name").await;
        assert!(!exists(&app, "acme").await);
    }

    async fn signup_is_only_served_on_the_platform_host(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        for host in ["acme.localhost", "nobody.localhost", "127.0.0.1", "example.com"] {
            let res = app.request(Method::POST, host, "/v1/signup").json(&form("other")).send().await.unwrap();
            assert_problem(res, 404, "not_found").await;
        }
        assert!(!exists(&app, "other").await);
    }
}
