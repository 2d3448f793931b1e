//! `JwtTokens`: round trips for each algorithm and key rotation; the helpers the other
//! test modules share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod claim_checks;
mod configuration;
mod forgeries;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, decode_header, encode};
use plinth_domain::Error;
use plinth_domain::ids::{TenantId, UserId};
use plinth_domain::ports::TokenService;
use plinth_domain::values::Role;
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "plinth";
const AUDIENCE: &str = "plinth-api";
const SECRET: &[u8] = b"a test secret of more than 32 bytes";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config(keys: KeySource) -> JwtConfig {
    JwtConfig { keys, issuer: ISSUER.into(), audience: AUDIENCE.into(), ttl: Duration::from_secs(3600) }
}

/// The system's clock, as in production.
fn system() -> Arc<dyn Clock> {
    Arc::new(plinth_domain::clock::SystemClock::new())
}

/// The system's time, in Unix seconds.
fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hs256(secret: &[u8]) -> JwtTokens {
    JwtTokens::new(config(KeySource::hs256(secret)), system()).unwrap()
}

/// Keys signing with the fixture `{signing}.pem` as `kid`, trusting `(kid, fixture)` pairs.
fn asymmetric(algorithm: AsymmetricAlgorithm, signing: &str, kid: &str, trusted: &[(&str, &str)]) -> KeySource {
    KeySource::Asymmetric {
        algorithm,
        signing_key_pem: KeyMaterial::new(fixture(&format!("{signing}.pem"))),
        kid: kid.into(),
        verification_keys: trusted.iter().map(|(kid, file)| ((*kid).to_owned(), fixture(file))).collect(),
    }
}

fn service(keys: KeySource) -> JwtTokens {
    JwtTokens::new(config(keys), system()).unwrap()
}

fn refused(tokens: &JwtTokens, token: &str) -> bool {
    matches!(tokens.verify(token), Err(Error::InvalidToken))
}

/// Why `token` is refused, to check that a test fails for the reason it means to.
fn reason(tokens: &JwtTokens, token: &str) -> Option<Refusal> {
    tokens.check(token).err()
}

fn round_trip(tokens: &JwtTokens) -> String {
    let (user, tenant) = (UserId::new(), TenantId::new());
    let access = tokens.issue(user, tenant, Role::Admin, 7, SessionId::new()).unwrap();
    assert_eq!(access.expires_in, 3600);
    let claims = tokens.verify(&access.token).unwrap();
    assert_eq!((claims.user, claims.tenant, claims.role, claims.version), (user, tenant, Role::Admin, 7));
    assert_eq!(claims.expires_at - claims.issued_at, 3600);
    assert!((claims.issued_at - unix_now()).abs() <= 5);
    access.token
}

fn b64(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

/// Every claim, valid for `SECRET`'s service, issued now.
fn claims() -> Value {
    let now = unix_now();
    json!({
        "sub": UserId::new().to_string(), "tid": TenantId::new().to_string(), "role": "member",
        "sid": SessionId::new().to_string(), "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE,
    })
}

fn signed(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn with(key: &str, value: Value) -> Value {
    let mut c = claims();
    c[key] = value;
    c
}

#[test]
fn an_hs256_token_round_trips_its_claims() {
    let token = round_trip(&hs256(SECRET));
    let header = decode_header(&token).unwrap();
    assert_eq!((header.alg, header.kid), (Algorithm::HS256, None));
}

#[test]
fn an_eddsa_token_round_trips_and_names_its_key() {
    let tokens =
        service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "key-a", &[("key-a", "ed25519-a.pub.pem")]));
    let header = decode_header(round_trip(&tokens)).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, Some("key-a")));
}

#[test]
fn an_rs256_token_round_trips_and_names_its_key() {
    let tokens =
        service(asymmetric(AsymmetricAlgorithm::Rs256, "rsa-a", "rsa-a.pem", &[("rsa-a.pem", "rsa-a.pub.pem")]));
    let header = decode_header(round_trip(&tokens)).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::RS256, Some("rsa-a.pem")));
}

