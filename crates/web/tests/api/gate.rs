//! The gate's rules however a request is spelled: the policy of the handler a path reaches,
//! whose address counts (IPv6 by prefix, `X-Forwarded-For` read as bytes), and nothing an
//! anonymous client sends reaching the tenant lookup once its quota is spent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Tenant, User};
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::TenantRepository;
use plinth_domain::values::Slug;
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

/// Spellings of `/v1/auth/login` that the router decodes to it.
const LOGIN_SPELLINGS: &[&str] = &[
    "/v1/auth/%6Cogin",
    "/v1/auth/%6c%6f%67%69%6e",
    "/v1/%61uth/login",
    "/v1/%61%75%74%68/%6C%6F%67%69%6E",
    "/v1/auth/login",
];

/// Spellings of `/v1/signup` that the router decodes to it.
const SIGNUP_SPELLINGS: &[&str] = &["/v1/%73ignup", "/v1/%73%69%67%6E%75%70", "/v1/sign%75p", "/v1/signup"];

fn policy(res: &Response) -> String {
    header(res, "ratelimit-policy").unwrap_or_default()
}

/// What remains of the quota (`r` of the `RateLimit` header).
fn remaining(res: &Response) -> u64 {
    let limit = header(res, "ratelimit").expect("RateLimit");
    let r = limit.split(';').find_map(|p| p.strip_prefix("r=")).expect("r=");
    r.parse().expect("a number")
}

fn signup_body(slug: &str) -> Value {
    json!({"tenant_slug": slug, "tenant_name": "Evil", "email": format!("owner@{slug}.test"), "password": PASSWORD})
}

#[tokio::test]
async fn every_spelling_of_the_login_path_is_counted_by_the_login_policy() {
    // The signup spends one attempt, each spelling one more; then the quota is spent.
    let quota = LOGIN_SPELLINGS.len() + 1;
    let app = TestApp::spawn_with(Backend::Memory, &[("PLINTH_LOGIN_QUOTA", &quota.to_string())]).await;
    app.signup("acme").await;
    let credentials = json!({"email": "owner@acme.test", "password": PASSWORD});
    for (i, path) in LOGIN_SPELLINGS.iter().enumerate() {
        let res = app.on(Method::POST, "acme", path, None).json(&credentials).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path} reaches the login handler");
        assert_eq!(policy(&res), format!("\"login\";q={quota};w=60"), "{path}");
        assert_eq!(remaining(&res), (quota - 2 - i) as u64, "{path}");
    }
    for path in LOGIN_SPELLINGS {
        let res = app.on(Method::POST, "acme", path, None).json(&credentials).send().await.unwrap();
        assert_problem(res, 429, "rate_limited").await;
    }
}

