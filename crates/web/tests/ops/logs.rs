//! Logs: JSON lines by default, one access-log line per request with its id, tenant, route
//! template, status and latency, and never a password or a token.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Process, slug};

/// Every stdout line as JSON; fails on a line that is not.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

async fn logs_of_a_signup_and_login_hold_no_secret(level: &str) {
    let mut app = Process::start(&[("PLINTH_LOG", level)]).await;
    let slug = slug("logs");
    let host = format!("{slug}.localhost");
    let email = format!("owner@{slug}.test");
    // A password of this test's own, so nothing else can have printed it.
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());

    let res = app
        .request(Method::POST, "localhost", "/v1/signup")
        .json(&json!({"tenant_slug": slug, "tenant_name": "Logs", "email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let signup = res.json::<Value>().await.unwrap();
    let signup_token = signup["access_token"].as_str().unwrap().to_owned();
    let mut refresh_tokens = vec![signup["refresh_token"].as_str().unwrap().to_owned()];
    let res = app
        .request(Method::POST, &host, "/v1/auth/login")
        .header("x-request-id", "login-request-1")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let login = res.json::<Value>().await.unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    refresh_tokens.push(login["refresh_token"].as_str().unwrap().to_owned());
    let res = app.request(Method::GET, &host, "/v1/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Two rotations, then the first token again: reuse, which ends the session (and says so
    // in the log, by the session's id only).
    for expected in [StatusCode::OK, StatusCode::OK, StatusCode::UNAUTHORIZED] {
        let spend = if expected == StatusCode::OK { refresh_tokens.last() } else { refresh_tokens.get(1) };
        let res = app
            .request(Method::POST, &host, "/v1/auth/refresh")
            .json(&json!({"refresh_token": spend.unwrap()}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
        if expected == StatusCode::OK {
            refresh_tokens.push(res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned());
        }
    }
    // A failed login logs its attempt, not the password tried.
    let wrong = format!("{password}-wrong");
    let res = app
        .request(Method::POST, &host, "/v1/auth/login")
        .json(&json!({"email": email, "password": wrong}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    app.signal("TERM");
    let status = app.wait_exit(Duration::from_secs(40)).await.expect("exits");
    assert_eq!(status.code(), Some(0));
    let (stdout, stderr) = (app.stdout(), app.stderr());
    for (what, secret) in [("password", &password), ("wrong password", &wrong), ("token", &token)] {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()), "the {what} was logged");
    }
    for t in &refresh_tokens {
        assert!(!stdout.contains(t.as_str()) && !stderr.contains(t.as_str()), "a refresh token was logged");
        // Not even its secret part.
        assert!(!stdout.contains(&t[4..]) && !stderr.contains(&t[4..]), "a refresh token was logged");
    }
    for t in [&token, &signup_token] {
        // Not even the signature of a token.
        let signature = t.rsplit('.').next().unwrap();
        assert!(!stdout.contains(signature) && !stderr.contains(signature), "a token's signature was logged");
    }

    let lines = json_lines(&stdout);
    let access: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    let login = access
        .iter()
        .find(|l| l["request_id"] == "login-request-1")
        .unwrap_or_else(|| panic!("no access-log line of the login:\n{stdout}"));
    assert_eq!(login["route"], "/v1/auth/login", "{login}");
    assert_eq!(login["method"], "POST", "{login}");
    assert_eq!(login["tenant"], slug.as_str(), "{login}");
    assert_eq!(login["status"], 200, "{login}");
    assert!(login["latency_us"].as_u64().is_some_and(|us| us > 0), "{login}");
    assert_eq!(login["level"], "INFO");
    // One access-log line per request on the tenant's host: two logins, `me` and three
    // refreshes (signup is on the platform host).
    let of_tenant = access.iter().filter(|l| l["tenant"] == slug.as_str()).count();
    assert_eq!(of_tenant, 6, "{stdout}");
}

#[tokio::test]
async fn logs_are_json_lines_with_one_access_line_per_request_and_no_password_or_token() {
    logs_of_a_signup_and_login_hold_no_secret("info").await;
}

#[tokio::test]
async fn debug_logs_hold_no_password_or_token_either() {
    logs_of_a_signup_and_login_hold_no_secret("debug").await;
}
