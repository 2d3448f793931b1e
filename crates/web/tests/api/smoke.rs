//! The README's walk-through: signup, login, create, list.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;
use crate::on_every_backend;

on_every_backend! {
    pgbouncer too;
    async fn signup_login_create_and_list(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        let token = app.login("acme", "owner@acme.test").await;
        let created = app.project("acme", &token, "Apollo").await;
        assert_eq!(created["name"], "Apollo");
        let res = app.on(Method::GET, "acme", "/v1/projects", Some(&token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["items"][0]["id"], created["id"]);
        assert_eq!(page["next_cursor"], Value::Null);
    }
}
