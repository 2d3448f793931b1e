//! Sessions: refresh tokens that rotate (a spent one presented again ends the session, but a
//! retry within the window gets the same successor), idle and absolute expiry on the injected
//! clock, logout, the caller's list of sessions, ending another user's, and a password change.

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::clock::ManualClock;
use plinth_domain::ports::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

/// `POST /v1/auth/refresh` with `token` on `slug`'s host.
async fn post_refresh(app: &TestApp, slug: &str, token: &str) -> reqwest::Response {
    app.on(Method::POST, slug, "/v1/auth/refresh", None).json(&json!({"refresh_token": token})).send().await.unwrap()
}

/// What a refresh answered: the two new tokens, or the 401 problem document.
async fn refresh(app: &TestApp, slug: &str, token: &str) -> Result<(String, String), Value> {
    let res = post_refresh(app, slug, token).await;
    if res.status() != StatusCode::OK {
        return Err(assert_problem(res, 401, "invalid_token").await);
    }
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    let text = |k: &str| body[k].as_str().unwrap().to_owned();
    Ok((text("access_token"), text("refresh_token")))
}

async fn me(app: &TestApp, slug: &str, token: &str) -> StatusCode {
    app.on(Method::GET, slug, "/v1/me", Some(token)).send().await.unwrap().status()
}

async fn on_clock(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_on_clock(backend, vars, clock.clone() as Arc<dyn Clock>).await;
    (app, clock)
}

