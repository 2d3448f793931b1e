//! Plans are data: each names its request quota and its resource limits. The catalog is read
//! once at start-up (from `PLINTH_PLANS_FILE`, or built in) and shared by every use case.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ports::Quota;
use crate::values::Plan;

/// What a plan allows of each resource; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanLimits {
    /// Users of the tenant.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = 5))]
    pub members: Option<u32>,
    /// Projects.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = 100))]
    pub projects: Option<u32>,
    /// Webhooks.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = 5))]
    pub webhooks: Option<u32>,
    /// Live API keys.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = 5))]
    pub api_keys: Option<u32>,
}

/// A resource a plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Users.
    Members,
    /// Projects.
    Projects,
    /// Webhooks.
    Webhooks,
    /// Live API keys.
    ApiKeys,
}

impl Resource {
    /// The resource's name in limits and errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::Projects => "projects",
            Self::Webhooks => "webhooks",
            Self::ApiKeys => "api_keys",
        }
    }
}

impl PlanLimits {
    /// The limit on `resource`, if any.
    pub const fn of(&self, resource: Resource) -> Option<u32> {
        match resource {
            Resource::Members => self.members,
            Resource::Projects => self.projects,
            Resource::Webhooks => self.webhooks,
            Resource::ApiKeys => self.api_keys,
        }
    }

    /// The cap a write of `resource` is checked against, if the plan limits it.
    pub const fn cap(&self, resource: Resource) -> Option<Cap> {
        match self.of(resource) {
            Some(limit) => Some(Cap { resource, limit }),
            None => None,
        }
    }
}

/// A limit a write must stay within: checked by the storage adapter under a lock that
/// concurrent writes of the same tenant and resource wait for, so they can't overshoot it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// What is limited.
    pub resource: Resource,
    /// How many the tenant may have.
    pub limit: u32,
}

impl Cap {
    /// `Ok` while `usage` (how many the tenant has before the write) leaves room for one more;
    /// else `PlanLimitReached`.
    pub fn check(&self, usage: u64) -> Result<()> {
        if usage < u64::from(self.limit) {
            Ok(())
        } else {
            Err(Error::PlanLimitReached { resource: self.resource.as_str(), limit: self.limit, usage })
        }
    }
}

impl Cap {
    /// [`Cap::check`] when there is a cap; `Ok` when the plan sets no limit.
    pub fn check_if(cap: Option<Self>, usage: usize) -> Result<()> {
        cap.map_or(Ok(()), |cap| cap.check(u64::try_from(usage).unwrap_or(u64::MAX)))
    }
}

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpec {
    /// Its name.
    pub name: Plan,
    /// Requests per minute of its tenants.
    pub quota: Quota,
    /// Its resource limits.
    pub limits: PlanLimits,
}

/// Every plan; one is named `free`, the plan of every new tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans(Vec<PlanSpec>);

/// The limits every built-in plan has: what plinth allowed before plans had limits.
pub const BUILT_IN_LIMITS: PlanLimits =
    PlanLimits { members: None, projects: None, webhooks: Some(100), api_keys: Some(100) };

/// The file's form: `{"plans": [{"name", "requests_per_minute", "limits": {…}}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    plans: Vec<FilePlan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlan {
    name: String,
    requests_per_minute: u32,
    #[serde(default)]
    limits: PlanLimits,
}

impl Plans {
    /// `free`, `pro` and `enterprise` with these quotas and [`BUILT_IN_LIMITS`].
    pub fn built_in(free: Quota, pro: Quota, enterprise: Quota) -> Self {
        let plan = |name: &str, quota| PlanSpec {
            name: Plan::parse(name).unwrap_or_else(|_| Plan::free()),
            quota,
            limits: BUILT_IN_LIMITS,
        };
        Self(vec![plan("free", free), plan("pro", pro), plan("enterprise", enterprise)])
    }

    /// The catalog in `json` (the form of `PLINTH_PLANS_FILE`); the error says what is wrong.
    pub fn from_json(json: &str) -> std::result::Result<Self, String> {
        let file: File = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut plans: Vec<PlanSpec> = Vec::with_capacity(file.plans.len());
        for p in file.plans {
            let name = Plan::parse(&p.name).map_err(|e| format!("plan {:?}: name {e}", p.name))?;
            if plans.iter().any(|q| q.name == name) {
                return Err(format!("plan {name} is named twice"));
            }
            let quota = Quota::per_minute(p.requests_per_minute)
                .ok_or_else(|| format!("plan {name}: requests_per_minute must be at least 1"))?;
            plans.push(PlanSpec { name, quota, limits: p.limits });
        }
        if !plans.iter().any(|p| p.name == Plan::free()) {
            return Err("no plan is named free (the plan of every new tenant)".into());
        }
        Ok(Self(plans))
    }

    /// The plan named `name`; a name the catalog no longer has (a tenant left on a plan the
    /// file dropped) gets `free`'s terms.
    pub fn get(&self, name: &Plan) -> &PlanSpec {
        // On every request: compares names, allocates nothing.
        self.0
            .iter()
            .find(|p| p.name == *name)
            .or_else(|| self.0.iter().find(|p| p.name.as_str() == "free"))
            .unwrap_or_else(|| &self.0[0])
    }

    /// Whether the catalog has a plan named `name`.
    pub fn has(&self, name: &Plan) -> bool {
        self.0.iter().any(|p| p.name == *name)
    }

    /// Every plan, in the catalog's order.
    pub fn all(&self) -> &[PlanSpec] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: u32) -> Quota {
        Quota::per_minute(n).unwrap_or(Quota { per_minute: std::num::NonZeroU32::MIN })
    }

    #[test]
    fn a_file_names_each_plan_once_and_free_among_them() {
        let plans = Plans::from_json(
            r#"{"plans": [
                {"name": "free", "requests_per_minute": 60, "limits": {"members": 3, "projects": 10}},
                {"name": "team", "requests_per_minute": 600, "limits": {"projects": null}}
            ]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let free = plans.get(&Plan::free());
        assert_eq!(
            (free.quota, free.limits.members, free.limits.projects, free.limits.webhooks),
            (q(60), Some(3), Some(10), None)
        );
        let team = Plan::parse("team").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plans.get(&team).quota, q(600));
        let gone = Plan::parse("gold").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plans.get(&gone).name, Plan::free(), "a plan the file dropped gets free's terms");
        for bad in [
            r#"{"plans": [{"name": "pro", "requests_per_minute": 10}]}"#,
            r#"{"plans": [{"name": "free", "requests_per_minute": 0}]}"#,
            r#"{"plans": [{"name": "free", "requests_per_minute": 1}, {"name": "free", "requests_per_minute": 2}]}"#,
            r#"{"plans": [{"name": "Free", "requests_per_minute": 1}]}"#,
            r#"{"plans": [{"name": "free", "requests_per_minute": 1, "limits": {"seats": 1}}]}"#,
            r#"{"plans": [{"name": "free", "requests_per_minute": 1, "limits": {"projects": -1}}]}"#,
        ] {
            assert!(Plans::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cap_admits_up_to_its_limit_and_names_it_when_reached() {
        let cap = Cap { resource: Resource::Projects, limit: 2 };
        assert!(cap.check(0).is_ok() && cap.check(1).is_ok());
        match cap.check(2) {
            Err(Error::PlanLimitReached { resource, limit, usage }) => {
                assert_eq!((resource, limit, usage), ("projects", 2, 2))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(BUILT_IN_LIMITS.cap(Resource::Members), None);
        assert_eq!(Plans::built_in(q(1), q(2), q(3)).all().len(), 3);
    }
}
