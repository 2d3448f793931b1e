//! Logging in, and checking the token a request carries.

use bytes::Bytes;

use super::Plinth;
use crate::cache::Scope;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, SessionId, TenantId, UserId};
use crate::ports::{Claims, Quota};
use crate::usecases::{ClientInfo, SignedIn};
use crate::values::{Email, Password, Role, Scope as KeyScope, Scopes};

/// Who a request acts as: established from a valid token or API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the token was issued for (and the host names).
    pub tenant: TenantId,
    /// The person or key.
    pub caller: Caller,
    /// What the caller may do: a user's role, or a key's ceiling (its creator's role then, or
    /// now if lower), current as of the last few seconds.
    pub role: Role,
    /// Whether the user's address is verified, as of the last few seconds (a key: true).
    pub email_verified: bool,
    /// The routes a key may call; every scope for a person (their role still decides).
    pub scopes: Scopes,
    /// What the tenant's plan allows, as of the last few seconds.
    pub limits: crate::plans::PlanLimits,
}

/// A person signed in, or a tenant API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A user, by an access token of one of their sessions.
    User {
        /// The user.
        user: UserId,
        /// The session the token belongs to, live as of the last few seconds.
        session: SessionId,
    },
    /// A tenant API key.
    Key {
        /// The key.
        key: ApiKeyId,
        /// Its own quota, if it has one.
        quota: Option<Quota>,
    },
}

impl Principal {
    /// A person's principal, with every scope, on a plan without limits (set `limits` for
    /// the tenant's).
    pub const fn user(tenant: TenantId, user: UserId, session: SessionId, role: Role, email_verified: bool) -> Self {
        Self {
            tenant,
            caller: Caller::User { user, session },
            role,
            email_verified,
            scopes: Scopes::ALL,
            limits: crate::plans::PlanLimits { members: None, projects: None, webhooks: None, api_keys: None },
        }
    }

    /// `Ok` unless the deployment requires verified addresses for writes (`required`) and this
    /// principal's is not: then `EmailUnverified`.
    pub fn require_verified(&self, required: bool) -> Result<()> {
        if required && !self.email_verified { Err(Error::EmailUnverified) } else { Ok(()) }
    }

    /// `Ok` when this principal manages users (owner or admin), else `Forbidden`.
    pub fn require_manager(&self) -> Result<()> {
        if self.role.manages_users() { Ok(()) } else { Err(Error::Forbidden("only an owner or an admin may do this")) }
    }

    /// The user and session of a person; `Forbidden` for an API key (creating keys, inviting
    /// users, changing roles and a person's own account stay with people).
    pub fn person(&self) -> Result<(UserId, SessionId)> {
        match self.caller {
            Caller::User { user, session } => Ok((user, session)),
            Caller::Key { .. } => Err(Error::Forbidden("an API key may not do this; a person must")),
        }
    }

    /// `Ok` when the caller holds `scope`, else `InsufficientScope`.
    pub fn require_scope(&self, scope: KeyScope) -> Result<()> {
        if self.scopes.contains(scope) { Ok(()) } else { Err(Error::InsufficientScope(scope)) }
    }

    /// Who this is, as the audit log records it.
    pub(crate) const fn actor(&self) -> Option<(crate::audit::ActorKind, uuid::Uuid)> {
        match self.caller {
            Caller::User { user, .. } => Some((crate::audit::ActorKind::User, *user.as_uuid())),
            Caller::Key { key, .. } => Some((crate::audit::ActorKind::ApiKey, *key.as_uuid())),
        }
    }

    /// The user's or key's id: whose idempotency keys and audit entries these are.
    pub const fn id(&self) -> uuid::Uuid {
        match self.caller {
            Caller::User { user, .. } => *user.as_uuid(),
            Caller::Key { key, .. } => *key.as_uuid(),
        }
    }
}

/// The marker cached for "session ended, expired or not this user's, or user deleted"; a live
/// session's marker is otherwise its user's `<role>:<token version>:<verified, 0 or 1>`.
const DELETED: &[u8] = b"-";

/// `Some(whether the address is verified)` when `marker` (see [`DELETED`]) says `role` at
/// `version`; `None` when it does not.
fn marker_matches(marker: &[u8], role: Role, version: u32) -> Option<bool> {
    let rest = marker.strip_prefix(role.as_str().as_bytes())?.strip_prefix(b":")?;
    let (v, verified) = match rest {
        [v @ .., b':', b'1'] => (v, true),
        [v @ .., b':', b'0'] => (v, false),
        _ => return None,
    };
    (std::str::from_utf8(v).ok()?.parse::<u32>().ok()? == version).then_some(verified)
}

