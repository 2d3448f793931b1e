//! Login, `/v1/me` and bearer tokens: which tokens are valid where.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plinth_domain::clock::{ManualClock, SystemClock};
use plinth_domain::ports::TokenService as _;
use plinth_domain::values::Role;
use plinth_jwt::{JwtConfig, JwtTokens, KeySource};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, JWT_SECRET, PASSWORD, TestApp, assert_problem, header, sid_of};
use crate::on_every_backend;

/// A token as plinth would issue it, signed with `secret`, for `iss`/`aud`.
fn mint(secret: &str, issuer: &str, audience: &str, user: &str, tenant: &str, role: Role, sid: &str) -> String {
    let tokens = JwtTokens::new(
        JwtConfig {
            keys: KeySource::hs256(secret.as_bytes().to_vec()),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl: Duration::from_secs(600),
        },
        Arc::new(SystemClock::new()),
    )
    .unwrap();
    tokens.issue(user.parse().unwrap(), tenant.parse().unwrap(), role, 0, sid.parse().unwrap()).unwrap().token
}

async fn login(app: &TestApp, slug: &str, email: &str, password: &str) -> reqwest::Response {
    app.on(Method::POST, slug, "/v1/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, slug: &str, token: &str) -> reqwest::Response {
    app.on(Method::GET, slug, "/v1/me", Some(token)).send().await.unwrap()
}

/// Asserts `res` is 401 `invalid_token` with a `WWW-Authenticate: Bearer …` challenge.
async fn assert_invalid_token(res: reqwest::Response, why: &str) {
    let challenge = header(&res, "www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{why}: {challenge:?}");
    let body = assert_problem(res, 401, "invalid_token").await;
    assert!(!body.to_string().contains("eyJ"), "{why}: the token is not echoed");
}

on_every_backend! {
    async fn login_returns_a_bearer_token_that_works_on_the_tenant_host(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        let res = login(&app, "acme", "owner@acme.test", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
        let body: Value = res.json().await.unwrap();
        assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().unwrap().starts_with("plr_"), "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(me(&app, "acme", token).await.status(), StatusCode::OK);
    }

    async fn login_matches_the_email_whatever_its_case_and_surrounding_spaces(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        let res = login(&app, "acme", "  OWNER@Acme.TEST ", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    async fn an_unknown_email_and_a_wrong_password_get_the_same_answer(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        app.signup("bravo").await;
        let wrong_password = login(&app, "acme", "owner@acme.test", "not the right password").await;
        assert!(header(&wrong_password, "www-authenticate").is_none(), "a login failure is not a bearer challenge");
        let wrong_password = assert_problem(wrong_password, 401, "invalid_credentials").await;
        for (slug, email, password) in [
            ("acme", "nobody@acme.test", PASSWORD),
            ("acme", "owner@bravo.test", PASSWORD), // a user of another tenant
            ("bravo", "owner@acme.test", PASSWORD),
            ("acme", "owner@acme.test", "short"), // too short to be anyone's password
            ("acme", "not an email", PASSWORD),
            ("acme", "owner@acme.test", ""),
        ] {
            let res = login(&app, slug, email, password).await;
            let body = assert_problem(res, 401, "invalid_credentials").await;
            assert_eq!(body, wrong_password, "{email} on {slug}");
        }
    }

    async fn me_describes_the_caller_and_its_tenant(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (member_id, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let res = me(&app, "acme", &member).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(header(&res, "etag").is_some());
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body,
            json!({
                "user": {"id": member_id, "email": "mia@acme.test", "role": "member", "email_verified": false},
                "tenant": {"id": owner.tenant_id, "slug": "acme", "name": "Tenant acme", "plan": "free"},
            })
        );
        let body: Value = me(&app, "acme", &owner.token).await.json().await.unwrap();
        assert_eq!(body["user"], json!({"id": owner.user_id, "email": "owner@acme.test", "role": "owner", "email_verified": false}));
    }

    async fn a_request_without_a_bearer_token_is_unauthorized_with_a_bearer_challenge(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        for (method, path) in [
            (Method::GET, "/v1/me"),
            (Method::GET, "/v1/users"),
            (Method::GET, "/v1/projects"),
            (Method::GET, "/v1/projects/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d"),
            (Method::DELETE, "/v1/users/0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d"),
        ] {
            for auth in [None, Some("Basic b3duZXJAYWNtZS50ZXN0OnBhc3N3b3Jk"), Some("Bearer "), Some("Bearer")] {
                let mut req = app.on(method.clone(), "acme", path, None);
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let res = req.send().await.unwrap();
                assert_eq!(header(&res, "www-authenticate").as_deref(), Some("Bearer"), "{method} {path} {auth:?}");
                assert_problem(res, 401, "unauthorized").await;
            }
        }
        let res = app.on(Method::POST, "acme", "/v1/projects", None).json(&json!({"name": "x"})).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
    }

    async fn garbage_tampered_and_unsigned_tokens_are_invalid(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let parts: Vec<&str> = owner.token.split('.').collect();
        // Another signature: flip the signature's first character.
        let sig = parts[2];
        let flipped = match sig.strip_prefix('A') {
            Some(rest) => format!("B{rest}"),
            None => format!("A{}", &sig[1..]),
        };
        let bad_signature = format!("{}.{}.{flipped}", parts[0], parts[1]);
        // Claims changed under the original signature: another role.
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["role"], "owner");
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 1);
        let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        // Unsigned (`alg: none`) with the same claims.
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        // HS512 named in the header, HS256's signature kept.
        let hs512 = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#), parts[1], parts[2]);
        let huge = format!("{}.{}.{}", parts[0], "a".repeat(5000), parts[2]);
        for (why, token) in [
            ("garbage", "not-a-token".to_owned()),
            ("three dots of nothing", "..".to_owned()),
            ("bad signature", bad_signature),
            ("tampered claims", tampered),
            ("alg none", none),
            ("another algorithm", hs512),
            ("far too long", huge),
        ] {
            assert_invalid_token(me(&app, "acme", &token).await, why).await;
        }
        assert_eq!(me(&app, "acme", &owner.token).await.status(), StatusCode::OK, "the real token still works");
    }

    async fn a_token_is_valid_only_on_its_own_tenants_host(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let acme = app.signup("acme").await;
        let bravo = app.signup("bravo").await;
        app.project("bravo", &bravo.token, "Secret plans").await;
        assert_invalid_token(me(&app, "bravo", &acme.token).await, "acme's token on bravo").await;
        let res = app.on(Method::GET, "bravo", "/v1/projects", Some(&acme.token)).send().await.unwrap();
        assert_invalid_token(res, "acme's token listing bravo's projects").await;
        let res = app
            .on(Method::POST, "bravo", "/v1/projects", Some(&acme.token))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_invalid_token(res, "acme's token creating in bravo").await;
        assert_eq!(app.project_count("bravo", &bravo.token).await, 1);
    }

    async fn tokens_signed_with_another_key_or_for_another_issuer_or_audience_are_invalid(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_JWT_SECRET", JWT_SECRET)]).await;
        let owner = app.signup("acme").await;
        let (u, t) = (owner.user_id.as_str(), owner.tenant_id.as_str());
        let sid = sid_of(&owner.token);
        let sid = sid.as_str();
        // The mint is right: with the app's key, issuer and audience its token works.
        let genuine = mint(JWT_SECRET, "plinth", "plinth-api", u, t, Role::Owner, sid);
        assert_eq!(me(&app, "acme", &genuine).await.status(), StatusCode::OK);
        for (why, token) in [
            ("another key", mint("another-secret-of-at-least-32-bytes!!", "plinth", "plinth-api", u, t, Role::Owner, sid)),
            ("another issuer", mint(JWT_SECRET, "evil", "plinth-api", u, t, Role::Owner, sid)),
            ("another audience", mint(JWT_SECRET, "plinth", "other-api", u, t, Role::Owner, sid)),
            ("another role than the user's", mint(JWT_SECRET, "plinth", "plinth-api", u, t, Role::Admin, sid)),
            (
                "a session that does not exist",
                mint(JWT_SECRET, "plinth", "plinth-api", u, t, Role::Owner, &uuid::Uuid::now_v7().to_string()),
            ),
            (
                "a user that does not exist",
                mint(JWT_SECRET, "plinth", "plinth-api", "0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d", t, Role::Owner, sid),
            ),
        ] {
            assert_invalid_token(me(&app, "acme", &token).await, why).await;
        }
    }

    async fn a_stale_token_fails_while_a_fresh_one_works(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (id, admin) = app.user("acme", &owner.token, "ada@acme.test", "admin").await;
        let res = app
            .on(Method::PATCH, "acme", &format!("/v1/users/{id}"), Some(&owner.token))
            .json(&json!({"role": "member"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_invalid_token(me(&app, "acme", &admin).await, "a token of the old role").await;
        let fresh = app.login("acme", "ada@acme.test").await;
        let body: Value = me(&app, "acme", &fresh).await.json().await.unwrap();
        assert_eq!(body["user"]["role"], "member");
    }
}

#[tokio::test]
async fn an_unknown_email_takes_about_as_long_to_refuse_as_a_wrong_password() {
    let app = TestApp::spawn(Backend::Memory).await;
    app.signup("acme").await;
    // The fastest of a few tries of each, so that a busy machine can't fake a difference.
    let mut fastest = [Duration::MAX; 2];
    for _ in 0..4 {
        for (i, email) in ["owner@acme.test", "nobody@acme.test"].into_iter().enumerate() {
            let started = std::time::Instant::now();
            let res = login(&app, "acme", email, "not the right password").await;
            let took = started.elapsed();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            fastest[i] = fastest[i].min(took);
        }
    }
    let [wrong_password, unknown_email] = fastest;
    assert!(
        unknown_email * 4 > wrong_password && wrong_password * 4 > unknown_email,
        "a wrong password took {wrong_password:?}, an unknown email {unknown_email:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_invalid() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_on_clock(Backend::Memory, &[("PLINTH_TOKEN_TTL", "1")], clock.clone()).await;
    app.signup("acme").await;
    let res = login(&app, "acme", "owner@acme.test", PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&app, "acme", &token).await.status(), StatusCode::OK);
    // Valid up to the end of the verifier's 5 s of tolerated clock skew past `exp`...
    clock.advance(Duration::from_secs(1 + 5));
    assert_eq!(me(&app, "acme", &token).await.status(), StatusCode::OK, "within the leeway");
    // ...and refused a second later.
    clock.advance(Duration::from_secs(1));
    assert_invalid_token(me(&app, "acme", &token).await, "expired").await;
}
