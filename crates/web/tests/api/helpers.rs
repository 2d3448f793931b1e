//! Spawning a plinth on port 0 and talking to it as a client would.

use std::collections::HashMap;

use plinth_domain::usecases::Ports;
use plinth_testkit::TestDatabase;
use plinth_web::{Application, Config};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// Which storage the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory adapters.
    Memory,
    /// A fresh PostgreSQL database of this test's own.
    Postgres,
}

/// A running app and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// Kept alive for the app's lifetime; dropped (and the database with it) at the end.
    pub db: Option<TestDatabase>,
}

/// Quotas high enough that no test is limited unless it asks to be.
const GENEROUS: &[(&str, &str)] = &[
    ("PLINTH_QUOTA_FREE", "100000"),
    ("PLINTH_QUOTA_PRO", "100000"),
    ("PLINTH_QUOTA_ENTERPRISE", "100000"),
    ("PLINTH_IP_QUOTA", "100000"),
    ("PLINTH_LOGIN_QUOTA", "100000"),
];

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// An app on `backend` with generous quotas and `vars` on top.
    pub async fn spawn_with(backend: Backend, vars: &[(&str, &str)]) -> Self {
        Self::spawn_adapted(backend, vars, |_| {}).await
    }

    /// As [`TestApp::spawn_with`], with `adapt` wrapping or replacing adapters (to count what
    /// reaches a port).
    pub async fn spawn_adapted(backend: Backend, vars: &[(&str, &str)], adapt: impl FnOnce(&mut Ports)) -> Self {
        let mut env: HashMap<String, String> = GENEROUS.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        env.insert("PLINTH_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("PLINTH_LOG".into(), "warn".into());
        env.insert("PLINTH_WORKER".into(), "false".into());
        // Nothing a test registers may ever be delivered beyond this machine.
        env.insert("PLINTH_WEBHOOK_ALLOWED_CIDRS".into(), "127.0.0.0/8,::1/128".into());
        let db = match backend {
            Backend::Memory => None,
            Backend::Postgres => {
                let db = TestDatabase::new().await;
                env.insert("DATABASE_URL".into(), db.app_url.clone());
                env.insert("PLINTH_DATABASE_OWNER_URL".into(), db.owner_url.clone());
                env.insert("PLINTH_JWT_SECRET".into(), "a-test-secret-of-at-least-32-bytes!".into());
                env.insert("PLINTH_ENCRYPTION_KEY".into(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
                Some(db)
            }
        };
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration");
        // The first app's log writer serves every test of this process.
        std::mem::forget(plinth_web::telemetry::init(&config.log));
        let app = Application::build_with(config, adapt).await.expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { address, client, db }
    }

    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
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

    /// Signs up tenant `slug` with owner `owner@{slug}.test`; returns the owner's token.
    pub async fn signup(&self, slug: &str) -> Signup {
        let res = self
            .request(Method::POST, "localhost", "/v1/signup")
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
            tenant_id: body["tenant"]["id"].as_str().expect("tenant id").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
        }
    }

    /// Adds a user with `role` to `slug` (as its owner) and logs them in.
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
        let res = self
            .on(Method::POST, slug, "/v1/auth/login", None)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), StatusCode::OK, "login of {email} on {slug}");
        res.json::<Value>().await.expect("token")["access_token"].as_str().expect("token").to_owned()
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

/// What signup returned.
pub struct Signup {
    pub token: String,
    pub tenant_id: String,
    pub user_id: String,
}

/// Asserts `res` is a problem document with `status` and `code`; returns the body.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status (expected code {code})");
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = res.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

/// Runs one async test body against every backend, each as its own test.
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident($app:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($app: $crate::helpers::Backend) $body

                #[tokio::test]
                async fn memory() {
                    run($crate::helpers::Backend::Memory).await
                }

                #[tokio::test]
                async fn postgres() {
                    run($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The HS256 secret tests configure when they mint tokens of their own.
pub const JWT_SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

/// Header `name` of `res` as text, if present.
pub fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().expect("a text header").to_owned())
}

impl TestApp {
    /// Every item of a `/v1/...` list, walking its pages.
    pub async fn all(&self, slug: &str, token: &str, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}?limit=100&cursor={c}"),
                None => format!("{path}?limit=100"),
            };
            let res = self.on(Method::GET, slug, &url, Some(token)).send().await.expect("list");
            assert_eq!(res.status(), StatusCode::OK, "list {path}");
            let page: Value = res.json().await.expect("page");
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }

    /// How many projects tenant `slug` has.
    pub async fn project_count(&self, slug: &str, token: &str) -> usize {
        self.all(slug, token, "/v1/projects").await.len()
    }

    /// How many users tenant `slug` has.
    pub async fn user_count(&self, slug: &str, token: &str) -> usize {
        self.all(slug, token, "/v1/users").await.len()
    }

    /// The port the app listens on.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }
}
