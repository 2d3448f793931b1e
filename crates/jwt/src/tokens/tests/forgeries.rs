//! Forged tokens, and strings that are no tokens at all: refused with `InvalidToken`, never
//! a panic.

use super::*;

#[test]
fn an_unsigned_alg_none_token_is_refused() {
    let payload = b64(&claims().to_string());
    let ed = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]));
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"none","kid":"a"}"#, r#"{"alg":"None"}"#] {
        let unsigned = format!("{}.{payload}.", b64(header));
        assert!(refused(&hs256(SECRET), &unsigned), "{header}");
        assert!(refused(&ed, &unsigned), "{header}");
        assert_eq!(reason(&ed, &unsigned), Some(Refusal::Malformed), "no `none` algorithm exists to decode");
        let resigned = signed(&claims());
        let (_, signature) = resigned.rsplit_once('.').unwrap();
        assert!(refused(&hs256(SECRET), &format!("{}.{payload}.{signature}", b64(header))), "{header}");
    }
}

#[test]
fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused_by_an_rs256_verifier() {
    let public_pem = fixture("rsa-a.pub.pem");
    let header = Header { kid: Some("r".into()), ..Header::new(Algorithm::HS256) };
    let forged = encode(&header, &claims(), &EncodingKey::from_secret(&public_pem)).unwrap();
    // Well-formed: a verifier that took the header's word for the algorithm would accept it.
    assert!(hs256(&public_pem).verify(&forged).is_ok());
    let rs256 = service(asymmetric(AsymmetricAlgorithm::Rs256, "rsa-a", "r", &[("r", "rsa-a.pub.pem")]));
    assert!(refused(&rs256, &forged));
    assert_eq!(reason(&rs256, &forged), Some(Refusal::Algorithm));
}

#[test]
fn a_token_of_another_algorithm_is_refused() {
    let ed = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]));
    let rs = service(asymmetric(AsymmetricAlgorithm::Rs256, "rsa-a", "a", &[("a", "rsa-a.pub.pem")]));
    let (user, tenant) = (UserId::new(), TenantId::new());
    let ed_token = ed.issue(user, tenant, Role::Owner, 0, SessionId::new()).unwrap().token;
    let rs_token = rs.issue(user, tenant, Role::Owner, 0, SessionId::new()).unwrap().token;
    assert!(refused(&rs, &ed_token));
    assert!(refused(&ed, &rs_token));
    assert!(refused(&hs256(SECRET), &ed_token));
    assert!(refused(&ed, &signed(&claims())));
}

#[test]
fn a_token_without_a_kid_is_refused_by_an_asymmetric_verifier() {
    let ed = service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")]));
    let key = EncodingKey::from_ed_pem(&fixture("ed25519-a.pem")).unwrap();
    let bare = encode(&Header::new(Algorithm::EdDSA), &claims(), &key).unwrap();
    assert!(refused(&ed, &bare));
    assert_eq!(reason(&ed, &bare), Some(Refusal::UnknownKey));
    let named = encode(&Header { kid: Some("a".into()), ..Header::new(Algorithm::EdDSA) }, &claims(), &key).unwrap();
    assert!(ed.verify(&named).is_ok());
}

#[test]
fn a_token_signed_with_another_secret_is_refused() {
    let other = hs256(b"another secret, also more than 32 bytes");
    assert!(refused(
        &hs256(SECRET),
        &other.issue(UserId::new(), TenantId::new(), Role::Owner, 0, SessionId::new()).unwrap().token
    ));
}

#[test]
fn a_token_with_a_changed_payload_is_refused() {
    let token = signed(&claims());
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let tampered = format!("{header}.{}.{signature}", b64(&with("role", json!("owner")).to_string()));
    assert!(refused(&hs256(SECRET), &tampered));
    assert_eq!(reason(&hs256(SECRET), &tampered), Some(Refusal::Signature));
}

#[test]
fn strings_that_are_not_tokens_are_refused_without_panicking() {
    let services = [
        hs256(SECRET),
        service(asymmetric(AsymmetricAlgorithm::EdDsa, "ed25519-a", "a", &[("a", "ed25519-a.pub.pem")])),
        service(asymmetric(AsymmetricAlgorithm::Rs256, "rsa-a", "a", &[("a", "rsa-a.pub.pem")])),
    ];
    let valid = signed(&claims());
    let header = valid.split('.').next().unwrap().to_owned();
    let ed_header = b64(r#"{"alg":"EdDSA","kid":"a"}"#);
    let rs_header = b64(r#"{"alg":"RS256","kid":"a"}"#);
    let garbage = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b.c".into(),
        "Bearer x.y.z".into(),
        "é.é.é".into(),
        "\0.\0.\0".into(),
        format!("{valid}."),
        format!("{valid}.{valid}"),
        format!("{header}.."),
        format!("{header}.{}.", b64("{")),
        format!("{}.{}.AAAA", b64("[]"), b64("{}")),
        format!("{}.{}.AAAA", b64(r#"{"alg":"HS256","crit":["exp"]}"#), b64("{}")),
        format!("{ed_header}.{}.AAAA", b64(&claims().to_string())),
        format!("{ed_header}.{}.{}", b64(&claims().to_string()), "A".repeat(86)),
        format!("{rs_header}.{}.{}", b64(&claims().to_string()), "A".repeat(342)),
        format!("{rs_header}.{}.", b64(&claims().to_string())),
        "x".repeat(MAX_TOKEN_LEN + 1),
        format!("{valid}{}", " ".repeat(MAX_TOKEN_LEN)),
        format!("{header}.{}.{}", "A".repeat(1 << 20), "A".repeat(43)),
        "a.".repeat(50_000),
    ];
    for tokens in &services {
        for token in &garbage {
            assert!(refused(tokens, token), "{:?}", token.get(..60));
        }
    }
}
