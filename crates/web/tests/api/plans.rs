//! Plans as data: a plans file sets each plan's quota and limits; a write past a limit is
//! `403 plan_limit_reached` with the limit and the usage, however many race for the last
//! place; `GET /v1/tenant` shows the limits, and the usage to the tenant's own callers.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, header};
use crate::on_every_backend;

/// A plans file whose `free` plan is small, in a directory of its own.
fn plans_file() -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("plans.json");
    let plans = json!({"plans": [
        {"name": "free", "requests_per_minute": 5000,
         "limits": {"members": 2, "projects": 3, "webhooks": 1, "api_keys": 1}},
        {"name": "scale", "requests_per_minute": 50000, "limits": {}}
    ]});
    std::fs::write(&path, plans.to_string()).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("plinth-plans-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

on_every_backend! {
    async fn a_write_past_the_plans_limit_is_refused_with_the_limit_and_the_usage(backend: Backend) {
        let (_dir, path) = plans_file();
        let app = Arc::new(TestApp::spawn_with(backend, &[("PLINTH_PLANS_FILE", &path), ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")]).await);
        let owner = app.signup("small").await.token;

        // 20 at once for 3 places: exactly 3 are made.
        let mut racing = Vec::new();
        for i in 0..20 {
            let (app, owner) = (app.clone(), owner.clone());
            racing.push(tokio::spawn(async move {
                let res = app.on(Method::POST, "small", "/v1/projects", Some(&owner)).json(&json!({"name": format!("p{i}")})).send().await.unwrap();
                res.status()
            }));
        }
        let mut made = 0;
        for r in racing {
            match r.await.unwrap() {
                StatusCode::CREATED => made += 1,
                StatusCode::FORBIDDEN => {}
                other => panic!("{other}"),
            }
        }
        assert_eq!(made, 3);
        let res = app.on(Method::POST, "small", "/v1/projects", Some(&owner)).json(&json!({"name": "one more"})).send().await.unwrap();
        let problem = assert_problem(res, 403, "plan_limit_reached").await;
        assert_eq!((problem["resource"].as_str(), problem["limit"].as_u64(), problem["usage"].as_u64()), (Some("projects"), Some(3), Some(3)), "{problem}");

        // The owner is one member; one more fits.
        let add = |email: &str| {
            app.on(Method::POST, "small", "/v1/users", Some(&owner))
                .json(&json!({"email": email, "password": crate::helpers::PASSWORD, "role": "member"}))
                .send()
        };
        assert_eq!(add("second@small.test").await.unwrap().status(), StatusCode::CREATED);
        let problem = assert_problem(add("third@small.test").await.unwrap(), 403, "plan_limit_reached").await;
        assert_eq!(problem["resource"], "members");

        let hook = |n: u8| {
            app.on(Method::POST, "small", "/v1/webhooks", Some(&owner))
                .json(&json!({"url": format!("http://127.0.0.1:9/{n}"), "events": ["project.created"]}))
                .send()
        };
        assert_eq!(hook(1).await.unwrap().status(), StatusCode::CREATED);
        assert_problem(hook(2).await.unwrap(), 403, "plan_limit_reached").await;
        let key = |n: u8| {
            app.on(Method::POST, "small", "/v1/api-keys", Some(&owner)).json(&json!({"name": format!("k{n}"), "scopes": ["projects:read"]})).send()
        };
        assert_eq!(key(1).await.unwrap().status(), StatusCode::CREATED);
        assert_problem(key(2).await.unwrap(), 403, "plan_limit_reached").await;

        // The plan's quota is the file's.
        let res = app.on(Method::GET, "small", "/v1/projects", Some(&owner)).send().await.unwrap();
        assert!(header(&res, "ratelimit-policy").unwrap().contains("q=5000"));

        // The tenant shows its limits to anyone, and its usage to its own.
        let public: Value = app.on(Method::GET, "small", "/v1/tenant", None).send().await.unwrap().json().await.unwrap();
        assert_eq!(public["plan"], "free");
        assert_eq!(public["limits"], json!({"members": 2, "projects": 3, "webhooks": 1, "api_keys": 1}));
        assert!(public.get("usage").is_none(), "{public}");
        let own = app.on(Method::GET, "small", "/v1/tenant", Some(&owner)).send().await.unwrap();
        assert!(header(&own, "cache-control").unwrap().starts_with("private"));
        let own: Value = own.json().await.unwrap();
        assert_eq!(own["usage"], json!({"members": 2, "projects": 3, "webhooks": 1, "api_keys": 1}));
        let other = app.signup("neighbour").await.token;
        let foreign: Value = app.on(Method::GET, "small", "/v1/tenant", Some(&other)).send().await.unwrap().json().await.unwrap();
        assert!(foreign.get("usage").is_none(), "another tenant's token sees no usage: {foreign}");
    }
}

#[tokio::test]
async fn the_built_in_plans_keep_todays_quotas_and_limits() {
    let app = TestApp::spawn(Backend::Memory).await;
    let owner = app.signup("roomy").await.token;
    let view: Value =
        app.on(Method::GET, "roomy", "/v1/tenant", Some(&owner)).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["limits"], json!({"members": null, "projects": null, "webhooks": 100, "api_keys": 100}));
    assert_eq!(view["usage"]["members"], 1);
}
