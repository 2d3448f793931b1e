//! Which quota counts a request, and counting it.

use std::net::IpAddr;

use super::Plinth;
use crate::entities::Tenant;
use crate::error::Result;
use crate::ids::ApiKeyId;
use crate::ports::{Decision, Policy, Quota};

/// Who a request is counted against.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A request with a valid token: its tenant, by plan.
    Tenant(&'a Tenant),
    /// A request without a valid token: the client's address.
    Ip(IpAddr),
    /// A signup or login attempt: the client's address, more strictly.
    Login(IpAddr),
    /// An API key with its own quota.
    Key(ApiKeyId, Quota),
}

impl Plinth {
    /// The quota for `subject`.
    pub fn quota(&self, subject: &Subject<'_>) -> (Policy, Quota) {
        let q = &self.settings.quotas;
        match subject {
            Subject::Tenant(t) => (Policy::Tenant, self.settings.plans.get(&t.plan).quota),
            Subject::Ip(_) => (Policy::Ip, q.ip),
            Subject::Login(_) => (Policy::Login, q.login),
            Subject::Key(_, quota) => (Policy::ApiKey, *quota),
        }
    }

    /// Counts one request of `subject`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn admit(&self, subject: Subject<'_>) -> Result<(Policy, Decision)> {
        let (policy, quota) = self.quota(&subject);
        let decision = match subject {
            Subject::Tenant(t) => {
                let mut id = uuid::Uuid::encode_buffer();
                let id = t.id.as_uuid().hyphenated().encode_lower(&mut id);
                self.ports.limiter.check(policy, id, quota).await?
            }
            Subject::Ip(ip) | Subject::Login(ip) => self.ports.limiter.check(policy, &ip.to_string(), quota).await?,
            Subject::Key(key, _) => {
                let mut id = uuid::Uuid::encode_buffer();
                let id = key.as_uuid().hyphenated().encode_lower(&mut id);
                self.ports.limiter.check(policy, id, quota).await?
            }
        };
        Ok((policy, decision))
    }
}