async fn sessions(app: &TestApp, slug: &str, token: &str) -> Vec<Value> {
    let res = app.on(Method::GET, slug, "/v1/me/sessions", Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

on_every_backend! {
    pgbouncer too;
    async fn a_refresh_rotates_both_tokens_and_the_new_ones_work(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("rotate").await;
        assert!(s.refresh.starts_with("plr_") && s.refresh.len() == 47, "{}", s.refresh);
        let (access, next) = refresh(&app, "rotate", &s.refresh).await.unwrap();
        assert_ne!(next, s.refresh);
        assert_eq!(me(&app, "rotate", &access).await, StatusCode::OK);
        assert_eq!(me(&app, "rotate", &s.token).await, StatusCode::OK, "the old access token lives until it expires");
        let (_, third) = refresh(&app, "rotate", &next).await.unwrap();
        assert_ne!(third, next);
        // The refresh token is the tenant's: another tenant's host does not know it.
        app.signup("rotate-other").await;
        refresh(&app, "rotate-other", &third).await.unwrap_err();
        refresh(&app, "rotate", &third).await.unwrap();
    }

    async fn a_spent_token_presented_after_the_window_ends_the_whole_session(backend: Backend) {
        let (app, clock) = on_clock(backend, &[]).await;
        let s = app.signup("reuse").await;
        let (access, next) = refresh(&app, "reuse", &s.refresh).await.unwrap();
        clock.advance(Duration::from_secs(11));
        refresh(&app, "reuse", &s.refresh).await.unwrap_err();
        // Every token of the session stopped working: the live refresh token, and the access
        // tokens issued before and after the rotation.
        refresh(&app, "reuse", &next).await.unwrap_err();
        assert_eq!(me(&app, "reuse", &access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&app, "reuse", &s.token).await, StatusCode::UNAUTHORIZED);
        // A session of another login goes on.
        let (other, _) = app.sign_in("reuse", "owner@reuse.test").await;
        assert_eq!(me(&app, "reuse", &other).await, StatusCode::OK);
    }

    async fn a_retry_within_the_window_gets_the_same_successor(backend: Backend) {
        let (app, clock) = on_clock(backend, &[("PLINTH_REFRESH_REUSE_S", "10")]).await;
        let s = app.signup("retry").await;
        // Two refreshes racing with one token both succeed, with one successor.
        let (a, b) = tokio::join!(refresh(&app, "retry", &s.refresh), refresh(&app, "retry", &s.refresh));
        let ((access_a, next_a), (access_b, next_b)) = (a.unwrap(), b.unwrap());
        assert_eq!(next_a, next_b);
        clock.advance(Duration::from_secs(10));
        let (_, again) = refresh(&app, "retry", &s.refresh).await.unwrap();
        assert_eq!(again, next_a, "a retry at the window's end gets the same successor");
        for access in [&access_a, &access_b] {
            assert_eq!(me(&app, "retry", access).await, StatusCode::OK);
        }
        // Once the successor is spent, the old token is reuse, however soon.
        let (access, _) = refresh(&app, "retry", &next_a).await.unwrap();
        refresh(&app, "retry", &s.refresh).await.unwrap_err();
        assert_eq!(me(&app, "retry", &access).await, StatusCode::UNAUTHORIZED);
    }

    async fn with_no_window_any_second_use_ends_the_session(backend: Backend) {
        let (app, clock) = on_clock(backend, &[("PLINTH_REFRESH_REUSE_S", "0")]).await;
        let s = app.signup("nowindow").await;
        let (_, next) = refresh(&app, "nowindow", &s.refresh).await.unwrap();
        clock.advance(Duration::from_secs(1));
        refresh(&app, "nowindow", &s.refresh).await.unwrap_err();
        refresh(&app, "nowindow", &next).await.unwrap_err();
    }

    async fn a_session_ends_when_idle_and_at_its_absolute_expiry(backend: Backend) {
        let vars = [("PLINTH_SESSION_IDLE_S", "120"), ("PLINTH_SESSION_MAX_S", "300"), ("PLINTH_TOKEN_TTL", "3600")];
        let (app, clock) = on_clock(backend, &vars).await;
        let s = app.signup("expiry").await;
        // Idle: refreshed within 120 s it lives on; not refreshed for 120 s, it is over.
        clock.advance(Duration::from_secs(100));
        let (_, r1) = refresh(&app, "expiry", &s.refresh).await.unwrap();
        clock.advance(Duration::from_secs(119));
        let (_, r2) = refresh(&app, "expiry", &r1).await.unwrap();
        clock.advance(Duration::from_secs(120));
        refresh(&app, "expiry", &r2).await.unwrap_err();
        // Absolute: refreshed every 60 s (well within the idle limit), it still ends 300 s
        // after its login.
        let (_, mut token) = app.sign_in("expiry", "owner@expiry.test").await;
        for _ in 0..4 {
            clock.advance(Duration::from_secs(60));
            token = refresh(&app, "expiry", &token).await.unwrap().1;
        }
        clock.advance(Duration::from_secs(60));
        refresh(&app, "expiry", &token).await.unwrap_err();
        let live = app.sign_in("expiry", "owner@expiry.test").await.0;
        assert_eq!(sessions(&app, "expiry", &live).await.len(), 1, "only the new login's session is live");
    }

    async fn logout_ends_the_callers_session_and_no_other(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("logout").await;
        let (other, other_refresh) = app.sign_in("logout", "owner@logout.test").await;
        let res = app.on(Method::POST, "logout", "/v1/auth/logout", Some(&s.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "logout", &s.token).await, StatusCode::UNAUTHORIZED);
        refresh(&app, "logout", &s.refresh).await.unwrap_err();
        let res = app.on(Method::POST, "logout", "/v1/auth/logout", Some(&s.token)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        let res = app.on(Method::POST, "logout", "/v1/auth/logout", None).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
        assert_eq!(me(&app, "logout", &other).await, StatusCode::OK);
        refresh(&app, "logout", &other_refresh).await.unwrap();
    }

    async fn the_list_shows_the_callers_live_sessions_only(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("listing").await;
        let res = app
            .on(Method::POST, "listing", "/v1/auth/login", None)
            .header("user-agent", format!("plinth-test/1 {}", "x".repeat(300)))
            .json(&json!({"email": "owner@listing.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let second = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        let (_, member) = app.user("listing", &s.token, "m@listing.test", "member").await;
        let other = app.signup("listing-other").await;

        let listed = sessions(&app, "listing", &second).await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0]["current"], true, "newest first: this one");
        assert_eq!(listed[1]["current"], false);
        let ua = listed[0]["user_agent"].as_str().unwrap();
        assert!(ua.starts_with("plinth-test/1 ") && ua.chars().count() == 256, "{ua}");
        assert_eq!(listed[0]["ip"], "127.0.0.1");
        for field in ["id", "created_at", "last_used_at"] {
            assert!(listed[0][field].is_string(), "{field}");
        }
        assert!(listed[0].get("refresh_token").is_none() && listed[0].get("user_id").is_none());
        let first_id = listed[1]["id"].as_str().unwrap().to_owned();

        // Nobody else's: the member and another tenant's owner see one each, their own.
        let of_member = sessions(&app, "listing", &member).await;
        assert_eq!(of_member.len(), 1);
        assert_ne!(of_member[0]["id"], listed[0]["id"]);
        assert_eq!(sessions(&app, "listing-other", &other.token).await.len(), 1);
        // Nobody else's can be ended through the caller's list: 404, and it lives on.
        let theirs = of_member[0]["id"].as_str().unwrap();
        for (slug, token, id) in
            [("listing", second.as_str(), theirs), ("listing-other", other.token.as_str(), first_id.as_str())]
        {
            let path = format!("/v1/me/sessions/{id}");
            let res = app.on(Method::DELETE, slug, &path, Some(token)).send().await.unwrap();
            assert_problem(res, 404, "not_found").await;
        }
        assert_eq!(me(&app, "listing", &member).await, StatusCode::OK);
        let res = app.on(Method::DELETE, "listing", "/v1/me/sessions/not-an-id", Some(&second)).send().await.unwrap();
        assert_problem(res, 404, "not_found").await;

        // Ending one's own other session: its tokens stop working, this one's don't.
        let path = format!("/v1/me/sessions/{first_id}");
        let res = app.on(Method::DELETE, "listing", &path, Some(&second)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "listing", &s.token).await, StatusCode::UNAUTHORIZED);
        refresh(&app, "listing", &s.refresh).await.unwrap_err();
        assert_eq!(sessions(&app, "listing", &second).await.len(), 1);
    }

    async fn ending_a_users_sessions_follows_the_rules_for_changing_them(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("endall").await;
        let (admin_id, admin) = app.user("endall", &s.token, "a@endall.test", "admin").await;
        let (member_id, member) = app.user("endall", &s.token, "m@endall.test", "member").await;
        let (owner2_id, owner2) = app.user("endall", &s.token, "o@endall.test", "owner").await;
        let end = |token: String, id: String| {
            let app = &app;
            async move {
                app.on(Method::DELETE, "endall", &format!("/v1/users/{id}/sessions"), Some(&token)).send().await.unwrap()
            }
        };
        assert_problem(end(member.clone(), admin_id.clone()).await, 403, "forbidden").await;
        assert_problem(end(admin.clone(), owner2_id.clone()).await, 403, "forbidden").await;
        assert_eq!(me(&app, "endall", &owner2).await, StatusCode::OK, "a refusal ends nothing");
        assert_problem(end(admin.clone(), uuid::Uuid::now_v7().to_string()).await, 404, "not_found").await;
        // Another tenant's owner, on their own host, finds no such user.
        let other = app.signup("endall-other").await;
        let res = app
            .on(Method::DELETE, "endall-other", &format!("/v1/users/{member_id}/sessions"), Some(&other.token))
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "not_found").await;
        assert_eq!(me(&app, "endall", &member).await, StatusCode::OK);

        assert_eq!(end(admin.clone(), member_id).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "endall", &member).await, StatusCode::UNAUTHORIZED);
        assert_eq!(end(s.token.clone(), owner2_id).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "endall", &owner2).await, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&app, "endall", &admin).await, StatusCode::OK);
        assert_eq!(me(&app, "endall", &s.token).await, StatusCode::OK);
    }

    async fn a_password_change_ends_every_other_session_and_keeps_this_one(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("passwd").await;
        let (other, other_refresh) = app.sign_in("passwd", "owner@passwd.test").await;
        let change = |current: &str, new: &str| {
            app.on(Method::PUT, "passwd", "/v1/me/password", Some(&s.token))
                .json(&json!({"current_password": current, "new_password": new}))
                .send()
        };
        assert_problem(change("not the password", "a brand new passphrase").await.unwrap(), 401, "invalid_credentials")
            .await;
        let body = assert_problem(change(PASSWORD, "short").await.unwrap(), 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "new_password");
        assert_eq!(me(&app, "passwd", &other).await, StatusCode::OK, "a refused change ends nothing");

        let res = change(PASSWORD, "a brand new passphrase").await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(me(&app, "passwd", &s.token).await, StatusCode::OK);
        refresh(&app, "passwd", &s.refresh).await.unwrap();
        assert_eq!(me(&app, "passwd", &other).await, StatusCode::UNAUTHORIZED);
        refresh(&app, "passwd", &other_refresh).await.unwrap_err();
        let login = |password: &str| {
            app.on(Method::POST, "passwd", "/v1/auth/login", None)
                .json(&json!({"email": "owner@passwd.test", "password": password}))
                .send()
        };
        assert_problem(login(PASSWORD).await.unwrap(), 401, "invalid_credentials").await;
        assert_eq!(login("a brand new passphrase").await.unwrap().status(), StatusCode::OK);
    }

    async fn a_role_change_or_a_deletion_ends_the_users_sessions(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("rolechange").await;
        let (id, _) = app.user("rolechange", &s.token, "m@rolechange.test", "member").await;
        let (_, refresh_token) = app.sign_in("rolechange", "m@rolechange.test").await;
        let res = app
            .on(Method::PATCH, "rolechange", &format!("/v1/users/{id}"), Some(&s.token))
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        refresh(&app, "rolechange", &refresh_token).await.unwrap_err();
        let (_, refresh_token) = app.sign_in("rolechange", "m@rolechange.test").await;
        let res = app.on(Method::DELETE, "rolechange", &format!("/v1/users/{id}"), Some(&s.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        refresh(&app, "rolechange", &refresh_token).await.unwrap_err();
    }

    async fn a_bad_spent_or_ended_refresh_token_gets_one_answer(backend: Backend) {
        let (app, clock) = on_clock(backend, &[]).await;
        let s = app.signup("oracle").await;
        let (_, next) = refresh(&app, "oracle", &s.refresh).await.unwrap();
        clock.advance(Duration::from_secs(60));
        let (ended_access, ended) = app.sign_in("oracle", "owner@oracle.test").await;
        let res = app.on(Method::POST, "oracle", "/v1/auth/logout", Some(&ended_access)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let unknown = format!("plr_{}", "A".repeat(43));
        let mut answers = Vec::new();
        for token in [
            "".to_owned(),
            "plr_".to_owned(),
            unknown,
            format!("{next}x"),
            next.to_uppercase(),
            "\u{0}".repeat(47),
            s.refresh.clone(),
            ended.clone(),
            "é".repeat(40),
        ] {
            let body = refresh(&app, "oracle", &token).await.unwrap_err();
            assert!(!body.to_string().contains("plr_"), "the answer never shows a token: {body}");
            answers.push((body["detail"].clone(), body["title"].clone()));
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "one answer whatever is wrong: {answers:?}");
        // A body that is not a refresh request is the body's error, not a token's.
        let res = app.on(Method::POST, "oracle", "/v1/auth/refresh", None).json(&json!({"refresh_token": 7})).send().await;
        assert_problem(res.unwrap(), 422, "validation_failed").await;
    }

    async fn refresh_counts_under_the_login_policy_on_the_tenants_host(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_LOGIN_QUOTA", "3")]).await;
        let s = app.signup("refreshlimit").await;
        let mut token = s.refresh;
        for _ in 0..2 {
            let res = post_refresh(&app, "refreshlimit", &token).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"login\";q=3;w=60"));
            token = res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
        }
        assert_problem(post_refresh(&app, "refreshlimit", &token).await, 429, "rate_limited").await;
        let res = app
            .request(Method::POST, "localhost", "/v1/auth/refresh")
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 429, "the platform host counts it too");
    }
    async fn password_change_attempts_count_under_the_login_policy_too(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_LOGIN_QUOTA", "3")]).await;
        let s = app.signup("pwlimit").await;
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let res = app
                .on(Method::PUT, "pwlimit", "/v1/me/password", Some(&s.token))
                .json(&json!({"current_password": "a wrong guess", "new_password": "a brand new passphrase"}))
                .send()
                .await
                .unwrap();
            if res.status().as_u16() == 429 {
                assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"login\";q=3;w=60"));
            }
            statuses.push(res.status().as_u16());
        }
        // The signup took one of the address's three login attempts; the tenant's own quota is
        // far from spent, so only the login policy can refuse.
        assert_eq!(statuses, [401, 401, 429, 429], "guesses of the current password are limited like logins");
        assert_eq!(me(&app, "pwlimit", &s.token).await, StatusCode::OK, "other requests are not");
    }
    async fn no_answer_carrying_a_refresh_token_is_ever_replayed_from_an_idempotency_key(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let s = app.signup("noreplay").await;
        let key = "the-same-key-every-time";
        let mut seen = Vec::new();
        for _ in 0..2 {
            let res = app
                .on(Method::POST, "noreplay", "/v1/auth/login", None)
                .header("Idempotency-Key", key)
                .json(&json!({"email": "owner@noreplay.test", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, "idempotent-replayed"), None, "a login is never a replay");
            seen.push(res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned());
        }
        let res = app
            .on(Method::POST, "noreplay", "/v1/auth/refresh", None)
            .header("Idempotency-Key", key)
            .json(&json!({"refresh_token": s.refresh}))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&res, "idempotent-replayed"), None, "a refresh is never a replay");
        seen.push(res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned());
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "each answer minted its own refresh token");
        // An idempotent write with the same key answers from its store: it must not hold a token.
        let project = |k: &str| {
            app.on(Method::POST, "noreplay", "/v1/projects", Some(&s.token))
                .header("Idempotency-Key", k)
                .json(&json!({"name": "kept"}))
                .send()
        };
        project(key).await.unwrap();
        let replay = project(key).await.unwrap();
        assert_eq!(header(&replay, "idempotent-replayed").as_deref(), Some("true"));
        let text = replay.text().await.unwrap();
        assert!(seen.iter().all(|t| !text.contains(t.as_str())) && !text.contains("plr_"), "{text}");
    }
}
