//! Attacks on tokens that need an asymmetric configuration: RS256 end to end, HS/RS
//! confusion, a key outside the verification set, and key rotation.

use std::time::Duration;

use plinth_domain::ports::TokenService as _;
use plinth_domain::values::Role;
use plinth_jwt::{AsymmetricAlgorithm, JwtConfig, JwtTokens, KeyMaterial, KeySource};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestApp, assert_problem};

fn fixture(name: &str) -> String {
    format!("{}/../jwt/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn rs256_app() -> TestApp {
    let private = fixture("rsa-a.pem");
    let public = fixture("rsa-a.pub.pem");
    TestApp::spawn_with(
        Backend::Memory,
        &[
            ("PLINTH_JWT_ALGORITHM", "RS256"),
            ("PLINTH_JWT_PRIVATE_KEY_FILE", &private),
            ("PLINTH_JWT_PUBLIC_KEY_FILES", &public),
        ],
    )
    .await
}

#[tokio::test]
async fn rs256_tokens_work_end_to_end() {
    let app = rs256_app().await;
    let token = app.signup("rsa").await.token;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some("rsa-a")));
    let res = app.on(Method::GET, "rsa", "/v1/me", Some(&token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_public_key_is_refused() {
    let app = rs256_app().await;
    let s = app.signup("confused").await;
    let public_pem = std::fs::read(fixture("rsa-a.pub.pem")).unwrap();
    let forged = JwtTokens::new(
        JwtConfig {
            keys: KeySource::hs256(public_pem),
            issuer: "plinth".into(),
            audience: "plinth-api".into(),
            ttl: Duration::from_secs(600),
        },
        std::sync::Arc::new(plinth_domain::clock::SystemClock::new()),
    )
    .unwrap()
    .issue(
        s.user_id.parse().unwrap(),
        s.tenant_id.parse().unwrap(),
        Role::Owner,
        0,
        crate::helpers::sid_of(&s.token).parse().unwrap(),
    )
    .unwrap()
    .token;
    let res = app.on(Method::GET, "confused", "/v1/me", Some(&forged)).send().await.unwrap();
    assert_problem(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_token_signed_by_a_key_outside_the_verification_set_is_refused() {
    let app = rs256_app().await;
    let s = app.signup("outsider").await;
    // A well-formed EdDSA token from another key pair, and one claiming the trusted kid.
    let other = JwtTokens::new(
        JwtConfig {
            keys: KeySource::Asymmetric {
                algorithm: AsymmetricAlgorithm::EdDsa,
                signing_key_pem: KeyMaterial::new(std::fs::read(fixture("ed25519-b.pem")).unwrap()),
                kid: "rsa-a".into(),
                verification_keys: vec![("rsa-a".into(), std::fs::read(fixture("ed25519-b.pub.pem")).unwrap())],
            },
            issuer: "plinth".into(),
            audience: "plinth-api".into(),
            ttl: Duration::from_secs(600),
        },
        std::sync::Arc::new(plinth_domain::clock::SystemClock::new()),
    )
    .unwrap()
    .issue(
        s.user_id.parse().unwrap(),
        s.tenant_id.parse().unwrap(),
        Role::Owner,
        0,
        crate::helpers::sid_of(&s.token).parse().unwrap(),
    )
    .unwrap()
    .token;
    let res = app.on(Method::GET, "outsider", "/v1/me", Some(&other)).send().await.unwrap();
    assert_problem(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn keys_rotate_old_tokens_keep_working_while_their_key_is_trusted() {
    let (a_priv, a_pub, b_priv, b_pub) = (
        fixture("ed25519-a.pem"),
        fixture("ed25519-a.pub.pem"),
        fixture("ed25519-b.pem"),
        fixture("ed25519-b.pub.pem"),
    );
    let both = format!("{a_pub},{b_pub}");
    let before = TestApp::spawn_with(
        Backend::Postgres,
        &[
            ("PLINTH_JWT_ALGORITHM", "EdDSA"),
            ("PLINTH_JWT_PRIVATE_KEY_FILE", &a_priv),
            ("PLINTH_JWT_PUBLIC_KEY_FILES", &a_pub),
        ],
    )
    .await;
    let old = before.signup("rotate").await.token;
    let db = before.db.as_ref().unwrap();
    let sibling = |private: &str, publics: &str| {
        let (p, pubs) = (private.to_owned(), publics.to_owned());
        let (app_url, owner_url) = (db.app_url.clone(), db.owner_url.clone());
        async move {
            TestApp::start(
                &[
                    ("DATABASE_URL", &app_url),
                    ("PLINTH_DATABASE_OWNER_URL", &owner_url),
                    ("PLINTH_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                    ("PLINTH_JWT_ALGORITHM", "EdDSA"),
                    ("PLINTH_JWT_PRIVATE_KEY_FILE", &p),
                    ("PLINTH_JWT_PUBLIC_KEY_FILES", &pubs),
                ],
                None,
            )
            .await
        }
    };
    // Rotated: signs with b, still trusts a.
    let during = sibling(&b_priv, &both).await;
    assert_eq!(during.on(Method::GET, "rotate", "/v1/me", Some(&old)).send().await.unwrap().status(), StatusCode::OK);
    // a retired: its tokens stop working.
    let after = sibling(&b_priv, &b_pub).await;
    let res = after.on(Method::GET, "rotate", "/v1/me", Some(&old)).send().await.unwrap();
    assert_problem(res, 401, "invalid_token").await;
}
