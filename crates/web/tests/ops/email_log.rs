//! The embedded default's mail: with no SMTP server configured, each message is written to
//! the log (recipient, subject, link), so every flow can be walked with `cargo run` alone. Here
//! the real binary's worker writes them, and the test follows the links it logged.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Process, slug};

/// Waits for the log line of the message to `to` whose link goes to `page`; returns the line
/// and the token in its link.
async fn logged_message(app: &Process, to: &str, page: &str) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = app.stdout().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|line| {
            line["target"] == "plinth::email"
                && line.to_string().contains(to)
                && line.to_string().contains(&format!("{page}#token="))
        });
        if let Some(line) = found {
            let text = line.to_string();
            let start = text.find("#token=").map(|i| i + "#token=".len()).unwrap_or_default();
            let token: String =
                text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
            return (line, token);
        }
        assert!(Instant::now() < deadline, "no logged message to {to} for {page}:\n{}", app.stdout());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_smtp_every_link_is_logged_and_can_be_followed() {
    let app = Process::start(&[("PLINTH_WORKER", "true")]).await;
    assert!(
        app.stdout().contains("no SMTP server is configured"),
        "start-up says messages go to the log:\n{}",
        app.stdout()
    );
    let slug = slug("maillog");
    let host = format!("{slug}.localhost");
    let owner = format!("owner@{slug}.test");
    let res = app
        .request(Method::POST, "localhost", "/v1/signup")
        .json(&json!({"tenant_slug": slug, "tenant_name": "Mail Log", "email": owner, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    // The owner's verification link.
    let (line, verify) = logged_message(&app, &owner, "/verify-email").await;
    assert!(line.to_string().contains("Confirm your email address"), "{line}");
    assert!(line.to_string().contains(&format!("https://{slug}.localhost/verify-email#token=plv_")), "{line}");
    let res =
        app.request(Method::POST, &host, "/v1/auth/verify-email").json(&json!({"token": verify})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // An invitation, accepted through its logged link.
    let grace = format!("grace@{slug}.test");
    let res = app
        .request(Method::POST, &host, "/v1/invitations")
        .bearer_auth(&token)
        .json(&json!({"email": grace, "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, invitation) = logged_message(&app, &grace, "/invitations/accept").await;
    assert!(invitation.starts_with("pli_"), "{invitation}");
    let res = app
        .request(Method::POST, &host, "/v1/invitations/accept")
        .json(&json!({"token": invitation, "password": "grace's own passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let grace_token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let res = app.request(Method::GET, &host, "/v1/me").bearer_auth(&grace_token).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["user"]["email_verified"], true);

    // Only the log adapter's own lines carry a token: no access-log or other line does.
    for line in app.stdout().lines().filter(|l| l.contains(&invitation) || l.contains(&verify)) {
        assert!(line.contains("\"target\":\"plinth::email\""), "a token outside the log adapter's line: {line}");
    }
}
