//! Configurations `JwtTokens::new` refuses, and what `Debug` and its errors show.

use super::*;

#[test]
fn an_hs256_secret_needs_32_bytes() {
    let err = JwtTokens::new(config(KeySource::hs256(&[7; 31][..])), system()).unwrap_err();
    assert_eq!(err, JwtConfigError::SecretTooShort);
    assert!(JwtTokens::new(config(KeySource::hs256(&[7; 32][..])), system()).is_ok());
}

fn refusal(keys: KeySource) -> JwtConfigError {
    JwtTokens::new(config(keys), system()).unwrap_err()
}

#[test]
fn unusable_key_sets_are_refused_with_a_reason() {
    use AsymmetricAlgorithm::{EdDsa, Rs256};
    let ed_a = ("a", "ed25519-a.pub.pem");
    let kid = |s: &str| s.to_owned();
    assert_eq!(
        refusal(asymmetric(EdDsa, "ed25519-a", "a", &[])),
        JwtConfigError::MissingVerificationKey { kid: kid("a") }
    );
    assert_eq!(
        refusal(asymmetric(EdDsa, "ed25519-a", "a", &[("a", "ed25519-b.pub.pem")])),
        JwtConfigError::KeyMismatch { kid: kid("a") }
    );
    assert_eq!(
        refusal(asymmetric(EdDsa, "ed25519-a", "a", &[ed_a, ("b", "ed25519-b.pem")])),
        JwtConfigError::PrivateVerificationKey { kid: kid("b") }
    );
    assert_eq!(
        refusal(asymmetric(EdDsa, "ed25519-a", "a", &[ed_a, ("a", "ed25519-b.pub.pem")])),
        JwtConfigError::DuplicateKid { kid: kid("a") }
    );
    assert_eq!(refusal(asymmetric(EdDsa, "ed25519-a", "", &[("", "ed25519-a.pub.pem")])), JwtConfigError::EmptyKid);
    assert_eq!(
        refusal(asymmetric(Rs256, "ed25519-a", "a", &[ed_a])),
        JwtConfigError::InvalidSigningKey { kid: kid("a"), algorithm: Rs256 }
    );
    assert_eq!(
        refusal(asymmetric(EdDsa, "ed25519-a", "a", &[ed_a, ("r", "rsa-a.pub.pem")])),
        JwtConfigError::InvalidVerificationKey { kid: kid("r"), algorithm: EdDsa }
    );
    // A public key parses as an RSA signing key; signing with it is what fails.
    assert_eq!(
        refusal(asymmetric(Rs256, "rsa-a.pub", "r", &[("r", "rsa-a.pub.pem")])),
        JwtConfigError::InvalidSigningKey { kid: kid("r"), algorithm: Rs256 }
    );
    let garbage = KeySource::Asymmetric {
        algorithm: EdDsa,
        signing_key_pem: KeyMaterial::new(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec()),
        kid: kid("g"),
        verification_keys: vec![(kid("g"), b"not a pem".to_vec())],
    };
    assert_eq!(refusal(garbage), JwtConfigError::InvalidSigningKey { kid: kid("g"), algorithm: EdDsa });
}

#[test]
fn a_truncated_ed25519_public_key_is_refused_rather_than_panicking_later() {
    // SubjectPublicKeyInfo { id-Ed25519, BIT STRING of 4 bytes instead of 32 }.
    let der = [0x30, 0x0e, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x05, 0x00, 1, 2, 3, 4];
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let mut keys = asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]);
    if let KeySource::Asymmetric { verification_keys, .. } = &mut keys {
        verification_keys.push(("short".to_owned(), pem.into_bytes()));
    }
    assert_eq!(
        refusal(keys),
        JwtConfigError::InvalidVerificationKey { kid: "short".to_owned(), algorithm: AsymmetricAlgorithm::EdDsa }
    );
}

#[test]
fn an_empty_issuer_or_audience_or_a_bad_lifetime_is_refused() {
    let with = |f: fn(&mut JwtConfig)| {
        let mut c = config(KeySource::hs256(SECRET));
        f(&mut c);
        JwtTokens::new(c, system()).unwrap_err()
    };
    assert_eq!(with(|c| c.issuer.clear()), JwtConfigError::Empty("issuer"));
    assert_eq!(with(|c| c.audience.clear()), JwtConfigError::Empty("audience"));
    assert_eq!(with(|c| c.ttl = Duration::from_millis(999)), JwtConfigError::InvalidTtl);
    assert_eq!(with(|c| c.ttl = Duration::from_secs(400 * 24 * 3600)), JwtConfigError::InvalidTtl);
}

#[test]
fn algorithm_names_parse_exactly() {
    assert_eq!("EdDSA".parse(), Ok(AsymmetricAlgorithm::EdDsa));
    assert_eq!("RS256".parse(), Ok(AsymmetricAlgorithm::Rs256));
    for name in ["HS256", "eddsa", "rs256", "none", ""] {
        assert_eq!(name.parse::<AsymmetricAlgorithm>(), Err(JwtConfigError::UnknownAlgorithm));
    }
}

#[test]
fn debug_and_errors_show_no_key_material() {
    let secret = "a test secret of more than 32 bytes";
    let ed_body = String::from_utf8(fixture("ed25519-a.pem")).unwrap();
    let ed_body = ed_body.lines().nth(1).unwrap();
    let source = asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]);
    let shown = [
        format!("{:?}", KeySource::hs256(secret)),
        format!("{:?}", config(KeySource::hs256(secret))),
        format!("{:?}", hs256(secret.as_bytes())),
        format!("{source:?}"),
        format!("{:?}", service(source)),
    ];
    for s in &shown {
        assert!(!s.contains(secret) && !s.contains(ed_body), "{s}");
    }
    assert!(shown[3].contains("\"a\""), "kids are shown: {}", shown[3]);
    let err = refusal(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-b.pub.pem")]));
    assert!(!err.to_string().contains(ed_body) && !format!("{err:?}").contains(ed_body));
}
