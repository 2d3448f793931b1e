//! The fallback limiter: the shared limiter while it answers, the local one when it does not.

use std::sync::Arc;

use async_trait::async_trait;

use crate::cache::Degraded;
use crate::error::Result;
use crate::ports::{Decision, Policy, Quota, RateLimiter};

/// Counts with `primary`; when `primary` is unavailable, counts with `fallback` instead, and
/// logs the switch once each way.
pub struct FallbackLimiter {
    primary: Arc<dyn RateLimiter>,
    fallback: Arc<dyn RateLimiter>,
    health: Degraded,
}

impl std::fmt::Debug for FallbackLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLimiter").finish_non_exhaustive()
    }
}

impl FallbackLimiter {
    /// `primary`, falling back to `fallback`.
    pub fn new(primary: Arc<dyn RateLimiter>, fallback: Arc<dyn RateLimiter>) -> Self {
        Self { primary, fallback, health: Degraded::new("shared rate limiter", "rate_limiter") }
    }
}

#[async_trait]
impl RateLimiter for FallbackLimiter {
    async fn check(&self, policy: Policy, subject: &str, quota: Quota) -> Result<Decision> {
        match self.primary.check(policy, subject, quota).await {
            Ok(d) => {
                self.health.ok();
                Ok(d)
            }
            Err(e) if e.is_unavailable() => {
                self.health.failed(&e);
                self.health.fell_back();
                self.fallback.check(policy, subject, quota).await
            }
            Err(e) => Err(e),
        }
    }
}
