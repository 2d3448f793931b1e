//! Genuinely signed tokens whose claims don't hold: expired, issued in the future, for
//! another issuer or audience, or with a claim missing or malformed.

use super::*;

#[test]
fn a_hand_signed_token_with_every_claim_verifies() {
    // The refusals below change one thing each from this token.
    assert!(hs256(SECRET).verify(&signed(&claims())).is_ok());
}

#[test]
fn a_token_without_a_version_counts_as_version_zero_and_a_malformed_one_is_refused() {
    // Tokens issued before `ver` existed stay valid for users whose role never changed.
    assert_eq!(hs256(SECRET).verify(&signed(&claims())).unwrap().version, 0);
    assert_eq!(hs256(SECRET).verify(&signed(&with("ver", json!(3)))).unwrap().version, 3);
    for bad in [json!(-1), json!("3"), json!(1.5), json!(u64::MAX)] {
        assert!(refused(&hs256(SECRET), &signed(&with("ver", bad.clone()))), "ver {bad} was accepted");
    }
}

#[test]
fn an_expired_token_is_refused_after_the_leeway() {
    let tokens = hs256(SECRET);
    let (user, tenant) = (UserId::new(), TenantId::new());
    let expired = tokens.issue_at(user, tenant, Role::Owner, 0, unix_now() - 3600 - 30).unwrap();
    assert!(refused(&tokens, &expired.token));
    assert_eq!(reason(&tokens, &expired.token), Some(Refusal::Expired));
    let just_expired = tokens.issue_at(user, tenant, Role::Owner, 0, unix_now() - 3600 - 1).unwrap();
    assert!(tokens.verify(&just_expired.token).is_ok(), "within the {LEEWAY_SECS} s leeway");
}

#[test]
fn a_token_issued_in_the_future_is_refused() {
    let tokens = hs256(SECRET);
    let early = tokens.issue_at(UserId::new(), TenantId::new(), Role::Owner, 0, unix_now() + 60).unwrap();
    assert!(refused(&tokens, &early.token));
    assert_eq!(reason(&tokens, &early.token), Some(Refusal::IssuedLater));
    assert!(refused(&tokens, &signed(&with("exp", json!(unix_now() - 100)))));
}

#[test]
fn a_token_for_another_issuer_or_audience_is_refused() {
    let tokens = hs256(SECRET);
    for (claim, value, why) in [
        ("iss", json!("plinth-staging"), Refusal::Issuer),
        ("iss", json!(""), Refusal::Issuer),
        ("iss", json!([ISSUER]), Refusal::Claims),
        ("aud", json!("another-api"), Refusal::Audience),
        ("aud", json!("plinth-api "), Refusal::Audience),
        ("aud", json!([AUDIENCE]), Refusal::Claims),
        ("aud", json!([AUDIENCE, "another-api"]), Refusal::Claims),
    ] {
        let token = signed(&with(claim, value.clone()));
        assert!(refused(&tokens, &token), "{claim}: {value}");
        assert_eq!(reason(&tokens, &token), Some(why), "{claim}: {value}");
    }
}

#[test]
fn a_token_missing_any_claim_is_refused() {
    let tokens = hs256(SECRET);
    // `sid` included: a token issued before sessions existed belongs to none.
    for claim in ["sub", "tid", "role", "sid", "iat", "exp", "iss", "aud"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert!(refused(&tokens, &signed(&c)), "without {claim}");
        assert_eq!(reason(&tokens, &signed(&c)), Some(Refusal::Claims), "without {claim}");
    }
}

#[test]
fn a_token_with_a_malformed_claim_is_refused() {
    let tokens = hs256(SECRET);
    let uuid = UserId::new();
    for (claim, value) in [
        ("sub", json!("not-a-uuid")),
        ("sub", json!(uuid.as_uuid().simple().to_string())),
        ("sub", json!(null)),
        ("tid", json!(42)),
        ("tid", json!(format!("urn:uuid:{uuid}"))),
        ("role", json!("superuser")),
        ("role", json!("Owner")),
        ("sid", json!("not-a-session")),
        ("sid", json!(uuid.as_uuid().simple().to_string())),
        ("sid", json!(null)),
        ("iat", json!("now")),
        ("iat", json!(1.5)),
        ("exp", json!(unix_now() as f64 + 600.5)),
        ("exp", json!(-1)),
        ("exp", json!(u64::MAX)),
    ] {
        assert!(refused(&tokens, &signed(&with(claim, value.clone()))), "{claim}: {value}");
    }
    for payload in [json!(null), json!([]), json!("claims"), json!(7)] {
        assert!(refused(&tokens, &signed(&payload)), "{payload}");
    }
}

#[test]
fn a_token_expires_by_the_injected_clock_once_past_exp_and_the_leeway() {
    let clock = Arc::new(plinth_domain::clock::ManualClock::new());
    let tokens = JwtTokens::new(config(KeySource::hs256(SECRET)), clock.clone()).unwrap();
    let access = tokens.issue(UserId::new(), TenantId::new(), Role::Owner, 0, SessionId::new()).unwrap();
    let claims = tokens.verify(&access.token).unwrap();
    assert_eq!(claims.issued_at, clock.now().unix_timestamp(), "iat is the clock's");
    // The verification is remembered now; both paths must follow the clock.
    clock.advance(Duration::from_secs(3600 + LEEWAY_SECS.unsigned_abs()));
    assert!(tokens.verify(&access.token).is_ok(), "still within the leeway");
    assert_eq!(reason(&tokens, &access.token), None);
    clock.advance(Duration::from_secs(1));
    assert!(refused(&tokens, &access.token), "past exp and the leeway");
    assert_eq!(reason(&tokens, &access.token), Some(Refusal::Expired));
}
