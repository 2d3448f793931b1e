//! The API tests' helpers on top of the shared harness: the backend a test runs on, problem
//! assertions, and walking lists.

use std::sync::Arc;

use plinth_domain::clock::SystemClock;
use plinth_domain::ports::Clock;
use plinth_domain::usecases::Ports;
use plinth_testkit::TestDatabase;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// Which storage the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory adapters.
    Memory,
    /// A fresh PostgreSQL database of this test's own.
    Postgres,
    /// The same, reached through a PgBouncer of the test's own in transaction mode, with the
    /// statement cache off and the job queue's `LISTEN` on a direct connection.
    PgBouncer,
}

pub use crate::harness::{JWT_SECRET, PASSWORD, TestApp};

impl TestApp {
    /// An app on `backend` with the harness's defaults and `vars` on top.
    pub async fn spawn_with(backend: Backend, vars: &[(&str, &str)]) -> Self {
        Self::spawn_adapted(backend, vars, |_| {}).await
    }

    /// As [`TestApp::spawn_with`], with `adapt` wrapping or replacing adapters (to count what
    /// reaches a port).
    pub async fn spawn_adapted(backend: Backend, vars: &[(&str, &str)], adapt: impl FnOnce(&mut Ports)) -> Self {
        Self::spawn_adapted_on_clock(backend, vars, Arc::new(SystemClock::new()), adapt).await
    }

    /// As [`TestApp::spawn_with`], with every adapter that keeps time keeping it by `clock`.
    pub async fn spawn_on_clock(backend: Backend, vars: &[(&str, &str)], clock: Arc<dyn Clock>) -> Self {
        Self::spawn_adapted_on_clock(backend, vars, clock, |_| {}).await
    }

    /// As [`TestApp::spawn_on_clock`], with `adapt` wrapping or replacing adapters.
    pub async fn spawn_adapted_on_clock(
        backend: Backend,
        vars: &[(&str, &str)],
        clock: Arc<dyn Clock>,
        adapt: impl FnOnce(&mut Ports),
    ) -> Self {
        match backend {
            Backend::Memory => Self::start_wired(vars, None, clock, adapt).await,
            Backend::Postgres => Self::start_wired(vars, Some(TestDatabase::new().await), clock, adapt).await,
            Backend::PgBouncer => Self::start_pooled(vars, TestDatabase::new().await, true, clock, adapt).await,
        }
    }

    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }
}

/// Sends `r`, asserts the answer's `status`, and returns its JSON body.
pub async fn json_of(r: RequestBuilder, status: StatusCode) -> Value {
    let res = r.send().await.expect("request");
    assert_eq!(res.status(), status);
    res.json().await.expect("json")
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

/// Runs one async test body against every backend, each as its own test: in memory and on
/// PostgreSQL; and, after a leading `pgbouncer too;`, through PgBouncer as well.
#[macro_export]
macro_rules! on_every_backend {
    (@one $name:ident, $app:ident, $body:block, [$($test:ident $backend:ident),*]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::helpers::Backend) $body

            $(
                #[tokio::test]
                async fn $test() {
                    run($crate::helpers::Backend::$backend).await
                }
            )*
        }
    };
    (pgbouncer too; $(async fn $name:ident($app:ident: Backend) $body:block)*) => {
        $( $crate::on_every_backend!(@one $name, $app, $body, [memory Memory, postgres Postgres, pgbouncer PgBouncer]); )*
    };
    ($(async fn $name:ident($app:ident: Backend) $body:block)*) => {
        $( $crate::on_every_backend!(@one $name, $app, $body, [memory Memory, postgres Postgres]); )*
    };
}

/// Header `name` of `res` as text, if present.
pub fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().expect("a text header").to_owned())
}

impl TestApp {
    /// Every item of a `/v1/...` list (its path may carry filters), walking its pages.
    pub async fn all(&self, slug: &str, token: &str, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let then = if path.contains('?') { '&' } else { '?' };
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{then}limit=100&cursor={c}"),
                None => format!("{path}{then}limit=100"),
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
}

/// The session id (`sid`) an access token carries, read from its payload (not verified).
pub fn sid_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims");
    claims["sid"].as_str().expect("a sid").to_owned()
}
