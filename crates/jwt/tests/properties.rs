//! Property tests of token verification: whatever string a client sends as its bearer token,
//! and whatever JSON it puts in a token's header, `verify` answers `InvalidToken` and never
//! panics, unless the token really was signed with the service's key for its pinned
//! algorithm and carries valid claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use plinth_domain::Error;
use plinth_domain::clock::SystemClock;
use plinth_domain::ids::{TenantId, UserId};
use plinth_domain::ports::TokenService;
use plinth_domain::values::Role;
use plinth_jwt::{AsymmetricAlgorithm, JwtConfig, JwtTokens, KeyMaterial, KeySource};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SECRET: &[u8] = b"a property-test secret of more than 32 bytes";

fn config(keys: KeySource) -> JwtConfig {
    JwtConfig { keys, issuer: "plinth".into(), audience: "plinth-api".into(), ttl: Duration::from_secs(3600) }
}

fn hs256() -> JwtTokens {
    JwtTokens::new(config(KeySource::hs256(SECRET)), Arc::new(SystemClock::new())).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A service pinned to `algorithm`, signing with fixture `{signing}.pem` under `kid`.
fn asymmetric(algorithm: AsymmetricAlgorithm, signing: &str, kid: &str) -> JwtTokens {
    let keys = KeySource::Asymmetric {
        algorithm,
        signing_key_pem: KeyMaterial::new(fixture(&format!("{signing}.pem"))),
        kid: kid.into(),
        verification_keys: vec![(kid.to_owned(), fixture(&format!("{signing}.pub.pem")))],
    };
    JwtTokens::new(config(keys), Arc::new(SystemClock::new())).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Every claim, valid for the services above.
fn claims() -> Value {
    let now = now();
    json!({
        "sub": UserId::new().to_string(), "tid": TenantId::new().to_string(), "role": "member",
        "iat": now, "exp": now + 600, "iss": "plinth", "aud": "plinth-api",
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, the signature made with `key` for `alg` over the first two.
fn sign(header: &[u8], payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn refused(tokens: &JwtTokens, token: &str) -> bool {
    matches!(tokens.verify(token), Err(Error::InvalidToken))
}

/// Any text: every `char`, up to `max` of them.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text(24).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(8), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The names an attacker tries in `alg`, and anything else.
fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(Value::from("HS256")),
        4 => proptest::sample::select(
            &["HS256", "HS384", "HS512", "RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA", "none", "None",
              "NONE", "nOnE", "hs256", "HS256 ", "", "RSA-OAEP"][..]
        ).prop_map(Value::from),
        1 => json_value(),
    ]
}

/// A JOSE header as an attacker writes it: an object with `alg`, maybe `kid`, `typ`, `jwk`,
/// `jku`, `x5u`, `crit` and other members of any value; or not an object at all.
fn header() -> impl Strategy<Value = Value> {
    let member = |name: &'static str| proptest::option::of(json_value()).prop_map(move |v| (name, v));
    let object = (
        prop_oneof![4 => alg().prop_map(Some), 1 => Just(None)],
        prop_oneof![2 => Just(None), 2 => text(16).prop_map(|k| Some(Value::from(k))), 1 => json_value().prop_map(Some)],
        proptest::collection::vec(
            prop_oneof![member("typ"), member("cty"), member("jwk"), member("jku"), member("x5u"), member("crit")],
            0..3,
        ),
        proptest::collection::btree_map(text(8), json_value(), 0..3),
    )
        .prop_map(|(alg, kid, members, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in members {
                if let Some(v) = value {
                    m.insert(name.into(), v);
                }
            }
            if let Some(a) = alg {
                m.insert("alg".into(), a);
            }
            if let Some(k) = kid {
                m.insert("kid".into(), k);
            }
            Value::Object(m)
        });
    prop_oneof![9 => object, 1 => json_value()]
}

/// Claims with one claim removed, retyped or given another value, or valid ones.
fn payload() -> impl Strategy<Value = Value> {
    const NAMES: &[&str] = &["sub", "tid", "role", "iat", "exp", "iss", "aud"];
    prop_oneof![
        2 => Just(()).prop_map(|()| claims()),
        3 => (proptest::sample::select(NAMES), proptest::option::of(json_value())).prop_map(|(name, v)| {
            let mut c = claims();
            match v {
                Some(v) => c[name] = v,
                None => {
                    c.as_object_mut().map(|m| m.remove(name));
                }
            }
            c
        }),
        1 => json_value(),
    ]
}

/// A bearer token's three segments as a client may mangle them: base64url without padding,
/// with padding, the standard alphabet, or not base64 at all.
fn encoded(bytes: Vec<u8>) -> impl Strategy<Value = String> {
    let b = bytes.clone();
    prop_oneof![
        6 => Just(b64(&b)),
        1 => Just(URL_SAFE.encode(&bytes)),
        1 => Just(STANDARD.encode(&bytes)),
        1 => text(12),
    ]
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_is_an_invalid_token(s in prop_oneof![
        text(200),
        "[A-Za-z0-9_.=+/-]{0,300}",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
        "[A-Za-z0-9_-]{4200,4300}",
    ]) {
        prop_assert!(refused(&hs256(), &s), "{:?}", s);
    }

    #[test]
    fn any_header_with_a_forged_signature_is_refused(
        (h, p, sig) in (header(), payload()).prop_flat_map(|(h, p)| {
            (encoded(json_bytes(&h)), encoded(json_bytes(&p)), prop_oneof![text(40), "[A-Za-z0-9_-]{0,400}"])
        }),
    ) {
        let token = format!("{h}.{p}.{sig}");
        prop_assert!(refused(&hs256(), &token), "{:?}", token);
    }

    /// Signed with the right secret over any header: accepted only when the header names the
    /// pinned algorithm exactly and the claims are valid; refused otherwise, never a panic.
    #[test]
    fn a_correctly_signed_token_is_accepted_only_with_the_pinned_algorithm(h in header(), p in payload()) {
        let tokens = hs256();
        let token = sign(&json_bytes(&h), &json_bytes(&p), &EncodingKey::from_secret(SECRET), Algorithm::HS256);
        match tokens.verify(&token) {
            Ok(claims) => {
                prop_assert_eq!(h.get("alg"), Some(&json!("HS256")), "{}", h);
                prop_assert_eq!(claims.user.to_string(), p["sub"].as_str().unwrap_or_default());
                prop_assert_eq!(claims.tenant.to_string(), p["tid"].as_str().unwrap_or_default());
                prop_assert_eq!(p["iss"].as_str(), Some("plinth"));
                prop_assert_eq!(p["aud"].as_str(), Some("plinth-api"));
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidToken), "{:?}", e),
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused(h in header(), p in payload(), other in "[ -~]{32,64}") {
        prop_assume!(other.as_bytes() != SECRET);
        let token = sign(&json_bytes(&h), &json_bytes(&p), &EncodingKey::from_secret(other.as_bytes()), Algorithm::HS256);
        prop_assert!(refused(&hs256(), &token), "{:?}", token);
    }

    #[test]
    fn an_issued_token_altered_anywhere_is_refused(at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=-]") {
        let tokens = hs256();
        let token = tokens.issue(UserId::new(), TenantId::new(), Role::Owner, 0, plinth_domain::ids::SessionId::new()).unwrap().token;
        let i = at.index(token.len());
        let mut altered = token.clone();
        altered.replace_range(i..=i, &c);
        prop_assume!(altered != token);
        prop_assert!(refused(&tokens, &altered), "{:?}", altered);
    }
}

proptest! {
    // Asymmetric verification is slower (RSA): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The asymmetric services: any header (any `kid`, any `alg`, an HMAC signature keyed
    /// with the public key) is refused unless signed by the trusted private key.
    #[test]
    fn asymmetric_services_refuse_any_header_not_signed_by_their_key(h in header(), p in payload()) {
        for (algorithm, fixture_name, kid) in
            [(AsymmetricAlgorithm::EdDsa, "ed25519-a", "key-a"), (AsymmetricAlgorithm::Rs256, "rsa-a", "rsa-a.pem")]
        {
            let tokens = asymmetric(algorithm, fixture_name, kid);
            let public = fixture(&format!("{fixture_name}.pub.pem"));
            let mut with_kid = h.clone();
            if let Some(m) = with_kid.as_object_mut() {
                m.insert("kid".into(), json!(kid));
            }
            for header in [&h, &with_kid] {
                let confused =
                    sign(&json_bytes(header), &json_bytes(&p), &EncodingKey::from_secret(&public), Algorithm::HS256);
                prop_assert!(refused(&tokens, &confused), "{:?}", confused);
                let forged = format!("{}.{}.{}", b64(&json_bytes(header)), b64(&json_bytes(&p)), b64(&[0u8; 64]));
                prop_assert!(refused(&tokens, &forged), "{:?}", forged);
            }
        }
    }
}
