//! Refresh tokens: the opaque secret a session is continued with, its stored hash, and the
//! key that derives each token's successor.
//!
//! A token is `plr_` and 43 base64url characters: 32 bytes. The first token of a session comes
//! from the OS generator; each later one is the HMAC-SHA256 of the token it replaces under the
//! server's [`RefreshKey`], so a retry of a refresh that lost its answer can be given the same
//! successor again without the server ever storing a token in plaintext. Successors are as
//! unpredictable as the first token to anyone without the key. Only SHA-256 of a token is
//! stored: a fast hash is right for a 256-bit random secret, which no dictionary can guess.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use sha2::Digest as _;

use super::InvalidValue;

const PREFIX: &str = "plr_";
const SECRET_LEN: usize = 32;

/// A refresh token. `Debug` hides it; it has no `Display` and is never serialised except by
/// [`RefreshToken::expose`], for the one answer that hands it to its client.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken([u8; SECRET_LEN]);

impl RefreshToken {
    /// How many characters a token has: the prefix and 43 base64url characters.
    pub const TEXT_LEN: usize = PREFIX.len() + (SECRET_LEN * 4).div_ceil(3);
    /// What a token looks like, as a regular expression: the prefix, 42 base64url characters
    /// and a last one whose two unused low bits are zero (the parser refuses any other).
    pub const PATTERN: &'static str = "^plr_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$";

    /// A new token of 32 bytes from the OS generator. Errors: `Internal` when the OS has
    /// none to give.
    pub fn generate() -> crate::Result<Self> {
        use rand::TryRngCore as _;
        let mut bytes = [0u8; SECRET_LEN];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(crate::Error::internal)?;
        Ok(Self(bytes))
    }

    /// A token in its one spelling: exactly [`Self::TEXT_LEN`] characters, the prefix, then
    /// canonical unpadded base64url. Looks nothing up, and says nothing about why it refuses.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const INVALID: InvalidValue = InvalidValue("not a refresh token");
        if s.len() != Self::TEXT_LEN {
            return Err(INVALID);
        }
        let body = s.strip_prefix(PREFIX).ok_or(INVALID)?;
        // One spare byte: the decoder's size check is an estimate.
        let mut bytes = [0u8; SECRET_LEN + 1];
        match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
            Ok(SECRET_LEN) => {
                let mut secret = [0u8; SECRET_LEN];
                secret.copy_from_slice(&bytes[..SECRET_LEN]);
                Ok(Self(secret))
            }
            _ => Err(INVALID),
        }
    }

    /// The token's text, for the answer that gives it to its client (and nowhere else).
    pub fn expose(&self) -> String {
        let mut out = String::with_capacity(Self::TEXT_LEN);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.0, &mut out);
        out
    }

    /// What is stored of it.
    pub fn hash(&self) -> TokenHash {
        TokenHash(sha2::Sha256::digest(self.0).into())
    }

    /// The token that replaces this one when it is spent: the same every time, under `key`.
    pub fn successor(&self, key: &RefreshKey) -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0) {
            mac.update(b"successor");
            mac.update(&self.0);
            bytes.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self(bytes)
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// SHA-256 of a refresh token: what storage keeps and looks tokens up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps a hash read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether two hashes are equal, in time that does not depend on where they differ.
    pub fn constant_time_eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(***)")
    }
}

/// The server's key for refresh-token successors. `Debug` hides it.
#[derive(Clone)]
pub struct RefreshKey([u8; 32]);

impl RefreshKey {
    /// A key derived from another secret, so that secret is never used for two jobs.
    pub fn derive(secret: &[u8]) -> Self {
        Self(derive_key(secret, b"plinth refresh tokens v1"))
    }
}

/// The HMAC-SHA256 of `label` under `secret`: a key of its own for each job one secret serves.
pub(crate) fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        mac.update(label);
        key.copy_from_slice(&mac.finalize().into_bytes());
    }
    key
}

impl fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshKey(***)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_to_itself() {
        let token = RefreshToken::generate().unwrap();
        let text = token.expose();
        assert_eq!(text.len(), RefreshToken::TEXT_LEN);
        assert_eq!(RefreshToken::parse(&text).ok(), Some(token));
    }

    #[test]
    fn the_successor_depends_on_the_key_and_the_token() {
        let (a, b) = (RefreshKey::derive(b"one"), RefreshKey::derive(b"two"));
        let token = RefreshToken::generate().unwrap();
        assert_eq!(token.successor(&a), token.successor(&a));
        assert_ne!(token.successor(&a), token.successor(&b));
        assert_ne!(token.successor(&a), RefreshToken::generate().unwrap().successor(&a));
        assert_ne!(token.successor(&a), token);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = RefreshToken::generate().unwrap().expose();
        for bad in [
            String::new(),
            good[1..].to_owned(),
            format!("{good}A"),
            format!("plx_{}", &good[4..]),
            good.replace('_', "/"),
            format!("{}=", &good[..good.len() - 1]),
        ] {
            assert!(RefreshToken::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_compare_equal_only_to_themselves() {
        let (a, b) = (RefreshToken::generate().unwrap().hash(), RefreshToken::generate().unwrap().hash());
        assert!(a.constant_time_eq(&a));
        assert!(!a.constant_time_eq(&b));
    }
}
