//! `Idempotency-Key` on `POST /v1/projects` and `POST /v1/users`: a retry gets the first answer
//! and does nothing twice; another body is refused; keys are scoped to the tenant and user.

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::clock::ManualClock;
use reqwest::header::HeaderValue;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

async fn create_project(app: &TestApp, slug: &str, token: &str, key: &str, name: &str) -> Response {
    app.on(Method::POST, slug, "/v1/projects", Some(token))
        .header("idempotency-key", key)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
}

/// Status, `Location` and body.
async fn answer(res: Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let location = header(&res, "location");
    (status, location, res.json().await.unwrap())
}

on_every_backend! {
    async fn a_key_is_free_again_once_it_expires_a_day_later(backend: Backend) {
        let clock = Arc::new(ManualClock::new());
        let app = TestApp::spawn_on_clock(backend, &[], clock.clone()).await;
        let token = app.signup("acme").await.token;
        assert_eq!(create_project(&app, "acme", &token, "key-1", "Apollo").await.status(), StatusCode::CREATED);
        clock.advance(Duration::from_secs(24 * 3600 - 1));
        // The signup's token has expired by now (an hour).
        let token = app.login("acme", "owner@acme.test").await;
        let res = create_project(&app, "acme", &token, "key-1", "Artemis").await;
        assert_problem(res, 422, "idempotency_key_reused").await;
        clock.advance(Duration::from_secs(1));
        let res = create_project(&app, "acme", &token, "key-1", "Artemis").await;
        assert_eq!(res.status(), StatusCode::CREATED, "the key has expired: a new request");
        assert_eq!(app.project_count("acme", &token).await, 2);
    }

    async fn a_retry_with_the_same_key_and_body_gets_the_first_answer_and_creates_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let first = answer(create_project(&app, "acme", &token, "key-1", "Apollo").await).await;
        assert_eq!(first.0, StatusCode::CREATED);
        assert!(first.1.is_some());
        for _ in 0..3 {
            let again = answer(create_project(&app, "acme", &token, "key-1", "Apollo").await).await;
            assert_eq!(again, first, "status, Location and body replayed");
        }
        let all = app.all("acme", &token, "/v1/projects").await;
        assert_eq!(all, std::slice::from_ref(&first.2), "created once");
        // A new key is a new request.
        let other = answer(create_project(&app, "acme", &token, "key-2", "Apollo").await).await;
        assert_eq!(other.0, StatusCode::CREATED);
        assert_ne!(other.2["id"], first.2["id"]);
        assert_eq!(app.project_count("acme", &token).await, 2);
    }

    async fn the_same_key_with_another_body_is_refused_and_creates_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let first = answer(create_project(&app, "acme", &token, "key-1", "Apollo").await).await;
        assert_eq!(first.0, StatusCode::CREATED);
        let res = create_project(&app, "acme", &token, "key-1", "Artemis").await;
        assert_problem(res, 422, "idempotency_key_reused").await;
        // Semantically the same JSON, but other bytes: still another body.
        let res = app
            .on(Method::POST, "acme", "/v1/projects", Some(&token))
            .header("idempotency-key", "key-1")
            .header("content-type", "application/json")
            .body(r#"{ "name": "Apollo" }"#)
            .send()
            .await
            .unwrap();
        assert_problem(res, 422, "idempotency_key_reused").await;
        assert_eq!(app.all("acme", &token, "/v1/projects").await, std::slice::from_ref(&first.2));
        // The first answer is still what the original body gets.
        assert_eq!(answer(create_project(&app, "acme", &token, "key-1", "Apollo").await).await, first);
    }

    async fn a_refused_request_is_replayed_as_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let res = create_project(&app, "acme", &token, "bad-name", "   ").await;
        let first = assert_problem(res, 422, "validation_failed").await;
        let res = create_project(&app, "acme", &token, "bad-name", "   ").await;
        let again = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(again, first);
        assert_eq!(app.project_count("acme", &token).await, 0);
    }

    async fn a_malformed_key_is_a_bad_request_and_creates_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("acme").await.token;
        let too_long = "k".repeat(256);
        let keys = [
            HeaderValue::from_static(""),
            HeaderValue::from_str(&too_long).unwrap(),
            HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
            HeaderValue::from_bytes(b"tab\there").unwrap(),
        ];
        for key in keys {
            let res = app
                .on(Method::POST, "acme", "/v1/projects", Some(&token))
                .header("idempotency-key", key.clone())
                .json(&json!({"name": "Apollo"}))
                .send()
                .await
                .unwrap();
            let body = assert_problem(res, 400, "bad_request").await;
            assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
            let res = app
                .on(Method::POST, "acme", "/v1/users", Some(&token))
                .header("idempotency-key", key)
                .json(&json!({"email": "ada@acme.test", "password": PASSWORD, "role": "member"}))
                .send()
                .await
                .unwrap();
            assert_problem(res, 400, "bad_request").await;
        }
        assert_eq!(app.project_count("acme", &token).await, 0);
        assert_eq!(app.user_count("acme", &token).await, 1);
        // 255 printable characters, spaces and punctuation included, make a key.
        let longest = format!("a b~!{}", "k".repeat(250));
        assert_eq!(longest.len(), 255);
        assert_eq!(create_project(&app, "acme", &token, &longest, "Apollo").await.status(), StatusCode::CREATED);
    }

    async fn keys_are_scoped_to_the_user_and_the_tenant(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await.token;
        let (_, member) = app.user("acme", &owner, "mia@acme.test", "member").await;
        let bravo = app.signup("bravo").await.token;
        let mine = answer(create_project(&app, "acme", &owner, "shared-key", "Apollo").await).await;
        let theirs = answer(create_project(&app, "acme", &member, "shared-key", "Apollo").await).await;
        let elsewhere = answer(create_project(&app, "bravo", &bravo, "shared-key", "Apollo").await).await;
        for other in [&theirs, &elsewhere] {
            assert_eq!(other.0, StatusCode::CREATED);
            assert_ne!(other.2["id"], mine.2["id"], "another user's or tenant's key is another request");
        }
        // Another user may even use the key with another body.
        let res = create_project(&app, "acme", &member, "owner-only", "Zeus").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = create_project(&app, "acme", &owner, "owner-only", "Hera").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(app.project_count("acme", &owner).await, 4);
        assert_eq!(app.project_count("bravo", &bravo).await, 1);
    }

    async fn creating_a_user_with_a_key_twice_creates_one_user(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await.token;
        let body = json!({"email": "ada@acme.test", "password": PASSWORD, "role": "admin"});
        let send = |body: Value| {
            app.on(Method::POST, "acme", "/v1/users", Some(&owner))
                .header("idempotency-key", "add-ada")
                .json(&body)
                .send()
        };
        let first = answer(send(body.clone()).await.unwrap()).await;
        assert_eq!(first.0, StatusCode::CREATED);
        let again = answer(send(body.clone()).await.unwrap()).await;
        assert_eq!(again, first, "not a 409: the first answer again");
        let mut other = body.clone();
        other["role"] = json!("member");
        assert_problem(send(other).await.unwrap(), 422, "idempotency_key_reused").await;
        let users = app.all("acme", &owner, "/v1/users").await;
        assert_eq!(users.len(), 2);
        assert_eq!(users[0], first.2);
    }
}

