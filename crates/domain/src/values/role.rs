//! Users' roles and tenants' plans.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// What a user may do within its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing owners.
    Owner,
    /// Manages users (but not owners) and deletes projects.
    Admin,
    /// Works on projects.
    Member,
}

impl Role {
    /// The role's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Whether this role manages users.
    pub const fn manages_users(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(InvalidValue("must be one of owner, admin, member")),
        }
    }
}

/// A tenant's plan: it sets the tenant's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// The plan of every new tenant.
    Free,
    /// Ten times the free quota.
    Pro,
    /// A hundred times the free quota.
    Enterprise,
}

impl Plan {
    /// The plan's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

impl FromStr for Plan {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "free" => Ok(Self::Free),
            "pro" => Ok(Self::Pro),
            "enterprise" => Ok(Self::Enterprise),
            _ => Err(InvalidValue("must be one of free, pro, enterprise")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_plans_round_trip_through_their_names() {
        for r in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        for p in [Plan::Free, Plan::Pro, Plan::Enterprise] {
            assert_eq!(p.as_str().parse::<Plan>(), Ok(p));
        }
        assert!("Owner".parse::<Role>().is_err());
        assert!("gold".parse::<Plan>().is_err());
    }

    #[test]
    fn only_owners_and_admins_manage_users() {
        assert!(Role::Owner.manages_users());
        assert!(Role::Admin.manages_users());
        assert!(!Role::Member.manages_users());
    }
}
