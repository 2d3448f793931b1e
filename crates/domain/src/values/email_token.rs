//! Emailed tokens: the one-time secrets in invitation, password-reset and verification links.
//!
//! A token is a purpose's prefix (`pli_`, `plp_`, `plv_`) and 43 base64url characters: 32
//! bytes, the HMAC-SHA256 of the purpose and the message's id under the server's
//! [`EmailKey`]. Deriving it rather than drawing it means the message can be rendered again
//! for a retry (or for a resend after a worker died between sending and recording) with the
//! same link, while the server stores only the token's SHA-256, never the token: the message
//! row holds the id, and only the key turns an id into a token. Anyone without the key can no
//! more guess a token than a random one. The purpose is in the prefix, in the MAC's input and
//! in the stored row, so an invitation's token is no reset token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use sha2::Digest as _;

use super::{InvalidValue, TokenHash, derive_key};
use crate::ids::EmailId;

const SECRET_LEN: usize = 32;
const BODY_LEN: usize = (SECRET_LEN * 4).div_ceil(3);

/// What an emailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Joining a tenant.
    Invitation,
    /// Setting a forgotten password.
    PasswordReset,
    /// Proving an address.
    VerifyEmail,
    /// Telling owners and admins that a webhook was disabled: a notice, with no token.
    WebhookDisabled,
}

impl Purpose {
    /// The name stored with a token and used by templates.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
            Self::WebhookDisabled => "webhook_disabled",
        }
    }

    /// Whether its message carries a token (every purpose but a notice's).
    pub const fn carries_token(self) -> bool {
        !matches!(self, Self::WebhookDisabled)
    }

    /// The purpose named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Invitation, Self::PasswordReset, Self::VerifyEmail, Self::WebhookDisabled]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// What its tokens start with: `pli_`, `plp_`, `plv_`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Invitation => "pli_",
            Self::PasswordReset => "plp_",
            Self::VerifyEmail => "plv_",
            // Never issued: a notice carries no token.
            Self::WebhookDisabled => "plw_",
        }
    }

    /// What a token of this purpose looks like, as a regular expression (the parser refuses a
    /// last character whose two unused low bits are not zero).
    pub const fn pattern(self) -> &'static str {
        match self {
            Self::Invitation => "^pli_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
            Self::PasswordReset => "^plp_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
            Self::VerifyEmail => "^plv_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
            Self::WebhookDisabled => "^plw_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
        }
    }
}

/// An emailed token. `Debug` hides it; it has no `Display` and leaves the process only through
/// [`EmailToken::expose`], into the message that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailToken {
    purpose: Purpose,
    secret: [u8; SECRET_LEN],
}

impl EmailToken {
    /// How many characters a token has.
    pub const TEXT_LEN: usize = 4 + BODY_LEN;

    /// The token of the message `email`, for `purpose`, under `key`.
    pub fn derive(key: &EmailKey, purpose: Purpose, email: EmailId) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0) {
            mac.update(purpose.as_str().as_bytes());
            mac.update(b"\0");
            mac.update(email.as_uuid().as_bytes());
            secret.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self { purpose, secret }
    }

    /// A token of `purpose` in its one spelling. Looks nothing up, and says nothing about why
    /// it refuses (a token of another purpose is refused like a malformed one).
    pub fn parse(purpose: Purpose, s: &str) -> Result<Self, InvalidValue> {
        const INVALID: InvalidValue = InvalidValue("not a valid token");
        if s.len() != Self::TEXT_LEN {
            return Err(INVALID);
        }
        let body = s.strip_prefix(purpose.prefix()).ok_or(INVALID)?;
        let mut bytes = [0u8; SECRET_LEN + 1];
        match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
            Ok(SECRET_LEN) => {
                let mut secret = [0u8; SECRET_LEN];
                secret.copy_from_slice(&bytes[..SECRET_LEN]);
                Ok(Self { purpose, secret })
            }
            _ => Err(INVALID),
        }
    }

    /// What the token is for.
    pub const fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The token's text, for the link in its message (and nowhere else).
    pub fn expose(&self) -> String {
        let mut out = String::with_capacity(Self::TEXT_LEN);
        out.push_str(self.purpose.prefix());
        URL_SAFE_NO_PAD.encode_string(self.secret, &mut out);
        out
    }

    /// What is stored of it.
    pub fn hash(&self) -> TokenHash {
        TokenHash::from_bytes(sha2::Sha256::digest(self.secret).into())
    }
}

impl fmt::Debug for EmailToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailToken({}, ***)", self.purpose.as_str())
    }
}

/// The server's key for emailed tokens. `Debug` hides it.
#[derive(Clone)]
pub struct EmailKey([u8; 32]);

impl EmailKey {
    /// A key derived from another secret, so that secret is never used for two jobs.
    pub fn derive(secret: &[u8]) -> Self {
        Self(derive_key(secret, b"plinth emailed tokens v1"))
    }
}

impl fmt::Debug for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_parses_back_only_under_its_purpose() {
        let key = EmailKey::derive(b"secret");
        let id = EmailId::new();
        for purpose in [Purpose::Invitation, Purpose::PasswordReset, Purpose::VerifyEmail] {
            let token = EmailToken::derive(&key, purpose, id);
            let text = token.expose();
            assert_eq!(text.len(), EmailToken::TEXT_LEN);
            assert!(regex_lite_match(purpose.pattern(), &text), "{text}");
            assert_eq!(EmailToken::parse(purpose, &text).ok(), Some(token.clone()));
            for other in [Purpose::Invitation, Purpose::PasswordReset, Purpose::VerifyEmail] {
                if other != purpose {
                    assert!(EmailToken::parse(other, &text).is_err());
                }
            }
        }
    }

    #[test]
    fn tokens_depend_on_key_purpose_and_message() {
        let (a, b) = (EmailKey::derive(b"one"), EmailKey::derive(b"two"));
        let id = EmailId::new();
        let t = |k, p, i| EmailToken::derive(k, p, i).hash();
        assert!(t(&a, Purpose::Invitation, id).constant_time_eq(&t(&a, Purpose::Invitation, id)));
        assert!(!t(&a, Purpose::Invitation, id).constant_time_eq(&t(&b, Purpose::Invitation, id)));
        assert!(!t(&a, Purpose::Invitation, id).constant_time_eq(&t(&a, Purpose::PasswordReset, id)));
        assert!(!t(&a, Purpose::Invitation, id).constant_time_eq(&t(&a, Purpose::Invitation, EmailId::new())));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = EmailToken::derive(&EmailKey::derive(b"k"), Purpose::PasswordReset, EmailId::new()).expose();
        for bad in [String::new(), good[1..].to_owned(), format!("{good}A"), good.replace("plp_", "plr_")] {
            assert!(EmailToken::parse(Purpose::PasswordReset, &bad).is_err(), "{bad:?}");
        }
        assert!(format!("{:?}", EmailToken::parse(Purpose::PasswordReset, &good)).contains("***"));
        assert!(!format!("{:?}", EmailToken::parse(Purpose::PasswordReset, &good)).contains(&good[4..]));
    }

    /// The pattern's shape, checked by hand (the crate has no regex engine): prefix, 42
    /// base64url characters, one of the allowed last ones.
    fn regex_lite_match(pattern: &str, s: &str) -> bool {
        let prefix = &pattern[1..5];
        let last: Vec<char> = "AEIMQUYcgkosw048".chars().collect();
        s.starts_with(prefix)
            && s[4..s.len() - 1].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && s.chars().last().is_some_and(|c| last.contains(&c))
    }
}
