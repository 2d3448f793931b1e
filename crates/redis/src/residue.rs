//! Erasing a purged tenant's keys: cache entries and generations (`{t:<tenant>}:…`) and rate
//! limiter state (`rl:tenant:…:{<tenant>}`), on every node named in the settings.

use std::time::Duration;

use async_trait::async_trait;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::TenantResidue;
use plinth_domain::values::Slug;
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

    /// The `SCAN` patterns of the keys of this prefix that name the tenant: those whose name
    /// holds its id (its cache entries, generations, limiter state), and the directory's record
    /// of its slug (found, or remembered as missing).
    fn patterns(&self, tenant: TenantId, slug: &Slug) -> [String; 2] {
        let mut prefix = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                prefix.push('\\');
            }
            prefix.push(c);
        }
        // A slug is a-z, 0-9 and '-': nothing in it is special to a pattern.
        [[&prefix, "*", &tenant.to_string(), "*"].concat(), [&prefix, "*:tenant:", slug.as_str()].concat()]
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
    async fn erase(&self, tenant: TenantId, slug: &Slug) -> Result<u64> {
        let mut erased = 0;
        for pattern in self.patterns(tenant, slug) {
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
        }
        Ok(erased)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_escape_the_prefix_and_name_the_tenant_and_its_slug() {
        let mut settings = RedisSettings::new(vec!["redis://127.0.0.1:6379".into()]);
        settings.prefix = "t[1]*:".into();
        let residue = RedisResidue::new(&settings).unwrap();
        let tenant = TenantId::new();
        let slug = Slug::parse("acme").unwrap();
        let expected = [format!("t\\[1\\]\\*:*{tenant}*"), "t\\[1\\]\\*:*:tenant:acme".to_owned()];
        assert_eq!(residue.patterns(tenant, &slug), expected);
    }
}
