//! Erasing a purged tenant's keys: cache entries and generations (`{t:<tenant>}:…`) and rate
//! limiter state (`rl:tenant:…:{<tenant>}`), on every node named in the settings.

use std::time::Duration;

use async_trait::async_trait;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::TenantResidue;
use plinth_domain::{Error, Result};

use crate::conn::{REDIS, RedisSettings};

/// Keys looked at per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// Scans each node for the keys that name a tenant and unlinks them. Rare (once per purged
/// tenant), so it opens its own connections rather than holding any.
#[derive(Debug, Clone)]
pub struct RedisResidue {
    nodes: Vec<redis::Client>,
    prefix: String,
    timeout: Duration,
}

impl RedisResidue {
    /// Over the nodes of `settings` (in a cluster, each node listed is scanned: list every
    /// primary for a complete erasure).
    pub fn new(settings: &RedisSettings) -> Result<Self> {
        let nodes = settings
            .urls
            .iter()
            .map(|u| redis::Client::open(u.as_str()).map_err(|e| Error::internal(format!("{:?}", e.kind()))))
            .collect::<Result<_>>()?;
        Ok(Self {
            nodes,
            prefix: settings.prefix.clone(),
            timeout: settings.command_timeout.max(Duration::from_secs(2)),
        })
    }

    /// The `SCAN` pattern of every key of this prefix whose name holds `tenant`.
    fn pattern(&self, tenant: TenantId) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 40);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('*');
        p.push_str(&tenant.to_string());
        p.push('*');
        p
    }

    async fn erase_on(&self, node: &redis::Client, pattern: &str) -> redis::RedisResult<u64> {
        let mut conn = node.get_multiplexed_async_connection().await?;
        // A cluster's replicas hold copies they can't unlink: their primary's scan covers them.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            return Ok(0);
        }
        let mut cursor = 0_u64;
        let mut erased = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            // One key per command: in a cluster, keys of different slots can't share one.
            for key in keys {
                erased += redis::cmd("UNLINK").arg(key).query_async::<u64>(&mut conn).await?;
            }
            if next == 0 {
                return Ok(erased);
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl TenantResidue for RedisResidue {
    async fn erase(&self, tenant: TenantId) -> Result<u64> {
        let pattern = self.pattern(tenant);
        let mut erased = 0;
        for node in &self.nodes {
            // A whole scan of a node: allowed thirty command timeouts (a minute at least).
            let step = tokio::time::timeout(self.timeout * 30, self.erase_on(node, &pattern)).await;
            erased += match step {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(Error::unavailable(REDIS, format!("{:?}: {}", e.kind(), e.detail().unwrap_or(""))));
                }
                Err(elapsed) => return Err(Error::unavailable(REDIS, elapsed)),
            };
        }
        Ok(erased)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_escapes_the_prefix_and_names_the_tenant() {
        let mut settings = RedisSettings::new(vec!["redis://127.0.0.1:6379".into()]);
        settings.prefix = "t[1]*:".into();
        let residue = RedisResidue::new(&settings).unwrap();
        let tenant = TenantId::new();
        assert_eq!(residue.pattern(tenant), format!("t\\[1\\]\\*:*{tenant}*"));
    }
}
