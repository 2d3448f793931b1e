//! Rate limiting: GCRA by policy and subject.

use std::fmt;
use std::num::NonZeroU32;

use async_trait::async_trait;

use crate::error::Result;

/// Which rule counts a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// A request with a valid token, counted against its tenant's plan.
    Tenant,
    /// A request without a valid token, counted against the client IP.
    Ip,
    /// A signup or login attempt, counted against the client IP, more strictly.
    Login,
    /// A message to one address (a password reset, an invitation, a verification link),
    /// counted against the tenant and the address, so nobody can flood a mailbox.
    Mailbox,
    /// A request with an API key that has its own quota, counted against the key (as well as
    /// against its tenant's plan).
    ApiKey,
}

impl Policy {
    /// The policy's name in the `RateLimit` headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Ip => "ip",
            Self::Login => "login",
            Self::Mailbox => "mailbox",
            Self::ApiKey => "api_key",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quota: this many requests per minute, all of which may be spent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests per minute.
    pub per_minute: NonZeroU32,
}

impl Quota {
    /// The length of the window, in seconds, as the headers report it.
    pub const WINDOW_SECS: u64 = 60;

    /// `n` requests per minute; `None` for zero.
    pub fn per_minute(n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(|per_minute| Self { per_minute })
    }
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The quota that counted it.
    pub limit: u32,
    /// Requests that could be made at once right now.
    pub remaining: u32,
    /// Whole seconds until the quota is full again.
    pub reset_secs: u64,
    /// When refused, whole seconds until one request is admitted again (at least 1).
    pub retry_after_secs: u64,
}

/// Counts requests against quotas, GCRA-style: a burst of the whole quota, then an even rate.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `subject` under `policy` with `quota`. A refused request is not
    /// counted.
    async fn check(&self, policy: Policy, subject: &str, quota: Quota) -> Result<Decision>;
}
