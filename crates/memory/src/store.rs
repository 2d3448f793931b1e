//! `MemoryStore`: tenants, users, projects and idempotency keys in process memory.
//!
//! Each tenant's rows live in that tenant's own map, so a call that names one tenant can't
//! reach another's rows: isolation by construction, as RLS gives it in PostgreSQL. One lock
//! guards the tenants, so every write (with its events, its caller's check and the last-owner
//! rule) is atomic.

mod idempotency;
mod jobs;
mod projects;
mod rows;
mod tenants;
mod users;
mod webhooks;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use plinth_domain::entities::{Delivery, DeliveryState, Project, Tenant, User, Webhook};
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{DeliveryId, TenantId, UserId, WebhookId};
use plinth_domain::values::{Email, Slug};
use plinth_domain::{Error, Result};

use self::idempotency::Keys;
use self::rows::Rows;

/// Every storage port in memory: `TenantRepository`, `UserRepository`, `ProjectRepository`
/// and `IdempotencyStore`. Share one as `Arc<MemoryStore>` and coerce it to each port.
pub struct MemoryStore {
    data: RwLock<Data>,
    keys: Mutex<Keys>,
    wakeups: tokio::sync::Notify,
}

#[derive(Default)]
struct Data {
    /// Slugs are unique across tenants.
    slugs: HashMap<Slug, TenantId>,
    tenants: HashMap<TenantId, TenantData>,
    /// The job queue: one job per pending delivery.
    jobs: jobs::Jobs,
}

/// One tenant's rows.
struct TenantData {
    tenant: Tenant,
    users: Rows<User>,
    emails: HashMap<Email, UserId>,
    projects: Rows<Project>,
    /// The events its writes caused, in order: the outbox.
    outbox: Vec<DomainEvent>,
    webhooks: Rows<Webhook>,
    /// Each webhook's sealed secret.
    secrets: HashMap<WebhookId, Vec<u8>>,
    deliveries: Rows<Delivery>,
}

impl TenantData {
    fn new(tenant: Tenant) -> Self {
        Self {
            tenant,
            users: Rows::default(),
            emails: HashMap::new(),
            projects: Rows::default(),
            outbox: Vec::new(),
            webhooks: Rows::default(),
            secrets: HashMap::new(),
            deliveries: Rows::default(),
        }
    }

    /// How many deliveries (and jobs) [`Self::record`] would create for `events`.
    fn deliveries_for(&self, events: &[DomainEvent]) -> usize {
        events.iter().map(|e| self.webhooks.iter().filter(|w| w.events.contains(&e.kind)).count()).sum()
    }

    /// Stores `events` in the outbox with one pending delivery per subscribed webhook; returns
    /// the new deliveries, for the caller to enqueue.
    fn record(&mut self, events: &[DomainEvent]) -> Vec<DeliveryId> {
        let mut created = Vec::new();
        for event in events {
            let subscribed: Vec<WebhookId> =
                self.webhooks.iter().filter(|w| w.events.contains(&event.kind)).map(|w| w.id).collect();
            for webhook_id in subscribed {
                let id = DeliveryId::new();
                created.push(id);
                self.deliveries.insert(Delivery {
                    id,
                    tenant_id: event.tenant_id,
                    webhook_id,
                    event_id: event.id,
                    event: event.kind,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    last_error: None,
                    created_at: event.created_at,
                });
            }
            self.outbox.push(event.clone());
        }
        created
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            data: RwLock::new(Data::default()),
            keys: Mutex::new(Keys::default()),
            wakeups: tokio::sync::Notify::new(),
        }
    }

    /// An empty store whose tenants may each have at most `max` pending jobs (instead of
    /// `DEFAULT_MAX_PENDING_JOBS`).
    pub fn with_max_pending_jobs(max: u64) -> Self {
        let store = Self::new();
        store.write().jobs.set_max_pending(max);
        store
    }

    /// The events `tenant`'s writes have stored, oldest first.
    pub fn outbox(&self, tenant: TenantId) -> Vec<DomainEvent> {
        self.read().tenants.get(&tenant).map(|t| t.outbox.clone()).unwrap_or_default()
    }

    /// Takes the events `tenant`'s writes have stored, oldest first, leaving its outbox empty.
    pub fn take_outbox(&self, tenant: TenantId) -> Vec<DomainEvent> {
        self.write().tenants.get_mut(&tenant).map(|t| std::mem::take(&mut t.outbox)).unwrap_or_default()
    }

    /// Forgets expired idempotency keys; returns how many. Claims also do this now and then.
    pub fn prune_expired(&self) -> usize {
        self.keys().prune()
    }

    // A panic can only happen in a caller's closure, which runs before any change is made, so
    // a poisoned lock guards consistent data and is safe to take over.
    fn read(&self) -> RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("tenants", &self.read().tenants.len()).finish_non_exhaustive()
    }
}

impl Data {
    fn tenant(&self, id: TenantId) -> Option<&TenantData> {
        self.tenants.get(&id)
    }

    fn tenant_mut(&mut self, id: TenantId) -> Option<&mut TenantData> {
        self.tenants.get_mut(&id)
    }

    /// The tenant a new row goes into; a row for a tenant that doesn't exist is a bug in the
    /// caller (PostgreSQL's foreign key would refuse it too).
    fn owner_of_new_row(&mut self, id: TenantId) -> Result<&mut TenantData> {
        self.tenants.get_mut(&id).ok_or_else(|| Error::internal(format!("no tenant {id}")))
    }
}
