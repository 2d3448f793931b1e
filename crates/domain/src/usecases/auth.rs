//! Logging in, and checking the token a request carries.

use bytes::Bytes;

use super::Plinth;
use crate::cache::Scope;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::ids::{SessionId, TenantId, UserId};
use crate::ports::Claims;
use crate::usecases::{ClientInfo, SignedIn};
use crate::values::{Email, Password, Role};

/// Who a request acts as: established from a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the token was issued for (and the host names).
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// The user's role, current as of the last few seconds.
    pub role: Role,
    /// The session the token belongs to, live as of the last few seconds.
    pub session: SessionId,
    /// Whether the user's address is verified, as of the last few seconds.
    pub email_verified: bool,
}

impl Principal {
    /// `Ok` unless the deployment requires verified addresses for writes (`required`) and this
    /// principal's is not: then `EmailUnverified`.
    pub fn require_verified(&self, required: bool) -> Result<()> {
        if required && !self.email_verified { Err(Error::EmailUnverified) } else { Ok(()) }
    }

    /// `Ok` when this principal manages users (owner or admin), else `Forbidden`.
    pub fn require_manager(&self) -> Result<()> {
        if self.role.manages_users() { Ok(()) } else { Err(Error::Forbidden("only an owner or an admin may do this")) }
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
        let user = match Email::parse(email) {
            Ok(email) if password.is_some() => self.ports.users.find_by_email(tenant.id, &email).await?,
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
            _ => Err(Error::InvalidCredentials),
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
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    pub async fn authenticate(&self, tenant: TenantId, claims: &Claims) -> Result<Principal> {
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
        Ok(Principal { tenant, user: claims.user, role: claims.role, session: claims.session, email_verified })
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
