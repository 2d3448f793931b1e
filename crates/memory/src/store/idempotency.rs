//! `IdempotencyStore` over the store: keys with their first answer, until their ttl passes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::ports::{Claim, IdempotencyScope, IdempotencyStore, StoredResponse};

use super::MemoryStore;

/// Claims between two sweeps of expired keys.
const SWEEP_EVERY: u32 = 1024;

/// The keys, scoped to tenant and user by their map key.
#[derive(Default)]
pub(super) struct Keys {
    entries: HashMap<IdempotencyScope, Entry>,
    claims_since_sweep: u32,
}

struct Entry {
    fingerprint: u128,
    response: Option<StoredResponse>,
    expires_at: Instant,
}

impl Keys {
    pub(super) fn prune(&mut self) -> usize {
        let now = Instant::now();
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_at > now);
        self.claims_since_sweep = 0;
        before - self.entries.len()
    }

    fn live(&mut self, scope: &IdempotencyScope, now: Instant) -> Option<&mut Entry> {
        self.entries.get_mut(scope).filter(|e| e.expires_at > now)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, scope: &IdempotencyScope, fingerprint: u128, ttl: Duration) -> Result<Claim> {
        let mut keys = self.keys();
        keys.claims_since_sweep += 1;
        if keys.claims_since_sweep >= SWEEP_EVERY {
            keys.prune();
        }
        let now = Instant::now();
        if let Some(entry) = keys.live(scope, now) {
            return Ok(match &entry.response {
                _ if entry.fingerprint != fingerprint => Claim::Mismatch,
                Some(response) => Claim::Replay(response.clone()),
                None => Claim::InProgress,
            });
        }
        // A ttl beyond what `Instant` can hold is as good as forever: a year.
        let expires_at = now.checked_add(ttl).or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)));
        let entry = Entry { fingerprint, response: None, expires_at: expires_at.unwrap_or(now) };
        keys.entries.insert(scope.clone(), entry);
        Ok(Claim::Acquired)
    }

    async fn complete(&self, scope: &IdempotencyScope, response: &StoredResponse) -> Result<()> {
        // A claim that expired meanwhile stays forgotten: a retry will simply run again.
        if let Some(entry) = self.keys().live(scope, Instant::now()) {
            entry.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release(&self, scope: &IdempotencyScope) -> Result<()> {
        self.keys().entries.remove(scope);
        Ok(())
    }
}
