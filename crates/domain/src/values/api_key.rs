//! Tenant API keys: the token a script presents, the keyed hash the server keeps of it, and
//! the scopes that say which routes it may call.
//!
//! A key is `plk_`, its id as 32 hex digits, `_`, and 54 base64url characters: a 256-bit
//! secret from the OS generator and an 8-byte check, the HMAC of id and secret under the
//! server's [`ApiKeyKey`]. The id is public (it is how the key is found and how its owners tell
//! keys apart). The check lets the server refuse a key it never issued without looking
//! anything up, so made-up keys cost one MAC and never reach the database. Only HMAC-SHA256 of
//! the secret under that key is stored, so a copy of the database alone can't check a guess,
//! and checking a key is two MACs (no password hash on the request path), compared in constant
//! time.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use serde::{Deserialize, Serialize};

use super::{InvalidValue, TokenHash, derive_key};
use crate::ids::ApiKeyId;

const PREFIX: &str = "plk_";
const SECRET_LEN: usize = 32;
const CHECK_LEN: usize = 8;
const SECRET_TEXT_LEN: usize = ((SECRET_LEN + CHECK_LEN) * 4).div_ceil(3);

/// What an API key may do: one per resource and access. A route names the one scope it needs;
/// a key without it gets `403 insufficient_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Reading projects.
    #[serde(rename = "projects:read")]
    ProjectsRead,
    /// Creating, renaming and deleting projects.
    #[serde(rename = "projects:write")]
    ProjectsWrite,
    /// Reading users and pending invitations.
    #[serde(rename = "users:read")]
    UsersRead,
    /// Removing users, ending their sessions and revoking invitations (never inviting users
    /// or changing roles: those stay with people).
    #[serde(rename = "users:write")]
    UsersWrite,
    /// Reading webhooks and their deliveries.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// Creating and deleting webhooks.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    /// Reading and verifying the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    /// Every scope, in the order of their bits.
    pub const ALL: [Self; 7] = [
        Self::ProjectsRead,
        Self::ProjectsWrite,
        Self::UsersRead,
        Self::UsersWrite,
        Self::WebhooksRead,
        Self::WebhooksWrite,
        Self::AuditRead,
    ];

    /// The scope's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProjectsRead => "projects:read",
            Self::ProjectsWrite => "projects:write",
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::WebhooksRead => "webhooks:read",
            Self::WebhooksWrite => "webhooks:write",
            Self::AuditRead => "audit:read",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or(InvalidValue(
            "must be one of projects:read, projects:write, users:read, users:write, webhooks:read, webhooks:write, \
             audit:read",
        ))
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// Every scope: what a person's token carries (their role still decides).
    pub const ALL: Self = Self((1 << Scope::ALL.len()) - 1);

    /// The set of `scopes`.
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The set as bits, for storage in a cache value.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set from [`Self::bits`]; unknown bits are dropped.
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// The scopes in the set, in [`Scope::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Scope::as_str)).finish()
    }
}

/// An API key as presented. `Debug` hides the secret; it has no `Display` and leaves the
/// process only through [`ApiKeyToken::expose`], into the one answer that creates it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyToken {
    id: ApiKeyId,
    secret: [u8; SECRET_LEN],
}

impl ApiKeyToken {
    /// How many characters a key has.
    pub const TEXT_LEN: usize = PREFIX.len() + 32 + 1 + SECRET_TEXT_LEN;

    /// A new key for the key row `id`, its secret from the OS generator. Errors: `Internal`
    /// when the OS has no randomness to give.
    pub fn generate(id: ApiKeyId) -> crate::Result<Self> {
        use rand::TryRngCore as _;
        let mut secret = [0u8; SECRET_LEN];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(crate::Error::internal)?;
        Ok(Self { id, secret })
    }

    /// Whether `s` claims to be an API key (its prefix): such a bearer token is checked as a
    /// key and never as a JWT.
    pub fn looks_like(s: &str) -> bool {
        s.starts_with(PREFIX)
    }

    /// A key in its one spelling (the prefix, 32 lowercase hex digits, `_`, canonical unpadded
    /// base64url) whose check `key` confirms: a key this server (or one sharing its key)
    /// issued. Looks nothing up, and says nothing about why it refuses.
    pub fn parse(s: &str, key: &ApiKeyKey) -> Result<Self, InvalidValue> {
        const INVALID: InvalidValue = InvalidValue("not an API key");
        if s.len() != Self::TEXT_LEN {
            return Err(INVALID);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(INVALID)?;
        let (id, secret) = rest.split_at_checked(32).ok_or(INVALID)?;
        let secret = secret.strip_prefix('_').ok_or(INVALID)?;
        if !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(INVALID);
        }
        let id = uuid::Uuid::try_parse(id).map_err(|_| INVALID)?;
        let mut bytes = [0u8; SECRET_LEN + CHECK_LEN + 1];
        if URL_SAFE_NO_PAD.decode_slice(secret, &mut bytes) != Ok(SECRET_LEN + CHECK_LEN) {
            return Err(INVALID);
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&bytes[..SECRET_LEN]);
        let token = Self { id: ApiKeyId::from_uuid(id), secret };
        let check = token.check(key);
        let given = &bytes[SECRET_LEN..SECRET_LEN + CHECK_LEN];
        if subtle::ConstantTimeEq::ct_eq(&check[..], given).into() { Ok(token) } else { Err(INVALID) }
    }

