//! `IdempotencyStore` over the store: keys with their first answer, until they expire. Keyed
//! writes store their key under the data lock, with the change (see `MemoryStore::keyed`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::ports::{Clock, IdempotencyScope, IdempotencyStore, IdempotentWrite, Keyed, Lookup, StoredResponse};
use time::OffsetDateTime;

use super::MemoryStore;

/// Writes between two sweeps of expired keys.
const SWEEP_EVERY: u32 = 1024;

/// The keys, scoped to tenant and user by their map key.
pub(super) struct Keys {
    entries: HashMap<IdempotencyScope, Entry>,
    writes_since_sweep: u32,
    /// What "expired" is measured against.
    clock: Arc<dyn Clock>,
}

struct Entry {
    fingerprint: u128,
    response: StoredResponse,
    expires_at: OffsetDateTime,
}

impl Keys {
    pub(super) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { entries: HashMap::new(), writes_since_sweep: 0, clock }
    }

    pub(super) fn prune(&mut self) -> usize {
        let now = self.clock.now();
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_at > now);
        self.writes_since_sweep = 0;
        before - self.entries.len()
    }

    fn live(&self, scope: &IdempotencyScope) -> Option<&Entry> {
        self.entries.get(scope).filter(|e| e.expires_at > self.clock.now())
    }

    /// Stores `write` unless its key is live: `KeyTaken` then, and nothing changes.
    pub(super) fn store(&mut self, write: &IdempotentWrite) -> Keyed {
        if self.live(&write.scope).is_some() {
            return Keyed::KeyTaken;
        }
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.prune();
        }
        let entry =
            Entry { fingerprint: write.fingerprint, response: write.response.clone(), expires_at: write.expires_at };
        self.entries.insert(write.scope.clone(), entry);
        Keyed::Written
    }

    /// Whether `write`'s key is free: the check a keyed write makes before changing anything.
    pub(super) fn is_free(&self, write: Option<&IdempotentWrite>) -> bool {
        write.is_none_or(|w| self.live(&w.scope).is_none())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn lookup(&self, scope: &IdempotencyScope, fingerprint: u128) -> Result<Lookup> {
        Ok(match self.keys().live(scope) {
            None => Lookup::New,
            Some(e) if e.fingerprint != fingerprint => Lookup::Mismatch,
            Some(e) => Lookup::Replay(e.response.clone()),
        })
    }

    async fn record(&self, write: &IdempotentWrite) -> Result<()> {
        self.keys().store(write);
        Ok(())
    }
}
