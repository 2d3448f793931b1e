//! The harness both black-box test binaries share (`api` and `ops`): a plinth in this process
//! on port 0, on the memory adapters or a PostgreSQL database of the test's own, and a client
//! that talks to it as an API consumer would.

// Each binary uses its own part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plinth_domain::clock::SystemClock;
use plinth_domain::ports::Clock;
use plinth_domain::usecases::{Plinth, Ports};
use plinth_testkit::{PgBouncer, TestDatabase};
use plinth_web::shutdown::ShutdownHandle;
use plinth_web::{Application, Config};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The password of every user the tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The HS256 secret of apps on PostgreSQL (and of tests that mint tokens of their own).
pub const JWT_SECRET: &str = "a-test-secret-of-at-least-32-bytes!";
/// The encryption key of apps on PostgreSQL.
pub const ENCRYPTION_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Quotas high enough that no test is limited unless it asks to be; no worker unless asked;
/// and nothing a test registers may ever be delivered beyond this machine.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("PLINTH_QUOTA_FREE", "100000"),
    ("PLINTH_QUOTA_PRO", "100000"),
    ("PLINTH_QUOTA_ENTERPRISE", "100000"),
    ("PLINTH_IP_QUOTA", "100000"),
    ("PLINTH_LOGIN_QUOTA", "100000"),
    ("PLINTH_MAILBOX_QUOTA", "100000"),
    ("PLINTH_WORKER", "false"),
    ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
    ("PLINTH_LISTEN", "127.0.0.1:0"),
    ("PLINTH_LOG", "warn"),
];

/// A client that follows no redirects and gives up after 20 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A plinth running in this process, and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: ShutdownHandle,
    pub stopped: JoinHandle<std::io::Result<()>>,
    /// The app's use cases, to drive its job worker one step at a time.
    pub plinth: Arc<Plinth>,
    /// The PgBouncer the app reaches its database through, if any (dropped before the database).
    pub pooler: Option<PgBouncer>,
    /// Kept alive for the app's lifetime; dropped (and the database with it) at the end.
    pub db: Option<TestDatabase>,
}

/// What signup returned.
pub struct Signup {
    pub token: String,
    /// The owner's refresh token.
    pub refresh: String,
    pub tenant_id: String,
    pub user_id: String,
}

impl TestApp {
    /// An app with [`DEFAULTS`] and `vars` on top: on PostgreSQL when `db` is given (or `vars`
    /// name a `DATABASE_URL`), else on the memory adapters.
    pub async fn start(vars: &[(&str, &str)], db: Option<TestDatabase>) -> Self {
        Self::start_adapted(vars, db, |_| {}).await
    }

    /// As [`TestApp::start`], with `adapt` wrapping or replacing adapters (to count what
    /// reaches a port).
    pub async fn start_adapted(
        vars: &[(&str, &str)],
        db: Option<TestDatabase>,
        adapt: impl FnOnce(&mut Ports),
    ) -> Self {
        Self::start_wired(vars, db, Arc::new(SystemClock::new()), adapt).await
    }

