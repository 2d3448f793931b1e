//! Storage of tenants, users and projects. Every tenant-scoped call names its tenant: there is
//! no "current tenant" anywhere else.

use async_trait::async_trait;

use crate::audit::AuditTrail;
use crate::plans::Cap;

use time::OffsetDateTime;

use crate::entities::{Delivery, Lifecycle, Project, Tenant, User, Webhook};
use crate::error::Result;
use crate::events::DomainEvent;
use crate::ids::{DeliveryId, ProjectId, TenantId, UserId, WebhookId};
use crate::page::Cursor;
use crate::ports::{FailingLongEnough, IdempotentWrite, Keyed, Recovered, Recovery, WebhookChange};
use crate::values::{Email, ProjectName, Role, Slug};

/// Builds the events a write causes from the row as the write left it, so that the events
/// describe exactly what was committed.
pub type EventsFor<'a> = &'a (dyn Fn(&Project) -> Vec<DomainEvent> + Send + Sync);

/// Sees a user as it is before a change and may refuse the change (its error is returned).
pub type UserCheck<'a> = &'a (dyn Fn(&User) -> Result<()> + Send + Sync);

/// Sees how many rows of a kind the tenant has before an insert, under the insert's lock, and
/// may refuse it (its error is returned): a limit that concurrent inserts can't overshoot.
pub type CountCheck<'a> = &'a (dyn Fn(usize) -> Result<()> + Send + Sync);

/// How much of each limited resource a tenant has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Users.
    #[cfg_attr(feature = "openapi", schema(example = 3))]
    pub members: u64,
    /// Projects.
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub projects: u64,
    /// Webhooks.
    #[cfg_attr(feature = "openapi", schema(example = 2))]
    pub webhooks: u64,
    /// Live (unrevoked) API keys.
    #[cfg_attr(feature = "openapi", schema(example = 1))]
    pub api_keys: u64,
}

/// Which tenants an operator's list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Neither suspended nor deleted.
    Active,
    /// Suspended (not deleted).
    Suspended,
    /// Deleted, in their grace period.
    Deleted,
}

impl TenantState {
    /// The state's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    /// Whether `lifecycle` is in this state.
    pub const fn holds(self, lifecycle: &Lifecycle) -> bool {
        match self {
            Self::Active => lifecycle.is_active(),
            Self::Suspended => lifecycle.suspended_at.is_some() && lifecycle.deleted_at.is_none(),
            Self::Deleted => lifecycle.deleted_at.is_some(),
        }
    }
}

/// Tenants: resolved from their slug on every request, created by signup.
#[async_trait]
pub trait TenantRepository: Send + Sync {
    /// Creates `tenant` and its first user `owner`, and queues `verification` (the owner's
    /// verification link) when given, atomically. Errors: `Conflict(SlugTaken)`.
    async fn create_with_owner(
        &self,
        tenant: &Tenant,
        owner: &User,
        verification: Option<&crate::ports::NewVerification>,
        trail: &AuditTrail,
    ) -> Result<()>;

    /// The tenant with this slug, if any. Needs no tenant context.
    async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>>;

