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

/// A tenant's plan, by name: what the plan catalog (`crate::plans`) says it allows. Names are
/// 1–32 characters of `a-z`, `0-9` and `-`, starting with a letter; `free` is every new
/// tenant's.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "free"))]
#[serde(try_from = "String", into = "String")]
pub struct Plan(std::sync::Arc<str>);

impl Plan {
    /// The plan of every new tenant.
    pub fn free() -> Self {
        Self(std::sync::Arc::from("free"))
    }

    /// Validates a plan's name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=32).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(std::sync::Arc::from(s)))
        } else {
            Err(InvalidValue("must be 1 to 32 of a-z, 0-9 and -, starting with a letter"))
        }
    }

    /// The plan's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plan({})", self.as_str())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Plan {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Plan> for String {
    fn from(p: Plan) -> Self {
        p.as_str().to_owned()
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
        for p in ["free", "pro", "enterprise", "team-2"] {
            assert_eq!(p.parse::<Plan>().map(|p| p.as_str().to_owned()), Ok(p.to_owned()));
        }
        assert!("Owner".parse::<Role>().is_err());
        for bad in ["", "Gold", "2fast", "a b", &"x".repeat(33)] {
            assert!(bad.parse::<Plan>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_owners_and_admins_manage_users() {
        assert!(Role::Owner.manages_users());
        assert!(Role::Admin.manages_users());
        assert!(!Role::Member.manages_users());
    }
}