#[tokio::test]
async fn an_encoded_slash_reaches_neither_login_nor_signup() {
    let app = TestApp::spawn(Backend::Memory).await;
    app.signup("acme").await;
    let credentials = json!({"email": "owner@acme.test", "password": PASSWORD});
    for path in ["/v1/auth%2Flogin", "/v1/auth%2flogin", "/v1%2Fauth/login"] {
        let res = app.on(Method::POST, "acme", path, None).json(&credentials).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/v1/%2Fsignup", "/v1%2Fsignup", "/v1%2fsignup"] {
        let res = app.request(Method::POST, "localhost", path).json(&signup_body("evil")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = app.on(Method::GET, "evil", "/v1/tenant", None).send().await.unwrap();
    assert_problem(res, 404, "tenant_not_found").await;
}

on_every_backend! {
    async fn signup_under_any_spelling_answers_not_found_off_the_platform_host(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        for host in ["acme.localhost", "nobody.localhost", "127.0.0.1", "a.acme.localhost"] {
            for path in SIGNUP_SPELLINGS {
                let res = app.request(Method::POST, host, path).json(&signup_body("evil")).send().await.unwrap();
                assert!(policy(&res).starts_with("\"login\""), "{host}{path}: {}", policy(&res));
                assert_problem(res, 404, "not_found").await;
            }
        }
        let res = app.on(Method::GET, "evil", "/v1/tenant", None).send().await.unwrap();
        assert_problem(res, 404, "tenant_not_found").await;
        // On the platform host every spelling signs up.
        for (i, path) in SIGNUP_SPELLINGS.iter().enumerate() {
            let slug = format!("good-{i}");
            let res = app.request(Method::POST, "localhost", path).json(&signup_body(&slug)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::CREATED, "{path}");
            assert!(policy(&res).starts_with("\"login\""), "{path}");
        }
    }
}

/// `GET /v1/tenant` of acme as forwarded by a trusted proxy for `xff`.
fn forwarded(app: &TestApp, xff: &str) -> RequestBuilder {
    app.on(Method::GET, "acme", "/v1/tenant", None).header("x-forwarded-for", xff)
}

async fn admitted(req: RequestBuilder) -> u64 {
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    remaining(&res)
}

async fn refused(req: RequestBuilder) {
    assert_problem(req.send().await.unwrap(), 429, "rate_limited").await;
}

#[tokio::test]
async fn ipv6_clients_share_one_bucket_per_64_and_ipv4_mapped_ones_are_ipv4() {
    let app = TestApp::spawn_with(
        Backend::Memory,
        &[("PLINTH_IP_QUOTA", "2"), ("PLINTH_LOGIN_QUOTA", "2"), ("PLINTH_TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    app.signup("acme").await;
    assert_eq!(admitted(forwarded(&app, "2001:db8:1:2::1")).await, 1);
    assert_eq!(admitted(forwarded(&app, "2001:db8:1:2:ffff:ffff:ffff:ffff")).await, 0);
    refused(forwarded(&app, "2001:db8:1:2::3")).await;
    assert_eq!(admitted(forwarded(&app, "2001:db8:1:3::1")).await, 1, "another /64 has its own bucket");
    assert_eq!(admitted(forwarded(&app, "::ffff:198.51.100.1")).await, 1);
    assert_eq!(admitted(forwarded(&app, "198.51.100.1")).await, 0, "the mapped form is the same client");
    assert_eq!(admitted(forwarded(&app, "198.51.100.2")).await, 1, "IPv4 clients are not grouped");
    // Login attempts are counted the same way.
    let login = |xff: &str| {
        app.on(Method::POST, "acme", "/v1/auth/login", None)
            .header("x-forwarded-for", xff)
            .json(&json!({"email": "owner@acme.test", "password": "not the password"}))
    };
    for xff in ["2001:db8:7:7::1", "2001:db8:7:7::2"] {
        let res = login(xff).send().await.unwrap();
        assert_problem(res, 401, "invalid_credentials").await;
    }
    refused(login("2001:db8:7:7:abcd::1")).await;
}

#[tokio::test]
async fn the_ipv6_prefix_that_groups_clients_is_configurable() {
    async fn app(prefix: &str) -> TestApp {
        let vars = [("PLINTH_IP_QUOTA", "1"), ("PLINTH_TRUSTED_PROXIES", "127.0.0.1"), ("PLINTH_IPV6_PREFIX", prefix)];
        TestApp::spawn_with(Backend::Memory, &vars).await
    }
    let wide = app("48").await;
    wide.signup("acme").await;
    admitted(forwarded(&wide, "2001:db8:1:2::1")).await;
    refused(forwarded(&wide, "2001:db8:1:3::1")).await;
    admitted(forwarded(&wide, "2001:db8:2::1")).await;
    let exact = app("128").await;
    exact.signup("acme").await;
    admitted(forwarded(&exact, "2001:db8:1:2::1")).await;
    admitted(forwarded(&exact, "2001:db8:1:2::2")).await;
    refused(forwarded(&exact, "2001:db8:1:2::1")).await;
}

#[tokio::test]
async fn a_non_ascii_forwarded_for_entry_cannot_move_a_client_into_its_proxys_bucket() {
    let app =
        TestApp::spawn_with(Backend::Memory, &[("PLINTH_IP_QUOTA", "2"), ("PLINTH_TRUSTED_PROXIES", "127.0.0.1")])
            .await;
    app.signup("acme").await;
    admitted(forwarded(&app, "198.51.100.1")).await;
    admitted(forwarded(&app, "198.51.100.1")).await;
    // The client sent a non-ASCII X-Forwarded-For, and its proxy appended the client's
    // address: the client is still the one whose quota is spent.
    for raw in [&b"\xc3\xa9t\xc3\xa9, 198.51.100.1"[..], b"\xff, 198.51.100.1", b"\xc3\xa9,198.51.100.1, 127.0.0.1"] {
        let xff = HeaderValue::from_bytes(raw).unwrap();
        let res = app.on(Method::GET, "acme", "/v1/tenant", None).header("x-forwarded-for", xff).send().await.unwrap();
        assert_problem(res, 429, "rate_limited").await;
    }
    // The proxy's own bucket was not touched.
    assert_eq!(admitted(app.on(Method::GET, "acme", "/v1/tenant", None)).await, 1);
    // Garbage in the proxy's own place ends the walk at the proxy: the last address believed.
    let xff = HeaderValue::from_bytes(b"198.51.100.1, \xc3\xa9").unwrap();
    assert_eq!(admitted(app.on(Method::GET, "acme", "/v1/tenant", None).header("x-forwarded-for", xff)).await, 0);
}

/// `find_by_slug` counted, everything else passed through.
struct CountedLookups {
    inner: Arc<dyn TenantRepository>,
    lookups: Arc<AtomicUsize>,
}

#[async_trait]
impl TenantRepository for CountedLookups {
    async fn create_with_owner(
        &self,
        tenant: &Tenant,
        owner: &User,
        verification: Option<&plinth_domain::ports::NewVerification>,
        trail: &AuditTrail,
    ) -> plinth_domain::Result<()> {
        self.inner.create_with_owner(tenant, owner, verification, trail).await
    }

    async fn set_plan(
        &self,
        tenant: TenantId,
        plan: &plinth_domain::values::Plan,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> plinth_domain::Result<bool> {
        self.inner.set_plan(tenant, plan, events, trail).await
    }

    async fn set_lifecycle(
        &self,
        tenant: TenantId,
        from: &plinth_domain::entities::Lifecycle,
        to: &plinth_domain::entities::Lifecycle,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> plinth_domain::Result<bool> {
        self.inner.set_lifecycle(tenant, from, to, events, trail).await
    }

    async fn list(
        &self,
        after: Option<&Slug>,
        limit: usize,
        state: Option<plinth_domain::ports::TenantState>,
    ) -> plinth_domain::Result<Vec<Tenant>> {
        self.inner.list(after, limit, state).await
    }

    async fn due_for_purge(
        &self,
        now: time::OffsetDateTime,
        limit: usize,
    ) -> plinth_domain::Result<Vec<(TenantId, Slug)>> {
        self.inner.due_for_purge(now, limit).await
    }

    async fn purge_batch(
        &self,
        tenant: TenantId,
        now: time::OffsetDateTime,
        batch: usize,
    ) -> plinth_domain::Result<u64> {
        self.inner.purge_batch(tenant, now, batch).await
    }

    async fn usage(&self, tenant: TenantId) -> plinth_domain::Result<plinth_domain::ports::Usage> {
        self.inner.usage(tenant).await
    }

    async fn find_by_slug(&self, slug: &Slug) -> plinth_domain::Result<Option<Tenant>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_slug(slug).await
    }
}

on_every_backend! {
    async fn past_its_quota_an_anonymous_client_never_reaches_the_tenant_lookup(backend: Backend) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = lookups.clone();
        let app = TestApp::spawn_adapted(backend, &[("PLINTH_IP_QUOTA", "2"), ("PLINTH_LOGIN_QUOTA", "2")], move |ports| {
            ports.tenants = Arc::new(CountedLookups { inner: ports.tenants.clone(), lookups: counter });
        })
        .await;
        let token = app.signup("acme").await.token;
        // Spend the IP quota, and what the signup left of the login quota.
        admitted(app.on(Method::GET, "acme", "/v1/tenant", None)).await;
        let res = app.request(Method::GET, "nobody.localhost", "/v1/tenant").send().await.unwrap();
        assert_problem(res, 404, "tenant_not_found").await;
        let res = app
            .on(Method::POST, "acme", "/v1/auth/login", None)
            .json(&json!({"email": "owner@acme.test", "password": "not the password"}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_credentials").await;

        let before = lookups.load(Ordering::SeqCst);
        let forged = format!("{token}x");
        for i in 0..10 {
            let host = format!("never-seen-{i}.localhost");
            refused(app.request(Method::GET, &host, "/v1/tenant")).await;
            refused(app.request(Method::GET, &host, "/v1/projects").bearer_auth(&forged)).await;
            refused(app.request(Method::GET, &host, "/v1/projects").bearer_auth("garbage")).await;
            refused(
                app.request(Method::POST, &host, "/v1/auth/login")
                    .json(&json!({"email": "owner@acme.test", "password": PASSWORD})),
            )
            .await;
            refused(app.request(Method::POST, &host, "/v1/%73ignup").json(&signup_body("evil"))).await;
        }
        assert_eq!(lookups.load(Ordering::SeqCst), before, "a refused request looked a tenant up");
        // A valid token is counted by its tenant, not by the spent IP quota.
        let res = app.on(Method::GET, "acme", "/v1/projects", Some(&token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(policy(&res).starts_with("\"tenant\""), "{}", policy(&res));
    }
}
