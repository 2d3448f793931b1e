//! Rate limits: the `"tenant"`, `"ip"` and `"login"` policies, their IETF RateLimit headers,
//! 429 with `Retry-After`, and whose address counts.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

/// `RateLimit-Policy` and `RateLimit` of `res`, parsed: `(policy, q, w)` and `(policy, r, t)`.
fn limits(res: &Response) -> ((String, u64, u64), (String, u64, u64)) {
    let policy = header(res, "ratelimit-policy").expect("RateLimit-Policy");
    let limit = header(res, "ratelimit").expect("RateLimit");
    (parse(&policy, "q", "w"), parse(&limit, "r", "t"))
}

/// Parses `"name";a=1;b=2` strictly.
fn parse(value: &str, a: &str, b: &str) -> (String, u64, u64) {
    let parts: Vec<&str> = value.split(';').collect();
    assert_eq!(parts.len(), 3, "{value}");
    let name = parts[0].strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or_else(|| panic!("{value}"));
    let field = |part: &str, key: &str| -> u64 {
        let digits = part.strip_prefix(key).and_then(|p| p.strip_prefix('=')).unwrap_or_else(|| panic!("{value}"));
        assert!(digits.bytes().all(|c| c.is_ascii_digit()) && !digits.is_empty(), "{value}");
        digits.parse().unwrap()
    };
    (name.to_owned(), field(parts[1], a), field(parts[2], b))
}

fn retry_after(res: &Response) -> u64 {
    let v = header(res, "retry-after").expect("Retry-After");
    assert!(v.bytes().all(|c| c.is_ascii_digit()), "whole seconds: {v}");
    v.parse().unwrap()
}

async fn send(req: RequestBuilder) -> Response {
    req.send().await.unwrap()
}

