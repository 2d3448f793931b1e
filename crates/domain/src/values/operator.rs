//! The operator's credential for `/admin/v1`: bearer tokens plinth knows only by their
//! SHA-256. A token has 256 random bits, so a plain hash (no salt, no stretching) is as hard to
//! reverse as the token is to guess.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What every operator token starts with, so that one found in a log or a repository is
/// recognised for what it is.
pub const OPERATOR_TOKEN_PREFIX: &str = "plop_";

/// The hashes of the operator tokens the deployment accepts (`PLINTH_OPERATOR_TOKEN_HASHES`).
#[derive(Clone, Default)]
pub struct OperatorTokens(Vec<[u8; 32]>);

impl std::fmt::Debug for OperatorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorTokens({} configured)", self.0.len())
    }
}

impl OperatorTokens {
    /// Accepting the tokens whose SHA-256 are `hashes`.
    pub const fn new(hashes: Vec<[u8; 32]>) -> Self {
        Self(hashes)
    }

    /// Whether any token is configured (else the operator API is off).
    pub const fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is one of the tokens: a token of the form plinth issues (anything
    /// else is refused unhashed, so no weaker secret can ever be configured and guessed) whose
    /// hash is compared with every configured hash in constant time, all of them each time.
    pub fn admits(&self, presented: &str) -> bool {
        let well_formed = presented.strip_prefix(OPERATOR_TOKEN_PREFIX).is_some_and(|secret| {
            secret.len() == 43 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !well_formed {
            return false;
        }
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.iter().fold(subtle::Choice::from(0), |found, h| found | h.ct_eq(&hash)).into()
    }

    /// A new token (256 bits from the OS generator) and the hex SHA-256 to configure for it.
    /// Errors: `Internal` (the OS generator failed).
    pub fn issue() -> crate::Result<(String, String)> {
        use rand::TryRngCore as _;
        let mut secret = [0_u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(crate::Error::internal)?;
        let token = [OPERATOR_TOKEN_PREFIX, &URL_SAFE_NO_PAD.encode(secret)].concat();
        let hash = crate::hex::encode(&Sha256::digest(token.as_bytes()));
        Ok((token, hash))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_is_admitted_by_its_hash_and_nothing_else_is() {
        let (token, hash) = OperatorTokens::issue().unwrap();
        assert!(token.starts_with(OPERATOR_TOKEN_PREFIX));
        assert_eq!(token.len(), OPERATOR_TOKEN_PREFIX.len() + 43, "256 bits, base64url");
        let (other, other_hash) = OperatorTokens::issue().unwrap();
        assert_ne!(token, other);
        let decode = |h: &str| crate::hex::decode_array::<32>(h).unwrap();
        let tokens = OperatorTokens::new(vec![decode(&other_hash), decode(&hash)]);
        assert!(tokens.enabled());
        assert!(tokens.admits(&token));
        assert!(tokens.admits(&other));
        assert!(!tokens.admits(&token[..token.len() - 1]));
        assert!(!tokens.admits(&hash), "the hash itself is not a token");
        assert!(!tokens.admits(""));
        // Only tokens of the issued form, whatever hash is configured.
        let weak = crate::hex::decode_array::<32>(&crate::hex::encode(&Sha256::digest(b"password"))).unwrap();
        assert!(!OperatorTokens::new(vec![weak]).admits("password"));
        assert!(!tokens.admits(&format!("{token}=")));
        assert!(!OperatorTokens::default().enabled());
        assert!(!OperatorTokens::default().admits(&token));
    }
}
