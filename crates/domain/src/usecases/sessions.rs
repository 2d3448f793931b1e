//! Sessions: one per login, continued by rotating refresh tokens, ended by the user, by a
//! manager, by a password or role change, by reuse of a spent token, or by expiry.
//!
//! The reuse rule: a spent refresh token presented again ends its whole session (every token
//! descended from that login, and the access tokens it issued), unless it comes within
//! [`SessionSettings::reuse_window`] of its spending while the token that replaced it is still
//! unspent: then it is a retry of a refresh whose answer was lost, and it gets that same
//! successor again (recomputed from the token under the server's key, never stored) with a
//! new access token. Once the successor has been spent, any replay of its predecessor is reuse.

use std::time::Duration;

use super::Plinth;
use super::audit::by_user;
use crate::audit::Target;
use crate::entities::{Session, Tenant, User};
use crate::error::{Error, Result, Validator};
use crate::ids::{SessionId, UserId};
use crate::ports::{AccessToken, Spend};
use crate::usecases::Principal;
use crate::values::{Password, RefreshKey, RefreshToken};

/// How sessions and their refresh tokens behave.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session not refreshed for this long ends.
    pub idle: Duration,
    /// A session ends this long after its login, whatever happens.
    pub max: Duration,
    /// How long after its spending a refresh token may be presented again and get the same
    /// successor (a retry after a lost answer) instead of ending the session.
    pub reuse_window: Duration,
    /// Derives each refresh token's successor.
    pub key: RefreshKey,
}

impl SessionSettings {
    /// The defaults (14 days idle, 90 days in all, a 10 s retry window) with `key`.
    pub fn with_key(key: RefreshKey) -> Self {
        Self {
            idle: Duration::from_secs(14 * 24 * 3600),
            max: Duration::from_secs(90 * 24 * 3600),
            reuse_window: Duration::from_secs(10),
            key,
        }
    }
}

/// Where a login comes from, as the session list shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address, as the rate limits see it.
    pub ip: Option<String>,
    /// Its `User-Agent`, cut to [`Session::USER_AGENT_MAX_CHARS`] characters.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// Client information, the user agent cut on a character boundary.
    pub fn new(ip: Option<String>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|ua| ua.chars().filter(|c| !c.is_control()).take(Session::USER_AGENT_MAX_CHARS).collect::<String>())
            .filter(|ua| !ua.is_empty());
        Self { ip, user_agent }
    }
}

/// What signing in (login, signup, refresh) hands the client. `Debug` hides the tokens.
#[derive(Clone)]
pub struct SignedIn {
    /// A short-lived access token carrying the session's id.
    pub access: AccessToken,
    /// The session's live refresh token.
    pub refresh: RefreshToken,
    /// The session.
    pub session: SessionId,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn").field("session", &self.session).finish_non_exhaustive()
    }
}

/// `t` plus `d`, saturating (a lifetime of any length is a valid setting).
pub(super) fn after(t: time::OffsetDateTime, d: Duration) -> time::OffsetDateTime {
    t.saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
}

impl Plinth {
    /// Starts a session for `user`: a new refresh token and an access token carrying it.
    pub(super) async fn start_session(&self, user: &User, client: ClientInfo) -> Result<SignedIn> {
        let now = self.ports.clock.now();
        let s = &self.settings.sessions;
        let expires_at = after(now, s.max);
        let session = Session {
            id: SessionId::new(),
            tenant_id: user.tenant_id,
            user_id: user.id,
            created_at: now,
            last_used_at: now,
            idle_expires_at: after(now, s.idle).min(expires_at),
            expires_at,
            ip: client.ip,
            user_agent: client.user_agent,
        };
        let refresh = RefreshToken::generate()?;
        let trail = self.audit(
            by_user(user.id),
            "user.signed_in",
            Some(Target::new("session", session.id)),
            serde_json::json!({}),
        );
        self.ports.sessions.create(&session, &refresh.hash(), &trail).await?;
        let access = self.ports.tokens.issue(user.id, user.tenant_id, user.role, user.token_version, session.id)?;
        Ok(SignedIn { access, refresh, session: session.id })
    }