    /// As [`TestApp::start_adapted`], with every adapter that keeps time keeping it by
    /// `clock` (a `ManualClock` the test advances instead of waiting).
    pub async fn start_wired(
        vars: &[(&str, &str)],
        db: Option<TestDatabase>,
        clock: Arc<dyn Clock>,
        adapt: impl FnOnce(&mut Ports),
    ) -> Self {
        let mut env: HashMap<String, String> = DEFAULTS.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        if let Some(db) = &db {
            env.insert("DATABASE_URL".into(), db.app_url.clone());
            env.insert("PLINTH_DATABASE_OWNER_URL".into(), db.owner_url.clone());
        }
        if db.is_some() || vars.iter().any(|(k, _)| *k == "DATABASE_URL") {
            env.insert("PLINTH_JWT_SECRET".into(), JWT_SECRET.into());
            env.insert("PLINTH_ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into());
        }
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration");
        // The first app's log writer serves every test of this process.
        std::mem::forget(plinth_web::telemetry::init(&config.log));
        let app = Application::build_with(config, clock, adapt).await.expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_handle();
        let plinth = app.plinth();
        let stopped = tokio::spawn(app.run_until_stopped());
        Self { address, client: client(), shutdown, stopped, plinth, pooler: None, db }
    }

    /// As [`TestApp::start_wired`] on `db`, reached through a PgBouncer of its own in
    /// transaction mode: `DATABASE_URL` is the pooler's, the statement cache is off, and (when
    /// `direct`) `PLINTH_DATABASE_DIRECT_URL` is the database's own URL. `vars` come on top.
    pub async fn start_pooled(
        vars: &[(&str, &str)],
        db: TestDatabase,
        direct: bool,
        clock: Arc<dyn Clock>,
        adapt: impl FnOnce(&mut Ports),
    ) -> Self {
        let pooler = PgBouncer::start();
        let pooled_url = pooler.url(&db.app_url);
        let direct_url = db.app_url.clone();
        let mut all = vec![("DATABASE_URL", pooled_url.as_str()), ("PLINTH_DATABASE_STATEMENT_CACHE", "false")];
        if direct {
            all.push(("PLINTH_DATABASE_DIRECT_URL", direct_url.as_str()));
        }
        all.extend_from_slice(vars);
        let mut app = Self::start_wired(&all, Some(db), clock, adapt).await;
        app.pooler = Some(pooler);
        app
    }

    /// The port the app listens on.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// A request to `path` with `Host: host`.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address)).header("host", host)
    }

    /// A request on tenant `slug`'s host, with `token` if given.
    pub fn on(&self, method: Method, slug: &str, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.request(method, &format!("{slug}.localhost"), path);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Signs up tenant `slug` with owner `owner@{slug}.test` and [`PASSWORD`].
    pub async fn signup(&self, slug: &str) -> Signup {
        signup(&self.client, &self.address, slug).await
    }

    /// Adds a user with `role` to `slug` (as its owner) and logs them in; returns the user's id
    /// and token.
    pub async fn user(&self, slug: &str, owner_token: &str, email: &str, role: &str) -> (String, String) {
        let res = self
            .on(Method::POST, slug, "/v1/users", Some(owner_token))
            .json(&json!({"email": email, "password": PASSWORD, "role": role}))
            .send()
            .await
            .expect("create user");
        assert_eq!(res.status(), StatusCode::CREATED);
        let id = res.json::<Value>().await.expect("user")["id"].as_str().expect("id").to_owned();
        (id, self.login(slug, email).await)
    }

    /// Logs `email` in on `slug`; returns the token.
    pub async fn login(&self, slug: &str, email: &str) -> String {
        self.sign_in(slug, email).await.0
    }

    /// Logs `email` in on `slug`; returns the access token and the refresh token.
    pub async fn sign_in(&self, slug: &str, email: &str) -> (String, String) {
        let res = self
            .on(Method::POST, slug, "/v1/auth/login", None)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), StatusCode::OK, "login of {email} on {slug}");
        let body = res.json::<Value>().await.expect("tokens");
        let text = |k: &str| body[k].as_str().expect("a token").to_owned();
        (text("access_token"), text("refresh_token"))
    }

    /// Creates a project; returns its JSON.
    pub async fn project(&self, slug: &str, token: &str, name: &str) -> Value {
        let res = self
            .on(Method::POST, slug, "/v1/projects", Some(token))
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("create project");
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.expect("project")
    }
}

/// Signs up tenant `slug` at the plinth at `address` with owner `owner@{slug}.test` and
/// [`PASSWORD`].
pub async fn signup(client: &reqwest::Client, address: &str, slug: &str) -> Signup {
    let res = client
        .post(format!("{address}/v1/signup"))
        .header("host", "localhost")
        .json(&json!({
            "tenant_slug": slug, "tenant_name": format!("Tenant {slug}"),
            "email": format!("owner@{slug}.test"), "password": PASSWORD,
        }))
        .send()
        .await
        .expect("signup request");
    assert_eq!(res.status(), StatusCode::CREATED, "signup of {slug}");
    let body: Value = res.json().await.expect("signup body");
    Signup {
        token: body["access_token"].as_str().expect("token").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh token").to_owned(),
        tenant_id: body["tenant"]["id"].as_str().expect("tenant id").to_owned(),
        user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
    }
}