    /// The check: the first bytes of the MAC of the id and the secret under `key`.
    fn check(&self, key: &ApiKeyKey) -> [u8; CHECK_LEN] {
        let mut out = [0u8; CHECK_LEN];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0) {
            mac.update(b"check\0");
            mac.update(self.id.as_uuid().as_bytes());
            mac.update(&self.secret);
            out.copy_from_slice(&mac.finalize().into_bytes()[..CHECK_LEN]);
        }
        out
    }

    /// The key's id: its public part.
    pub const fn id(&self) -> ApiKeyId {
        self.id
    }

    /// `plk_<id>`: how lists show a key, enough to tell keys apart and nothing to use.
    pub fn prefix_of(id: ApiKeyId) -> String {
        let mut out = String::with_capacity(PREFIX.len() + 32);
        out.push_str(PREFIX);
        out.push_str(id.as_uuid().simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
        out
    }

    /// The key's text, with its check under `key`, for the answer that creates it (and
    /// nowhere else).
    pub fn expose(&self, key: &ApiKeyKey) -> String {
        let mut out = Self::prefix_of(self.id);
        out.reserve(1 + SECRET_TEXT_LEN);
        out.push('_');
        let mut bytes = [0u8; SECRET_LEN + CHECK_LEN];
        bytes[..SECRET_LEN].copy_from_slice(&self.secret);
        bytes[SECRET_LEN..].copy_from_slice(&self.check(key));
        URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
        out
    }

    /// What is stored of it: the MAC of its id and secret under `key`.
    pub fn hash(&self, key: &ApiKeyKey) -> TokenHash {
        let mut out = [0u8; 32];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0) {
            mac.update(self.id.as_uuid().as_bytes());
            mac.update(&self.secret);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        TokenHash::from_bytes(out)
    }
}

impl fmt::Debug for ApiKeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyToken({}, ***)", Self::prefix_of(self.id))
    }
}

/// The server's key for API-key hashes. `Debug` hides it.
#[derive(Clone)]
pub struct ApiKeyKey([u8; 32]);

impl ApiKeyKey {
    /// A key derived from another secret, so that secret is never used for two jobs.
    pub fn derive(secret: &[u8]) -> Self {
        Self(derive_key(secret, b"plinth api keys v1"))
    }
}

impl fmt::Debug for ApiKeyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_back_and_its_hash_needs_the_server_key() {
        let token = ApiKeyToken::generate(ApiKeyId::new()).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (ApiKeyKey::derive(b"one"), ApiKeyKey::derive(b"two"));
        let text = token.expose(&a);
        assert_eq!(text.len(), ApiKeyToken::TEXT_LEN);
        assert!(text.starts_with(&ApiKeyToken::prefix_of(token.id())));
        let parsed = ApiKeyToken::parse(&text, &a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, token);
        assert!(ApiKeyToken::parse(&text, &b).is_err(), "another server's key fails its check");
        assert!(parsed.hash(&a).constant_time_eq(&token.hash(&a)));
        assert!(!parsed.hash(&a).constant_time_eq(&token.hash(&b)));
        let other = ApiKeyToken::generate(token.id()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!other.hash(&a).constant_time_eq(&token.hash(&a)));
        assert!(!format!("{token:?}").contains(&text[37..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = ApiKeyKey::derive(b"k");
        let good = ApiKeyToken::generate(ApiKeyId::new()).unwrap_or_else(|e| panic!("{e}")).expose(&key);
        assert!(ApiKeyToken::parse(&good, &key).is_ok());
        // Another secret (or another id) under the same check: refused without a lookup.
        let mut forged = good.clone();
        let at = 4 + 32 + 1 + 10;
        let swapped = if &forged[at..=at] == "A" { "B" } else { "A" };
        forged.replace_range(at..=at, swapped);
        let upper = format!("plk_{}{}", good[4..36].to_uppercase(), &good[36..]);
        for bad in [
            String::new(),
            good[1..].to_owned(),
            format!("{good}A"),
            good.replace("plk_", "plr_"),
            good.replacen('_', "-", 2),
            upper,
            format!("{}Z{}", &good[..5], &good[6..]),
            forged,
        ] {
            if bad != good {
                assert!(ApiKeyToken::parse(&bad, &key).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn scopes_round_trip_by_name_and_bits() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().ok(), Some(scope));
        }
        assert!("projects:admin".parse::<Scope>().is_err());
        let set = Scopes::of([Scope::ProjectsRead, Scope::AuditRead]);
        assert!(set.contains(Scope::AuditRead) && !set.contains(Scope::ProjectsWrite));
        assert_eq!(Scopes::from_bits(set.bits()), set);
        assert_eq!(Scopes::from_bits(u16::MAX), Scopes::ALL);
        assert_eq!(Scopes::ALL.iter().count(), Scope::ALL.len());
    }
}
