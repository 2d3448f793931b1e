//! The use cases: what the API does, over the ports. Handlers call exactly one of these.

mod accounts;
mod api_keys;
mod audit;
mod auth;
mod events;
mod export;
mod idempotency;
mod lifecycle;
mod limits;
mod operations;
mod projects;
mod sessions;
mod signup;
mod tenants;
mod users;
mod webhooks;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use accounts::EmailSettings;
pub use api_keys::{CreatedKey, KeySettings, NewApiKey};
pub use audit::{AuditSettings, AuditView};
pub use auth::{Caller, Principal};
pub use events::{EventDelivery, EventDetail, event_query};
pub use idempotency::{Answer, Idempotency, KeptAnswer, RefusedAnswer};
pub use lifecycle::{LifecycleSettings, Purged, TenantList};
pub use limits::Subject;
pub use sessions::{ClientInfo, SessionSettings, SignedIn};
pub use signup::{SignupInput, SignupOutput};
pub use tenants::TenantView;
pub use users::NewUserInput;
pub use webhooks::{CreatedWebhook, RotatedSecret, WebhookPatch};

use crate::cache::Cache;
use crate::ports::{
    AccountEmails, ApiKeyRepository, AuditLog, Clock, DeliveryStore, Dependency, EmailSender, EventLog,
    IdempotencyStore, JobQueue, PasswordHasher, ProjectRepository, Quota, RateLimiter, SecretCipher, SessionRepository,
    TenantExporter, TenantRepository, TenantResidue, TokenService, UserRepository, WebhookRepository, WebhookSender,
    WebhookUrlGuard,
};

/// One adapter per port, chosen by the composition root.
#[derive(Clone)]
pub struct Ports {
    /// Tenants.
    pub tenants: Arc<dyn TenantRepository>,
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Projects.
    pub projects: Arc<dyn ProjectRepository>,
    /// Idempotency keys.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Sessions and their refresh tokens.
    pub sessions: Arc<dyn SessionRepository>,
    /// Access tokens.
    pub tokens: Arc<dyn TokenService>,
    /// Password hashing.
    pub passwords: Arc<dyn PasswordHasher>,
    /// Rate limiting.
    pub limiter: Arc<dyn RateLimiter>,
    /// Webhooks and their deliveries.
    pub webhooks: Arc<dyn WebhookRepository>,
    /// Which webhook URLs are allowed.
    pub url_guard: Arc<dyn WebhookUrlGuard>,
    /// Webhook secrets at rest.
    pub secrets: Arc<dyn SecretCipher>,
    /// The durable job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Deliveries, as the worker sees them.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Outbound webhook requests.
    pub sender: Arc<dyn WebhookSender>,
    /// Invitations, emailed tokens and their messages.
    pub accounts: Arc<dyn AccountEmails>,
    /// Outbound email.
    pub mailer: Arc<dyn EmailSender>,
    /// Tenant API keys.
    pub api_keys: Arc<dyn ApiKeyRepository>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The tenants' events, as the outbox keeps them.
    pub events: Arc<dyn EventLog>,
    /// What tenants leave in shared stores besides the database (cache entries, rate limiter
    /// state), erased when a deleted tenant is purged; empty without such stores.
    pub residue: Vec<Arc<dyn TenantResidue>>,
    /// Tenants' exports.
    pub exporter: Arc<dyn TenantExporter>,
    /// The services the adapters connect to, for readiness, metrics and shutdown.
    pub dependencies: Vec<Arc<dyn Dependency>>,
    /// The time: every timestamp the use cases write, and the adapters' own deadlines (the
    /// composition root hands the same clock to the adapters that keep time).
    pub clock: Arc<dyn Clock>,
    /// How trace context crosses the job queue: the job's span continues the context its job
    /// carries (the composition root hands the same to the storage adapters, which store it).
    pub traces: crate::trace::Propagation,
}

impl fmt::Debug for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Requests per minute for each policy but the tenants' (which their plans set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Requests without a valid token, per client IP.
    pub ip: Quota,
    /// Signup and login attempts, per client IP.
    pub login: Quota,
    /// Messages to one address of one tenant.
    pub mailbox: Quota,
}

/// How long cached answers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtls {
    /// A tenant found by its slug.
    pub tenant: Duration,
    /// A slug that names no tenant (short: a signup may take it any moment).
    pub missing_tenant: Duration,
    /// Project pages and single projects (writes invalidate them anyway).
    pub projects: Duration,
    /// A session's liveness and its user's current role, checked against every token. Deleting a user or changing their
    /// role invalidates it on every instance at once (the tenant's generation); this bounds
    /// only the double fault where Redis is down during the change and the instance that made
    /// it dies before Redis is back (otherwise that instance redoes the invalidation within a
    /// second of Redis answering again).
    pub user_marker: Duration,
    /// An API key's record (its hash, scopes, expiry and ceiling). Revoking a key and changing
    /// its creator's role invalidate it on every instance at once, as for `user_marker`, and
    /// this bounds the same double fault (expiry is checked on every request, whatever is
    /// cached).
    pub api_key: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            tenant: Duration::from_secs(60),
            missing_tenant: Duration::from_secs(1),
            projects: Duration::from_secs(30),
            user_marker: Duration::from_secs(30),
            api_key: Duration::from_secs(30),
        }
    }
}

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rate limits.
    pub quotas: Quotas,
    /// The plans: each tenant's request quota and resource limits.
    pub plans: crate::plans::Plans,
    /// Cache lifetimes.
    pub ttls: CacheTtls,
    /// How long an idempotency key and its answer are kept.
    pub idempotency_ttl: Duration,
    /// Webhook delivery.
    pub delivery: DeliverySettings,
    /// Signs list cursors.
    pub cursor_key: crate::page::CursorKey,
    /// Sessions and refresh tokens.
    pub sessions: SessionSettings,
    /// Invitations, password resets and verification links.
    pub email: EmailSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// API keys.
    pub keys: KeySettings,
    /// Deleted tenants' grace and purge.
    pub lifecycle: LifecycleSettings,
}

/// How webhook deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Attempts before a delivery is `dead`.
    pub max_attempts: u32,
    /// The first retry's delay; doubled for each further attempt, with jitter.
    pub backoff: Duration,
    /// A webhook whose attempts have all failed for this long (and at least
    /// `disable_min_failures` of them) is disabled.
    pub disable_after: Duration,
    /// The fewest failed attempts in a row that disable a webhook.
    pub disable_min_failures: u32,
}

/// The application: use cases over the ports.
#[derive(Debug)]
pub struct Plinth {
    ports: Ports,
    cache: Cache,
    settings: Settings,
    tenants: tenants::Decoded,
    key_usage: api_keys::KeyUsage,
    /// How many more exports this instance may run at once.
    exports: Arc<tokio::sync::Semaphore>,
}

impl Plinth {
    /// Wires the use cases to their ports.
    pub fn new(ports: Ports, cache: Cache, settings: Settings) -> Self {
        let exports = Arc::new(tokio::sync::Semaphore::new(settings.lifecycle.exports_per_instance.max(1)));
        Self {
            ports,
            cache,
            settings,
            tenants: tenants::Decoded::default(),
            key_usage: api_keys::KeyUsage::default(),
            exports,
        }
    }

    /// Retries the cache invalidations that failed while the generation store was down; the
    /// server calls this every second.
    pub async fn retry_failed_invalidations(&self) {
        self.cache.retry_pending().await;
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