on_every_backend! {
    async fn a_tenants_quota_is_counted_down_in_the_ratelimit_headers_then_refused_with_429(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_QUOTA_FREE", "5")]).await;
        let token = app.signup("acme").await.token;
        let mut last_t = 0;
        for expected_r in (0..5).rev() {
            let res = send(app.on(Method::GET, "acme", "/v1/projects", Some(&token))).await;
            assert_eq!(res.status(), StatusCode::OK);
            let ((policy, q, w), (name, r, t)) = limits(&res);
            assert_eq!((policy.as_str(), q, w), ("tenant", 5, 60));
            assert_eq!((name.as_str(), r), ("tenant", expected_r));
            assert!(t > last_t && t <= 60, "t grows with what was spent: {t} after {last_t}");
            last_t = t;
        }
        assert_eq!(last_t, 60, "the whole quota spent takes the whole minute to earn back");
        let res = send(app.on(Method::GET, "acme", "/v1/projects", Some(&token))).await;
        let wait = retry_after(&res);
        assert!((1..=12).contains(&wait), "one request is earned back every 12 s: {wait}");
        let ((policy, q, _), (_, r, t)) = limits(&res);
        assert_eq!((policy.as_str(), q, r), ("tenant", 5, 0));
        assert!(t >= wait && t <= 60, "{t}");
        let cc = header(&res, "cache-control").unwrap_or_default();
        assert!(cc.contains("private") && !cc.contains("public"), "an authenticated 429 is private: {cc}");
        let body = assert_problem(res, 429, "rate_limited").await;
        assert_eq!(body["title"], "Too Many Requests");
        // Every route of the tenant, writes too, shares the quota.
        let res = send(app.on(Method::POST, "acme", "/v1/projects", Some(&token)).json(&json!({"name": "x"}))).await;
        assert_problem(res, 429, "rate_limited").await;
        let res = send(app.on(Method::GET, "acme", "/v1/me", Some(&token))).await;
        assert_problem(res, 429, "rate_limited").await;
    }

    async fn one_tenants_exhausted_quota_leaves_other_tenants_and_strangers_alone(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_QUOTA_FREE", "3")]).await;
        let acme = app.signup("acme").await.token;
        let bravo = app.signup("bravo").await.token;
        for _ in 0..3 {
            assert_eq!(send(app.on(Method::GET, "acme", "/v1/me", Some(&acme))).await.status(), StatusCode::OK);
        }
        assert_eq!(
            send(app.on(Method::GET, "acme", "/v1/me", Some(&acme))).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let res = send(app.on(Method::GET, "bravo", "/v1/me", Some(&bravo))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1, ("tenant".to_owned(), 2, 20));
        // Acme's public route counts against the caller's address, not acme's quota.
        let res = send(app.on(Method::GET, "acme", "/v1/tenant", None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).0.0, "ip");
        // So does a login: acme's users can still sign in.
        let res = send(
            app.on(Method::POST, "acme", "/v1/auth/login", None)
                .json(&json!({"email": "owner@acme.test", "password": PASSWORD})),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).0.0, "login");
    }

    async fn requests_without_a_valid_token_spend_the_ip_quota_never_the_tenants(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_QUOTA_FREE", "3"), ("PLINTH_IP_QUOTA", "8")]).await;
        let signup = app.signup("acme").await;
        let forged = format!("{}x", signup.token);
        let mut expected_r = 8;
        for (what, req) in [
            ("a bad token", app.on(Method::GET, "acme", "/v1/projects", Some(&forged))),
            ("garbage", app.on(Method::GET, "acme", "/v1/projects", Some("garbage"))),
            ("no token", app.on(Method::GET, "acme", "/v1/projects", None)),
            (
                "a bad token on a write",
                app.on(Method::POST, "acme", "/v1/projects", Some(&forged)).json(&json!({"name": "x"})),
            ),
            ("the public route", app.on(Method::GET, "acme", "/v1/tenant", None)),
            ("the public route with a bad token", app.on(Method::GET, "acme", "/v1/tenant", Some(&forged))),
            (
                "an unknown host",
                app.request(Method::GET, "nobody.localhost", "/v1/projects").bearer_auth(&signup.token),
            ),
        ] {
            let res = send(req).await;
            expected_r -= 1;
            let ((policy, q, w), (name, r, _)) = limits(&res);
            assert_eq!((policy.as_str(), q, w, name.as_str(), r), ("ip", 8, 60, "ip", expected_r), "{what}");
            assert!(res.status().is_client_error() || res.status() == StatusCode::OK, "{what}");
        }
        // The tenant's whole quota is still there.
        for expected_r in (0..3).rev() {
            let res = send(app.on(Method::GET, "acme", "/v1/projects", Some(&signup.token))).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(limits(&res).1.1, expected_r);
        }
    }

    async fn the_ip_quota_refuses_the_address_that_spent_it_with_429(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_IP_QUOTA", "3")]).await;
        let token = app.signup("acme").await.token;
        for expected_r in (0..3).rev() {
            let res = send(app.on(Method::GET, "acme", "/v1/tenant", None)).await;
            assert_eq!(res.status(), StatusCode::OK);
            let ((policy, q, w), (_, r, _)) = limits(&res);
            assert_eq!((policy.as_str(), q, w, r), ("ip", 3, 60, expected_r));
        }
        let res = send(app.on(Method::GET, "acme", "/v1/tenant", None)).await;
        let wait = retry_after(&res);
        assert!((1..=20).contains(&wait), "{wait}");
        assert_problem(res, 429, "rate_limited").await;
        let res = send(app.on(Method::GET, "acme", "/v1/me", None)).await;
        assert_problem(res, 429, "rate_limited").await;
        // A valid token is counted against the tenant instead.
        let res = send(app.on(Method::GET, "acme", "/v1/me", Some(&token))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).0.0, "tenant");
    }

    async fn signup_and_login_spend_the_login_quota_and_nothing_else(backend: Backend) {
        let app = TestApp::spawn_with(
            backend,
            &[("PLINTH_LOGIN_QUOTA", "3"), ("PLINTH_IP_QUOTA", "2"), ("PLINTH_QUOTA_FREE", "2")],
        )
        .await;
        let res = send(app.request(Method::POST, "localhost", "/v1/signup").json(&json!({
            "tenant_slug": "acme", "tenant_name": "Acme", "email": "owner@acme.test", "password": PASSWORD,
        })))
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let ((policy, q, w), (_, r, _)) = limits(&res);
        assert_eq!((policy.as_str(), q, w, r), ("login", 3, 60, 2));
        let login = || {
            app.on(Method::POST, "acme", "/v1/auth/login", None)
                .json(&json!({"email": "owner@acme.test", "password": PASSWORD}))
        };
        let res = send(login()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1, ("login".to_owned(), 1, 40));
        let token = res.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        // A failed attempt counts too.
        let res = send(
            app.on(Method::POST, "acme", "/v1/auth/login", None)
                .json(&json!({"email": "owner@acme.test", "password": "wrong password!"})),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(limits(&res).1.1, 0);
        let res = send(login()).await;
        assert!(retry_after(&res) >= 1);
        assert_eq!(limits(&res).0.0, "login");
        assert_problem(res, 429, "rate_limited").await;
        let res = send(app.request(Method::POST, "localhost", "/v1/signup").json(&json!({
            "tenant_slug": "bravo", "tenant_name": "Bravo", "email": "owner@bravo.test", "password": PASSWORD,
        })))
        .await;
        assert_problem(res, 429, "rate_limited").await;
        // Nothing else was spent: the IP quota is whole (this request leaves 1 of 2)…
        let res = send(app.on(Method::GET, "acme", "/v1/tenant", None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1, ("ip".to_owned(), 1, 30));
        // …and so is the tenant's.
        let res = send(app.on(Method::GET, "acme", "/v1/me", Some(&token))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1, ("tenant".to_owned(), 1, 30));
        // The refused signup created nothing.
        let res = send(app.on(Method::GET, "bravo", "/v1/tenant", None)).await;
        assert_problem(res, 404, "tenant_not_found").await;
    }

    async fn forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_IP_QUOTA", "2")]).await;
        app.signup("acme").await;
        for xff in ["198.51.100.1", "198.51.100.2"] {
            let res = send(app.on(Method::GET, "acme", "/v1/tenant", None).header("x-forwarded-for", xff)).await;
            assert_eq!(res.status(), StatusCode::OK);
        }
        for xff in ["198.51.100.3", "203.0.113.9, 198.51.100.4", "garbage"] {
            let res = send(app.on(Method::GET, "acme", "/v1/tenant", None).header("x-forwarded-for", xff)).await;
            assert_problem(res, 429, "rate_limited").await;
        }
    }

    async fn forwarded_for_from_a_trusted_proxy_names_the_client(backend: Backend) {
        let app =
            TestApp::spawn_with(backend, &[("PLINTH_IP_QUOTA", "2"), ("PLINTH_TRUSTED_PROXIES", "127.0.0.1")]).await;
        app.signup("acme").await;
        let tenant = |xff: Option<&str>| {
            let req = app.on(Method::GET, "acme", "/v1/tenant", None);
            match xff {
                Some(x) => req.header("x-forwarded-for", x),
                None => req,
            }
        };
        for expected_r in [1, 0] {
            let res = send(tenant(Some("198.51.100.1"))).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(limits(&res).1.1, expected_r);
        }
        assert_problem(send(tenant(Some("198.51.100.1"))).await, 429, "rate_limited").await;
        // Other clients behind the proxy have their own buckets.
        let res = send(tenant(Some("198.51.100.2"))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1.1, 1);
        // The rightmost address not a trusted proxy is the client: what the client itself
        // prepended is not believed.
        let res = send(tenant(Some("6.6.6.6, 198.51.100.1"))).await;
        assert_problem(res, 429, "rate_limited").await;
        let res = send(tenant(Some("198.51.100.1, 198.51.100.3"))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1.1, 1);
        // Without the header the proxy itself is the client.
        let res = send(tenant(None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(limits(&res).1.1, 1);
    }
}

#[tokio::test]
async fn every_response_of_a_rate_limited_route_carries_the_headers_of_its_policy() {
    let app = TestApp::spawn(Backend::Memory).await;
    let token = app.signup("acme").await.token;
    for (what, req, policy) in [
        ("200", app.on(Method::GET, "acme", "/v1/projects", Some(&token)), "tenant"),
        ("201", app.on(Method::POST, "acme", "/v1/projects", Some(&token)).json(&json!({"name": "x"})), "tenant"),
        ("404 resource", app.on(Method::GET, "acme", "/v1/projects/nope", Some(&token)), "tenant"),
        ("404 path", app.on(Method::GET, "acme", "/v1/nope", Some(&token)), "tenant"),
        ("405", app.on(Method::PUT, "acme", "/v1/projects", Some(&token)), "tenant"),
        ("422", app.on(Method::POST, "acme", "/v1/projects", Some(&token)).json(&json!({"name": ""})), "tenant"),
        ("401", app.on(Method::GET, "acme", "/v1/projects", None), "ip"),
        ("tenant_not_found", app.request(Method::GET, "nobody.localhost", "/v1/tenant"), "ip"),
        (
            "login 401",
            app.on(Method::POST, "acme", "/v1/auth/login", None).json(&json!({"email": "x@y.z", "password": "nope"})),
            "login",
        ),
        (
            "signup 409",
            app.request(Method::POST, "localhost", "/v1/signup").json(&json!({
                "tenant_slug": "acme", "tenant_name": "Acme", "email": "a@b.test", "password": PASSWORD,
            })),
            "login",
        ),
    ] {
        let res = req.send().await.unwrap();
        let ((p, q, w), (name, r, t)) = limits(&res);
        assert_eq!((p.as_str(), name.as_str()), (policy, policy), "{what}");
        assert_eq!((q, w), (100_000, 60), "{what}");
        assert!(r < q && t <= 60, "{what}: r={r} t={t}");
    }
}