/// `session:<id>`: the key of a session's marker.
fn marker_key(session: SessionId) -> String {
    let mut key = String::with_capacity(8 + 36);
    key.push_str("session:");
    session.push_to(&mut key);
    key
}

impl Plinth {
    /// Signs in `email` of `tenant`, starting a session for `client`. An unknown email and a
    /// wrong password get the same answer after about the same time. Errors:
    /// `InvalidCredentials`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn login(&self, tenant: &Tenant, email: &str, password: &str, client: ClientInfo) -> Result<SignedIn> {
        // Malformed input still spends a hash, like an unknown email.
        let password = Password::parse(password).ok();
        let parsed = Email::parse(email).ok();
        let user = match &parsed {
            Some(email) if password.is_some() => self.ports.users.find_by_email(tenant.id, email).await?,
            _ => None,
        };
        let dummy;
        let password = match &password {
            Some(p) => p,
            None => {
                dummy = Password::parse("not the password of anyone").map_err(Error::internal)?;
                &dummy
            }
        };
        let matches = self.ports.passwords.verify(password, user.as_ref().map(|u| &u.password_hash)).await?;
        match user {
            Some(user) if matches => self.start_session(&user, client).await,
            user => {
                // Only an address that parses is recorded: what else was typed is the
                // client's noise (or a password typed in the wrong field).
                let target = user.map(|u| crate::audit::Target::new("user", u.id));
                let changes = serde_json::json!({ "email": parsed });
                let trail = self.audit(None, "user.sign_in_failed", target, changes);
                if !trail.is_empty() {
                    self.ports.audit.append(tenant.id, &trail).await?;
                }
                Err(Error::InvalidCredentials)
            }
        }
    }

    /// The claims of `token`, if its signature and claims check out: the first half of
    /// [`Plinth::authenticate`], which touches no cache and no database, so a request can be
    /// counted by the right policy before anything it names is looked up. Errors:
    /// `InvalidToken`.
    pub fn verify_token(&self, token: &str) -> Result<Claims> {
        self.ports.tokens.verify(token)
    }

    /// The principal a token with these verified `claims` establishes on `tenant`'s host.
    /// Refuses a token issued for another tenant, one whose session has ended or expired, and
    /// one whose user was deleted or changed role since it was issued: the token's role and
    /// version must be the user's current ones. Both are one cached marker per session (one
    /// cache lookup per request), which every ended session, deletion, role and password
    /// change invalidates on every instance (the tenant's generation). Errors: `InvalidToken`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %on.slug))]
    pub async fn authenticate(&self, on: &Tenant, claims: &Claims) -> Result<Principal> {
        let tenant = on.id;
        if claims.tenant != tenant {
            return Err(Error::InvalidToken);
        }
        let marker = self
            .cache
            .cached(Scope::Tenant(tenant), &marker_key(claims.session), self.settings.ttls.user_marker, || async {
                let now = self.ports.clock.now();
                Ok(match self.ports.sessions.marker(tenant, claims.session, claims.user, now).await? {
                    Some((role, version, verified)) => {
                        Bytes::from(format!("{}:{version}:{}", role.as_str(), u8::from(verified)))
                    }
                    None => Bytes::from_static(DELETED),
                })
            })
            .await?;
        let Some(email_verified) = marker_matches(&marker, claims.role, claims.version) else {
            return Err(Error::InvalidToken);
        };
        let limits = self.settings.plans.get(&on.plan).limits;
        Ok(Principal { limits, ..Principal::user(tenant, claims.user, claims.session, claims.role, email_verified) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_matches_only_its_role_at_its_version() {
        assert_eq!(marker_matches(b"admin:0:0", Role::Admin, 0), Some(false));
        assert_eq!(marker_matches(b"member:12:1", Role::Member, 12), Some(true));
        assert_eq!(marker_matches(b"admin:1:1", Role::Admin, 0), None);
        assert_eq!(marker_matches(b"admin:0:1", Role::Member, 0), None);
        assert_eq!(marker_matches(b"admin:0", Role::Admin, 0), None);
        assert_eq!(marker_matches(b"admin", Role::Admin, 0), None);
        assert_eq!(marker_matches(DELETED, Role::Owner, 0), None);
        assert_eq!(marker_matches(b"owner::1", Role::Owner, 0), None);
        assert_eq!(marker_matches(b"owner:0:2", Role::Owner, 0), None);
    }
}