on_every_backend! {
    async fn copies_of_one_request_racing_get_one_answer_and_create_one_user(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await.token;
        let body = json!({"email": "ada@acme.test", "password": PASSWORD, "role": "member"});
        let send = || {
            app.on(Method::POST, "acme", "/v1/users", Some(&owner))
                .header("idempotency-key", "add-ada-once")
                .json(&body)
                .send()
        };
        let answers = futures_util::future::join_all((0..5).map(|_| async { answer(send().await.unwrap()).await })).await;
        for a in &answers {
            assert_eq!(a, &answers[0], "every copy gets the one answer, none a 409");
        }
        assert_eq!(answers[0].0, StatusCode::CREATED);
        assert_eq!(app.user_count("acme", &owner).await, 2, "one user created");
    }

    async fn a_request_cut_off_midway_leaves_its_key_free_for_the_retry(backend: Backend) {
        use tokio::io::AsyncWriteExt as _;
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await.token;
        let body = json!({"email": "ada@acme.test", "password": PASSWORD, "role": "member"}).to_string();
        let head = format!(
            "POST /v1/users HTTP/1.1\r\nHost: acme.localhost\r\nAuthorization: Bearer {owner}\r\n\
             Idempotency-Key: cut-off\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The client sends the whole request and resets the connection while it is handled
        // (a password hash takes longer than this), so the handler is dropped midway.
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port())).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        stream.set_zero_linger().unwrap();
        drop(stream);

        let retry = app
            .on(Method::POST, "acme", "/v1/users", Some(&owner))
            .header("idempotency-key", "cut-off")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, _, created) = answer(retry).await;
        assert_eq!(status, StatusCode::CREATED, "the retry runs (or replays), it is never refused: {created}");
        assert_eq!(created["email"], "ada@acme.test");
        assert_eq!(app.user_count("acme", &owner).await, 2, "created once");
    }
}
