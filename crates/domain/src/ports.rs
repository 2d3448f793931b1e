//! The ports: one small object-safe trait per concern, held as `Arc<dyn Port>`.
//!
//! Every method documents the [`Error`](crate::Error) variants it may return. Any method that
//! talks to a dependency may also return `Unavailable` (the dependency did not answer) or
//! `Internal` (anything unexpected); those two are not repeated on each method.

mod accounts;
mod api_keys;
mod cache;
mod clock;
mod credentials;
mod dependency;
mod email;
mod events;
mod export;
mod idempotency;
mod jobs;
mod rate_limit;
mod repositories;
mod residue;
mod sessions;
mod webhooks;

pub use accounts::{
    Acceptance, AccountEmails, EmailOutcome, NOTICE_REASON, NewEmail, NewVerification, PendingEmail, WebhookNotice,
};
pub use api_keys::{ApiKeyRepository, AuditLog, AuditQuery, KeyRecord};
pub use cache::{CacheStore, Generation, GenerationStore};
pub use clock::Clock;
pub use credentials::{AccessToken, Claims, PasswordHasher, TokenService};
pub use dependency::Dependency;
pub use email::{EmailSender, MailFailure, OutboundEmail};
pub use events::{EventLog, EventQuery, StoredEvent};
pub use export::TenantExporter;
pub use idempotency::{
    IdempotencyKey, IdempotencyScope, IdempotencyStore, IdempotentWrite, Keyed, Lookup, StoredResponse,
};
pub use jobs::{
    DEFAULT_MAX_PENDING_JOBS, DeliveryStore, Job, JobQueue, NextStep, OutgoingDelivery, Pruned, QueueStats, Work,
};
pub use rate_limit::{Decision, Policy, Quota, RateLimiter};
pub use repositories::{
    CountCheck, EventsFor, ProjectRepository, TenantRepository, TenantState, Usage, UserCheck, UserRepository,
    WebhookEventsFor, WebhookRepository,
};
pub use residue::TenantResidue;
pub use sessions::{SessionRepository, Spend};
pub use webhooks::{
    AttemptOutcome, FailingLongEnough, OutboundWebhook, Recovered, Recovery, SecretCipher, WebhookChange,
    WebhookSender, WebhookUrlGuard,
};