#[test]
fn every_role_round_trips() {
    let tokens = hs256(SECRET);
    for role in [Role::Owner, Role::Admin, Role::Member] {
        let access = tokens.issue(UserId::new(), TenantId::new(), role, 0, SessionId::new()).unwrap();
        assert_eq!(tokens.verify(&access.token).unwrap().role, role);
    }
}

#[test]
fn a_token_of_a_retired_key_verifies_until_its_public_key_is_removed() {
    let old = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]));
    let token = old.issue(UserId::new(), TenantId::new(), Role::Member, 0, SessionId::new()).unwrap().token;

    let rotated = [("b", "ed25519-b.pub.pem"), ("a", "ed25519-a.pub.pem")];
    let during = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-b", "b", &rotated));
    assert!(during.verify(&token).is_ok());
    round_trip(&during);

    let after = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-b", "b", &[("b", "ed25519-b.pub.pem")]));
    assert!(refused(&after, &token));
    assert_eq!(reason(&after, &token), Some(Refusal::UnknownKey));
    round_trip(&after);
}

#[test]
fn a_token_naming_an_unknown_kid_is_refused() {
    let a = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]));
    let b = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-b", "b", &[("b", "ed25519-b.pub.pem")]));
    assert!(refused(&b, &a.issue(UserId::new(), TenantId::new(), Role::Owner, 0, SessionId::new()).unwrap().token));
}

#[test]
fn a_token_signed_by_another_key_under_a_trusted_kid_is_refused() {
    let forger = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "b", &[("b", "ed25519-a.pub.pem")]));
    let b = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-b", "b", &[("b", "ed25519-b.pub.pem")]));
    let forged = forger.issue(UserId::new(), TenantId::new(), Role::Owner, 0, SessionId::new()).unwrap().token;
    assert!(refused(&b, &forged));
    assert_eq!(reason(&b, &forged), Some(Refusal::Signature));
}

#[test]
fn a_random_secret_works_and_is_not_shared_with_another_instance() {
    let one = JwtTokens::new(config(KeySource::random_hs256().unwrap()), system()).unwrap();
    let two = JwtTokens::new(config(KeySource::random_hs256().unwrap()), system()).unwrap();
    let token = round_trip(&one);
    assert!(refused(&two, &token));
    assert_eq!(reason(&two, &token), Some(Refusal::Signature));
}

#[test]
fn a_remembered_verification_still_checks_expiry() {
    let tokens = hs256(SECRET);
    let access = tokens.issue(UserId::new(), TenantId::new(), Role::Member, 0, SessionId::new()).unwrap();
    let claims = tokens.verify(&access.token).unwrap();
    // The second verification is answered from memory, with the same claims.
    assert_eq!(tokens.verified.get(access.token.as_str()), Some(claims));
    assert_eq!(tokens.verify(&access.token).unwrap(), claims);
    // Remembered claims past `exp` (and the leeway) are not used: the token is checked afresh.
    let expired = Claims { expires_at: unix_now() - LEEWAY_SECS - 1, ..claims };
    tokens.verified.insert(access.token.clone(), expired);
    assert_eq!(tokens.verify(&access.token).unwrap(), claims, "checked again, and valid");
    tokens.verified.insert("not.a.token".to_owned(), expired);
    assert!(refused(&tokens, "not.a.token"), "checked again, and refused");
    assert!(tokens.verified.get("not.a.token").is_none(), "and forgotten");
}

#[test]
fn refused_tokens_are_not_remembered() {
    let tokens = hs256(SECRET);
    let forged = hs256(b"another secret of at least 32 bytes!").issue(
        UserId::new(),
        TenantId::new(),
        Role::Owner,
        0,
        SessionId::new(),
    );
    let forged = forged.unwrap().token;
    assert!(refused(&tokens, &forged));
    assert!(tokens.verified.get(forged.as_str()).is_none());
}