    /// Moves the tenant to `plan`, stores `events` (with their deliveries) and appends `trail`,
    /// atomically; whether there is such a tenant. The events' jobs are never refused for a
    /// full queue: an operator's act does not wait for a tenant's backlog.
    async fn set_plan(
        &self,
        tenant: TenantId,
        plan: &crate::values::Plan,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool>;

    /// Moves the tenant's lifecycle from `from` to `to` (its jobs wait while it is not active),
    /// stores `events` and appends `trail`, atomically, as [`set_plan`](Self::set_plan) does;
    /// `false`, and nothing written, when there is no such tenant or its lifecycle is no longer
    /// `from` (a concurrent change won: the caller reads it again).
    async fn set_lifecycle(
        &self,
        tenant: TenantId,
        from: &Lifecycle,
        to: &Lifecycle,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool>;

    /// Up to `limit` tenants (at most 1,000) in `state` (any when `None`), by slug, after
    /// `after`. Needs no tenant context: for operators only.
    async fn list(&self, after: Option<&Slug>, limit: usize, state: Option<TenantState>) -> Result<Vec<Tenant>>;

    /// Up to `limit` deleted tenants whose grace has run out by `now`, oldest first, with their
    /// slugs.
    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(TenantId, Slug)>>;

    /// Erases up to `batch` rows of the deleted tenant `tenant` if its grace has run out by
    /// `now`: first its data, table by table, then the tenant itself. How many rows went; 0
    /// once nothing is left (or it is not due). Each call is short: a tenant of any size is
    /// erased by calling until 0, never under one long lock.
    async fn purge_batch(&self, tenant: TenantId, now: OffsetDateTime, batch: usize) -> Result<u64>;

    /// How much of what plans limit the tenant has: members, projects, webhooks, live keys.
    async fn usage(&self, tenant: TenantId) -> Result<Usage>;
}

/// A tenant's users.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Adds a user to `user.tenant_id`, and stores `key` with it atomically when given
    /// (`KeyTaken`, and nothing written, when the key is live already), within `cap` (the
    /// tenant's member limit) when given. Errors: `Conflict(EmailTaken)`; `PlanLimitReached`.
    async fn create(
        &self,
        user: &User,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<Cap>,
    ) -> Result<Keyed>;

    /// The tenant's user with this id, if any.
    async fn get(&self, tenant: TenantId, id: UserId) -> Result<Option<User>>;

    /// The tenant's user with this email, if any.
    async fn find_by_email(&self, tenant: TenantId, email: &Email) -> Result<Option<User>>;

    /// Up to `limit` of the tenant's users, newest first, strictly after `after`.
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<User>>;

    /// Changes a user's role, atomically with `check`, which sees the user as it is before the
    /// change and may refuse it; a change ends the user's sessions and lowers the ceiling of the
    /// API keys they created to the new role (never raising one). Errors: `NotFound`; `Conflict(LastOwner)` when the tenant's
    /// last owner would be demoted; whatever `check` returns.
    async fn update_role(
        &self,
        tenant: TenantId,
        id: UserId,
        role: Role,
        check: UserCheck<'_>,
        trail: &AuditTrail,
    ) -> Result<User>;

    /// Deletes a user, atomically with `check` as for `update_role`.
    /// Errors: `NotFound`; `Conflict(LastOwner)`; whatever `check` returns.
    async fn delete(&self, tenant: TenantId, id: UserId, check: UserCheck<'_>, trail: &AuditTrail) -> Result<()>;
}

/// A tenant's projects. Writes store the events they cause in the same transaction, with the
/// jobs of the deliveries those cause; a write whose jobs would take the tenant past its cap
/// of pending jobs fails with `QueueFull` and changes nothing.
#[async_trait]
pub trait ProjectRepository: Send + Sync {
    /// Up to `limit` of the tenant's projects, newest first, strictly after `after`.
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Project>>;

    /// The tenant's project with this id, if any.
    async fn get(&self, tenant: TenantId, id: ProjectId) -> Result<Option<Project>>;

    /// Stores a new project, `events` and `key` (when given), atomically (`KeyTaken`, and
    /// nothing written, when the key is live already), within `cap` (the tenant's project
    /// limit) when given. Errors: `QueueFull`; `PlanLimitReached`.
    async fn insert(
        &self,
        project: &Project,
        events: &[DomainEvent],
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<Cap>,
    ) -> Result<Keyed>;

    /// Renames a project and stores the events `events` builds from the updated row,
    /// atomically. Errors: `NotFound`; `QueueFull`.
    async fn rename(
        &self,
        tenant: TenantId,
        id: ProjectId,
        name: &ProjectName,
        events: EventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Project>;

    /// Deletes a project and stores the events `events` builds from the deleted row,
    /// atomically. Errors: `NotFound`; `QueueFull`.
    async fn delete(&self, tenant: TenantId, id: ProjectId, events: EventsFor<'_>, trail: &AuditTrail) -> Result<()>;
}

/// Builds the events a webhook's change causes from the webhook as the change left it.
pub type WebhookEventsFor<'a> = &'a (dyn Fn(&Webhook) -> Vec<DomainEvent> + Send + Sync);

/// A tenant's webhooks and their deliveries. Deliveries are created by the writes that cause
/// events (one per enabled webhook subscribed to the event's kind, in the write's transaction).
#[async_trait]
pub trait WebhookRepository: Send + Sync {
    /// Stores a webhook with its sealed secret and `key` (when given), atomically, after
    /// `check` has seen how many webhooks the tenant has, under a lock that concurrent
    /// creations of the same tenant wait for (`KeyTaken`, and nothing written, when the key is
    /// live already). Errors: whatever `check` returns.
    async fn create(
        &self,
        webhook: &Webhook,
        sealed_secret: &[u8],
        check: CountCheck<'_>,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
    ) -> Result<Keyed>;

    /// Up to `limit` of the tenant's webhooks, newest first, strictly after `after`.
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its deliveries. Errors: `NotFound`.
    async fn delete(&self, tenant: TenantId, id: WebhookId, trail: &AuditTrail) -> Result<()>;

    /// Up to `limit` of a webhook's deliveries, newest first, strictly after `after`.
    /// Errors: `NotFound` when the tenant has no such webhook.
    async fn deliveries(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;

    /// The tenant's webhook, if it has it.
    async fn get(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Webhook>>;

    /// Applies `change` at `at` and returns the webhook as it left it. Disabling it marks its
    /// pending deliveries `skipped` and drops their jobs; enabling a disabled one clears its
    /// failure record. Errors: `NotFound`.
    async fn update(
        &self,
        tenant: TenantId,
        id: WebhookId,
        change: &WebhookChange,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Webhook>;

    /// Disables the webhook as `update` does (at `failing.at`), with `reason`, if it is still enabled and has been
    /// `failing` long enough; stores the events `events` builds from it as disabled (with their
    /// deliveries to the tenant's other webhooks) and queues a notice to each owner and admin,
    /// all in one transaction. `None` (and nothing written) when it isn't (or no longer) so.
    async fn disable_failing(
        &self,
        tenant: TenantId,
        id: WebhookId,
        failing: FailingLongEnough,
        reason: &str,
        events: WebhookEventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Option<Webhook>>;

    /// Replaces the webhook's sealed secret with `sealed`. With `keep_previous_until`, the
    /// secret it replaces is kept (sealed) until then, and deliveries are signed with both;
    /// without, only the new one is kept. Errors: `NotFound`.
    async fn rotate_secret(
        &self,
        tenant: TenantId,
        id: WebhookId,
        sealed: &[u8],
        keep_previous_until: Option<OffsetDateTime>,
        trail: &AuditTrail,
    ) -> Result<Webhook>;

    /// Stores `event` and one delivery of it to webhook `id` only (whatever its events), due
    /// now; returns the delivery. Errors: `NotFound`; `QueueFull`.
    async fn send_event(&self, id: WebhookId, event: &DomainEvent, trail: &AuditTrail) -> Result<Delivery>;

    /// Makes the delivery pending again with one more attempt due at `at` (a new job, or its
    /// waiting job brought forward); the event and its id stay. Errors: `NotFound` when the
    /// webhook has no such delivery; `QueueFull`.
    async fn retry_delivery(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        delivery: DeliveryId,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Delivery>;

    /// Sends again, oldest first and at most `recovery.limit`, the webhook's deliveries made
    /// since `recovery.since` that failed: `dead`, `skipped`, or `pending` after a failed
    /// attempt. Each gets one more attempt (a new job, or its waiting one moved), due one
    /// `spacing` after the previous. Errors: `NotFound`; `QueueFull`.
    async fn recover(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        recovery: &Recovery,
        trail: &AuditTrail,
    ) -> Result<Recovered>;
}
