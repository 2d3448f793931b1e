//! GCRA in one atomic Lua script, on Redis' own clock, so every instance shares one quota.
//!
//! Same semantics as the in-process governor limiter: a burst of the whole quota, then one
//! request per `60 s / quota`; a refused request is not counted.

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::ports::{Decision, Policy, Quota, RateLimiter};

use crate::conn::RedisConn;

/// KEYS[1]: the subject's key. ARGV[1]: the emission interval in µs; ARGV[2]: the quota.
/// Returns {allowed, remaining, µs until full, µs until the next request is admitted}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local window = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now + window - new_tat) / interval)
return {1, remaining, new_tat - now, 0}
";

/// [`RateLimiter`] over Redis.
#[derive(Debug, Clone)]
pub struct RedisLimiter {
    conn: RedisConn,
    script: redis::Script,
}

impl RedisLimiter {
    /// A limiter over `conn`.
    pub fn new(conn: RedisConn) -> Self {
        Self { conn, script: redis::Script::new(GCRA) }
    }
}

fn whole_secs(micros: i64) -> u64 {
    u64::try_from(micros.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    #[tracing::instrument(name = "redis_rate_limit", level = "debug", skip(self, subject), fields(policy = policy.as_str()))]
    async fn check(&self, policy: Policy, subject: &str, quota: Quota) -> Result<Decision> {
        let q = quota.per_minute.get();
        let interval_us = 60_000_000 / u64::from(q);
        // The quota is part of the key: a plan change starts a fresh bucket, as governor does.
        let key = self.conn.key(&format!("rl:{}:{q}:{{{subject}}}", policy.as_str()));
        let mut invocation = self.script.prepare_invoke();
        invocation.key(key).arg(interval_us).arg(q);
        let (allowed, remaining, full_in, retry_in): (i64, i64, i64, i64) = self.conn.script(invocation).await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: q,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            reset_secs: whole_secs(full_in),
            retry_after_secs: if allowed == 1 { 0 } else { whole_secs(retry_in).max(1) },
        })
    }
}
