//! Sessions and their refresh tokens.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditTrail;
use crate::entities::Session;
use crate::error::Result;
use crate::ids::{SessionId, TenantId, UserId};
use crate::values::{PasswordHash, Role, TokenHash};

/// What presenting a refresh token found, decided atomically: of two refreshes racing with one
/// token, exactly one rotates it and the other sees it spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// The token was live and its session too: it is now spent, `successor` is the session's
    /// live token, and the session (as returned) was used at `now`.
    Rotated(Session),
    /// The token had been spent already.
    Spent {
        /// Its session, as it is (live or not).
        session: Session,
        /// When the token was spent.
        spent_at: OffsetDateTime,
        /// The hash of the token that replaced it.
        successor: TokenHash,
        /// Whether that successor is still unspent.
        successor_live: bool,
    },
    /// The token is unspent but its session has expired; nothing changed.
    Expired(SessionId),
    /// No session of this tenant has this token (or it was ended).
    Unknown,
}

/// A tenant's sessions. Ending a session deletes it with its tokens; deleting a user ends
/// their sessions, and so does changing their role (in the user repository's transaction).
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a new session whose live refresh token has hash `token`.
    /// Errors: `NotFound` when the session's user does not exist.
    async fn create(&self, session: &Session, token: &TokenHash, trail: &AuditTrail) -> Result<()>;

    /// Spends the refresh token with hash `token` if it and its session are live at `now`:
    /// marks it spent, stores `successor` as the session's live token, and sets the session's
    /// last use to `now` and its idle expiry to `idle_until` (never past its absolute expiry).
    async fn spend(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        successor: &TokenHash,
        now: OffsetDateTime,
        idle_until: OffsetDateTime,
    ) -> Result<Spend>;

    /// The role, token version and address verification of `user`, if `session` is theirs and
    /// live at `now`: what every access token of the session is checked against (one read,
    /// cached by the caller).
    async fn marker(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<(Role, u32, bool)>>;

    /// The user's sessions live at `now`, newest first.
    async fn list(&self, tenant: TenantId, user: UserId, now: OffsetDateTime) -> Result<Vec<Session>>;

    /// Ends `session`, only if it belongs to `user` when one is given; returns whether it
    /// existed (and belonged to them).
    async fn end(&self, tenant: TenantId, session: SessionId, user: Option<UserId>, trail: &AuditTrail)
    -> Result<bool>;

    /// Ends every session of `user` but `except`; returns how many.
    async fn end_all(
        &self,
        tenant: TenantId,
        user: UserId,
        except: Option<SessionId>,
        trail: &AuditTrail,
    ) -> Result<u64>;

    /// Sets `user`'s password hash, ends every session of theirs but `keep` and spends their
    /// password-reset tokens, atomically.
    /// Errors: `NotFound`.
    async fn change_password(
        &self,
        tenant: TenantId,
        user: UserId,
        hash: &PasswordHash,
        keep: SessionId,
        trail: &AuditTrail,
    ) -> Result<()>;

    /// Deletes the sessions of every tenant that are no longer live at `now` (an adapter whose
    /// store keeps its own time may use the earlier of `now` and its own); returns how many.
    async fn prune(&self, now: OffsetDateTime) -> Result<u64>;
}
