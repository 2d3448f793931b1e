//! Logging in, and checking the token a request carries.

use bytes::Bytes;

use super::Plinth;
use crate::cache::Scope;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::ids::{TenantId, UserId};
use crate::ports::AccessToken;
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
}

impl Principal {
    /// `Ok` when this principal manages users (owner or admin), else `Forbidden`.
    pub fn require_manager(&self) -> Result<()> {
        if self.role.manages_users() { Ok(()) } else { Err(Error::Forbidden("only an owner or an admin may do this")) }
    }
}

/// The marker cached for "user deleted".
const DELETED: &[u8] = b"-";

impl Plinth {
    /// Signs in `email` of `tenant`. An unknown email and a wrong password get the same
    /// answer after about the same time. Errors: `InvalidCredentials`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn login(&self, tenant: &Tenant, email: &str, password: &str) -> Result<AccessToken> {
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
            Some(user) if matches => self.ports.tokens.issue(user.id, tenant.id, user.role),
            _ => Err(Error::InvalidCredentials),
        }
    }

    /// The principal `token` establishes on `tenant`'s host. Refuses a token issued for another
    /// tenant, and one whose user was deleted or changed role since it was issued (seen within
    /// `ttls.user_marker`). Errors: `InvalidToken`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    pub async fn authenticate(&self, tenant: TenantId, token: &str) -> Result<Principal> {
        let claims = self.ports.tokens.verify(token)?;
        if claims.tenant != tenant {
            return Err(Error::InvalidToken);
        }
        let marker = self
            .cache
            .cached(Scope::Tenant(tenant), &format!("role:{}", claims.user), self.settings.ttls.user_marker, || async {
                Ok(match self.ports.users.get(tenant, claims.user).await? {
                    Some(u) => Bytes::from_static(u.role.as_str().as_bytes()),
                    None => Bytes::from_static(DELETED),
                })
            })
            .await?;
        if marker != claims.role.as_str().as_bytes() {
            return Err(Error::InvalidToken);
        }
        Ok(Principal { tenant, user: claims.user, role: claims.role })
    }
}