    /// Continues a session with its refresh token: the token is spent, and a new access token
    /// and refresh token are answered (see the module's reuse rule). A token that is malformed,
    /// unknown, spent, or of an ended or expired session is refused alike. Errors:
    /// `InvalidToken`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn refresh(&self, tenant: &Tenant, token: &str) -> Result<SignedIn> {
        let token = RefreshToken::parse(token).map_err(|_| Error::InvalidToken)?;
        let s = &self.settings.sessions;
        let now = self.ports.clock.now();
        let successor = token.successor(&s.key);
        let successor_hash = successor.hash();
        let spend =
            self.ports.sessions.spend(tenant.id, &token.hash(), &successor_hash, now, after(now, s.idle)).await?;
        let session = match spend {
            Spend::Rotated(session) => session,
            Spend::Spent { session, spent_at, successor: recorded, successor_live } => {
                let retry = successor_live
                    && recorded.constant_time_eq(&successor_hash)
                    && session.is_live(now)
                    && now - spent_at <= time::Duration::try_from(s.reuse_window).unwrap_or(time::Duration::ZERO);
                if !retry {
                    tracing::info!(session = %session.id, "a spent refresh token was presented again: session ended");
                    self.end_session_everywhere(tenant, session.id, "refresh_token_reused").await?;
                    return Err(Error::InvalidToken);
                }
                session
            }
            Spend::Expired(id) => {
                self.end_session_everywhere(tenant, id, "expired").await?;
                return Err(Error::InvalidToken);
            }
            Spend::Unknown => return Err(Error::InvalidToken),
        };
        let user = self.ports.users.get(tenant.id, session.user_id).await?.ok_or(Error::InvalidToken)?;
        let access = self.ports.tokens.issue(user.id, tenant.id, user.role, user.token_version, session.id)?;
        Ok(SignedIn { access, refresh: successor, session: session.id })
    }

    /// Ends a session (for `reason`) and makes every instance drop its cached marker.
    async fn end_session_everywhere(&self, tenant: &Tenant, id: SessionId, reason: &str) -> Result<()> {
        let trail = self.audit(
            None,
            "session.ended",
            Some(Target::new("session", id)),
            serde_json::json!({ "reason": reason }),
        );
        self.ports.sessions.end(tenant.id, id, None, &trail).await?;
        self.cache.invalidate(tenant.id).await;
        Ok(())
    }

    /// Ends the caller's session: its refresh token and access tokens stop working.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn logout(&self, who: &Principal) -> Result<()> {
        let (user, session) = who.person()?;
        let trail =
            self.audit(who.actor(), "session.ended", Some(Target::new("session", session)), serde_json::json!({}));
        self.ports.sessions.end(who.tenant, session, Some(user), &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }

    /// The caller's live sessions, newest first.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn my_sessions(&self, who: &Principal) -> Result<Vec<Session>> {
        let (user, _) = who.person()?;
        self.ports.sessions.list(who.tenant, user, self.ports.clock.now()).await
    }

    /// Ends one of the caller's sessions. Errors: `NotFound` (another user's session too).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn end_my_session(&self, who: &Principal, id: SessionId) -> Result<()> {
        let (user, _) = who.person()?;
        let trail = self.audit(who.actor(), "session.ended", Some(Target::new("session", id)), serde_json::json!({}));
        if !self.ports.sessions.end(who.tenant, id, Some(user), &trail).await? {
            return Err(Error::NotFound);
        }
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }

    /// Ends every session of a user of the tenant, under the rules for changing that user.
    /// Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn end_user_sessions(&self, who: &Principal, id: UserId) -> Result<()> {
        who.require_manager()?;
        let target = self.ports.users.get(who.tenant, id).await?.ok_or(Error::NotFound)?;
        super::users::guard_owner(who, &target)?;
        let trail =
            self.audit(who.actor(), "user.sessions_ended", Some(Target::new("user", id)), serde_json::json!({}));
        self.ports.sessions.end_all(who.tenant, id, None, &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }

    /// Changes the caller's password, checking the current one, and ends every other session
    /// of theirs. Errors: `InvalidCredentials` (a wrong current password); `Validation`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn change_password(&self, who: &Principal, current: &str, new: &str) -> Result<()> {
        let mut v = Validator::new();
        let new = v.check("new_password", Password::parse(new));
        let Some(new) = new else { return Err(v.into_error()) };
        let (user, session) = who.person()?;
        let user = self.ports.users.get(who.tenant, user).await?.ok_or(Error::InvalidToken)?;
        // A malformed current password still spends a verification, like a wrong one.
        let current = Password::parse(current).ok();
        let matches = match &current {
            Some(p) => self.ports.passwords.verify(p, Some(&user.password_hash)).await?,
            None => {
                let dummy = Password::parse("not the password of anyone").map_err(Error::internal)?;
                self.ports.passwords.verify(&dummy, None).await?;
                false
            }
        };
        if !matches {
            let trail = self.audit(
                who.actor(),
                "user.password_change_failed",
                Some(Target::new("user", user.id)),
                serde_json::json!({}),
            );
            if !trail.is_empty() {
                self.ports.audit.append(who.tenant, &trail).await?;
            }
            return Err(Error::InvalidCredentials);
        }
        let hash = self.ports.passwords.hash(&new).await?;
        let trail =
            self.audit(who.actor(), "user.password_changed", Some(Target::new("user", user.id)), serde_json::json!({}));
        self.ports.sessions.change_password(who.tenant, user.id, &hash, session, &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }
}
