//! Access tokens and password hashing.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{SessionId, TenantId, UserId};
use crate::values::{Password, PasswordHash, Role};

/// What a verified access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The user (`sub`).
    pub user: UserId,
    /// The tenant the token was issued for (`tid`).
    pub tenant: TenantId,
    /// The user's role when the token was issued.
    pub role: Role,
    /// The user's token version when the token was issued (`ver`).
    pub version: u32,
    /// The session the token belongs to (`sid`).
    pub session: SessionId,
    /// Issued at, Unix seconds.
    pub issued_at: i64,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
}

/// A signed access token. `Debug` hides it.
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(***, expires_in: {})", self.expires_in)
    }
}

/// Issues and verifies access tokens. Pure computation, so not async.
pub trait TokenService: Send + Sync {
    /// A token for `user` of `tenant` with `role`, at the user's token `version`, in `session`.
    fn issue(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        version: u32,
        session: SessionId,
    ) -> Result<AccessToken>;

    /// The claims of a token this service (or a key it trusts) signed, with the pinned
    /// algorithm, unexpired, with the expected issuer and audience.
    /// Errors: `InvalidToken`. The tenant is not checked here; the caller compares `tenant`.
    fn verify(&self, token: &str) -> Result<Claims>;
}

/// Hashes and verifies passwords, off the request threads.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// The hash of `password`, with a fresh salt.
    async fn hash(&self, password: &Password) -> Result<PasswordHash>;

    /// Whether `password` matches `hash`. With no hash (an unknown email) it still spends
    /// one verification, against a fixed dummy, and answers false: timing reveals nothing.
    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> Result<bool>;
}
