//! `MemoryGenerations`: each tenant's cache generation, kept in this process only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{Generation, GenerationStore};

/// The `GenerationStore` of a single instance: it hears every write because every write is
/// its own, so its L1 cache is always trustworthy (`local_ok` is always true). Generations
/// are random, like the shared store's, so no reasoning has to change between the two.
pub struct MemoryGenerations {
    generations: Mutex<HashMap<TenantId, u64>>,
}

impl MemoryGenerations {
    /// No generations yet; each tenant gets a random one when first asked.
    pub fn new() -> Self {
        Self { generations: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, u64>> {
        // Nothing panics while the map is held, so a poisoned map is still consistent.
        self.generations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryGenerations {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryGenerations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryGenerations").field("tenants", &self.lock().len()).finish()
    }
}

#[async_trait]
impl GenerationStore for MemoryGenerations {
    async fn current(&self, tenant: TenantId) -> Result<Generation> {
        let value = *self.lock().entry(tenant).or_insert_with(rand::random);
        Ok(Generation { value, local_ok: true })
    }

    async fn bump(&self, tenant: TenantId) -> Result<()> {
        let mut generations = self.lock();
        let old = generations.get(&tenant).copied();
        let mut new = rand::random();
        while Some(new) == old {
            new = rand::random();
        }
        generations.insert(tenant, new);
        Ok(())
    }
}
