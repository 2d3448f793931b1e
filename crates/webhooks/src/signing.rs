//! `Plinth-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, with one `v1=`
//! per secret the webhook signs with (two during a rotation's overlap: the new one first).

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Plinth-Signature";
/// The event id header's name.
pub const EVENT_ID_HEADER: &str = "Plinth-Event-Id";

/// The `Plinth-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    signatures(&[secret], timestamp, body)
}

/// The `Plinth-Signature` value for `body` sent at `timestamp` (Unix seconds), with a `v1=`
/// under each of `secrets`, in their order.
pub fn signatures<S: AsRef<[u8]>>(secrets: &[S], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&mac(secret.as_ref(), timestamp, body));
    }
    header
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this can't fail; an empty MAC would only fail to verify.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            plinth_domain::hex::encode(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values were computed with Python's `hmac` module, an implementation
    // independent of this crate's, e.g.
    // `hmac.new(b"Jefe", b"0.what do ya want for nothing?", hashlib.sha256).hexdigest()`.

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        assert_eq!(
            signature(b"Jefe", 0, b"what do ya want for nothing?"),
            "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        let body = br#"{"id":"0190a6f2-0000-7000-8000-000000000000","type":"project.created"}"#;
        assert_eq!(
            signature(b"whsec_plinth-test-secret", 1_700_000_000, body),
            "t=1700000000,v1=dcd61b29ae5b365222f1f5a1c09aecf8011515a5b4d379e866d3faea7d1fb460"
        );
    }

    #[test]
    fn the_mac_is_written_as_lowercase_hex() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap_or_else(|_| unreachable!());
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            plinth_domain::hex::encode(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn during_an_overlap_each_secret_signs_in_order() {
        let both = signatures(&[b"new".as_slice(), b"old".as_slice()], 1_700_000_000, b"{}");
        let new = signature(b"new", 1_700_000_000, b"{}");
        let old = signature(b"old", 1_700_000_000, b"{}");
        let v1 = |s: &str| s.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap_or_default();
        assert_eq!(both, format!("{new},v1={}", v1(&old)));
    }

    #[test]
    fn another_secret_or_body_changes_the_signature() {
        let a = signature(b"secret-a", 1700000000, b"{}");
        assert_ne!(a, signature(b"secret-b", 1700000000, b"{}"));
        assert_ne!(a, signature(b"secret-a", 1700000000, b"{ }"));
        assert_ne!(a, signature(b"secret-a", 1700000001, b"{}"));
        assert!(a.starts_with("t=1700000000,v1=") && a.len() == "t=1700000000,v1=".len() + 64);
    }
}
