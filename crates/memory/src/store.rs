//! `MemoryStore`: tenants, users, projects, idempotency keys, webhooks, deliveries and the job
//! queue in process memory.
//!
//! Each tenant's rows live in that tenant's own map, so a call that names one tenant can't
//! reach another's rows: isolation by construction, as RLS gives it in PostgreSQL. One lock
//! guards the tenants, so every write (with its events, its caller's check and the last-owner
//! rule) is atomic.

mod accounts;
mod audit;
mod events;
mod export;
mod idempotency;
mod jobs;
mod projects;
mod rows;
mod sessions;
mod tenants;
mod users;
mod webhooks;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Delivery, DeliveryState, Project, Tenant, User, Webhook};
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::{DeliveryId, TenantId, UserId, WebhookId};
use plinth_domain::ports::{Clock, IdempotentWrite, Keyed};
use plinth_domain::values::{Email, Slug};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;

use self::idempotency::Keys;
use self::rows::Rows;

/// Every storage port in memory: `TenantRepository`, `UserRepository`, `ProjectRepository`,
/// `IdempotencyStore`, `WebhookRepository`, `SessionRepository`, `JobQueue`, `DeliveryStore`,
/// `EventLog` and `TenantExporter`. Share one as
/// `Arc<MemoryStore>` and coerce it to each port.
pub struct MemoryStore {
    data: RwLock<Data>,
    keys: Mutex<Keys>,
    wakeups: tokio::sync::Notify,
    /// Projects' `updated_at` on rename; idempotency keys expire by it too.
    clock: Arc<dyn Clock>,
    /// The tenants whose export is running: one at a time each.
    exports: export::Running,
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
    /// The events its writes caused, newest first: the outbox.
    outbox: Rows<DomainEvent>,
    webhooks: Rows<Webhook>,
    /// Each webhook's sealed secret.
    secrets: HashMap<WebhookId, Vec<u8>>,
    /// Each webhook's previous sealed secret during a rotation's overlap, and until when.
    previous_secrets: HashMap<WebhookId, (Vec<u8>, OffsetDateTime)>,
    /// Each paced webhook's next free slot.
    next_slots: HashMap<WebhookId, OffsetDateTime>,
    /// The slot each postponed delivery holds.
    slots: HashMap<DeliveryId, OffsetDateTime>,
    deliveries: Rows<Delivery>,
    /// Sessions and their refresh tokens.
    sessions: sessions::Sessions,
    /// Invitations, emailed tokens and messages.
    accounts: accounts::Accounts,
    /// The audit log's chain.
    audit: audit::Chain,
    /// API keys.
    keys: audit::Keys,
}

impl TenantData {
    fn new(tenant: Tenant) -> Self {
        Self {
            tenant,
            users: Rows::default(),
            emails: HashMap::new(),
            projects: Rows::default(),
            outbox: Rows::default(),
            webhooks: Rows::default(),
            secrets: HashMap::new(),
            previous_secrets: HashMap::new(),
            next_slots: HashMap::new(),
            slots: HashMap::new(),
            deliveries: Rows::default(),
            sessions: sessions::Sessions::default(),
            accounts: accounts::Accounts::default(),
            audit: audit::Chain::default(),
            keys: audit::Keys::default(),
        }
    }

    /// Roughly how many rows the tenant's data would take in a database: the tenant, its
    /// users, projects, webhooks, deliveries and events (what a purge reports).
    fn row_count(&self) -> u64 {
        let n = 1
            + self.users.len()
            + self.projects.len()
            + self.webhooks.len()
            + self.deliveries.len()
            + self.outbox.len();
        n as u64
    }

    /// How many deliveries (and jobs) [`Self::record`] would create for `events`.
    fn deliveries_for(&self, events: &[DomainEvent]) -> usize {
        events.iter().map(|e| self.subscribed(e.kind).count()).sum()
    }

    /// Stores `events` in the outbox with one pending delivery per subscribed webhook; returns
    /// the new deliveries, for the caller to enqueue.
    fn record(&mut self, events: &[DomainEvent]) -> Vec<DeliveryId> {
        let mut created = Vec::new();
        for event in events {
            let subscribed: Vec<WebhookId> = self.subscribed(event.kind).map(|w| w.id).collect();
            for webhook_id in subscribed {
                created.push(self.add_delivery(webhook_id, event));
            }
            self.outbox.insert(event.clone());
        }
        created
    }

    /// The enabled webhooks subscribed to `kind`.
    fn subscribed(&self, kind: EventKind) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(move |w| w.is_enabled() && w.events.contains(&kind))
    }

    /// A new pending delivery of `event` to `webhook_id`.
    fn add_delivery(&mut self, webhook_id: WebhookId, event: &DomainEvent) -> DeliveryId {
        let id = DeliveryId::new();
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
        id
    }
}

impl MemoryStore {
    /// An empty store, keeping time by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            data: RwLock::new(Data::default()),
            keys: Mutex::new(Keys::new(clock.clone())),
            wakeups: tokio::sync::Notify::new(),
            clock,
            exports: export::Running::default(),
        }
    }

    /// This store, with each tenant allowed at most `max` pending jobs (instead of
    /// `DEFAULT_MAX_PENDING_JOBS`).
    pub fn with_max_pending_jobs(self, max: u64) -> Self {
        self.write().jobs.set_max_pending(max);
        self
    }

    /// This store, storing with each job the trace context `traces` gives for it (the span
    /// current when the write enqueues it), so that the job's span continues that trace.
    pub fn with_trace_propagation(self, traces: plinth_domain::trace::Propagation) -> Self {
        self.write().jobs.set_traces(traces);
        self
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

    /// Runs `change` and stores `key` (when given) as one step: nothing changes when the key
    /// is live already (`KeyTaken`) or `change` fails. Locks the data, then the keys.
    fn keyed(&self, key: Option<&IdempotentWrite>, change: impl FnOnce(&mut Data) -> Result<()>) -> Result<Keyed> {
        let mut data = self.write();
        let mut keys = self.keys();
        if !keys.is_free(key) {
            return Ok(Keyed::KeyTaken);
        }
        change(&mut data)?;
        if let Some(key) = key {
            keys.store(key);
        }
        Ok(Keyed::Written)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("tenants", &self.read().tenants.len()).finish_non_exhaustive()
    }
}

impl Data {
    /// The last step of a write to `tenant`, once it can't fail: stores `events` in its outbox
    /// with one delivery (and job, due `now`) per subscribed webhook, never refused for a full
    /// queue (like an operator's act, a change of who may do what must not wait for a
    /// backlog), and appends `trail`.
    fn settle(&mut self, tenant: TenantId, events: &[DomainEvent], trail: &AuditTrail, now: OffsetDateTime) {
        let Some(rows) = self.tenant_mut(tenant) else { return };
        let deliveries = rows.record(events);
        rows.append(trail);
        self.enqueue(tenant, deliveries, now);
    }

    /// `QueueFull` unless `tenant` has room for the deliveries `events` would make: checked
    /// before the writes that add someone (a user, an API key), which a tenant could otherwise
    /// repeat, with a removal, to fill the queue past its cap (removals are never refused).
    fn check_room_for(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<()> {
        let needed = self.tenant(tenant).map_or(0, |rows| rows.deliveries_for(events));
        self.jobs.check_room(tenant, needed)
    }

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
