//! Domain events: what a write caused, stored by the repository in the same transaction as
//! the write itself (the outbox) so that webhooks are delivered for exactly the writes that
//! committed.
//!
//! Every event has one envelope, `{id, type, created_at, tenant_id, data}`, whose `data` is the
//! entity it is about as the API shows it: [`EventKind::subject`] says which, for each kind.

use serde::Serialize;
use time::OffsetDateTime;

use crate::entities::{ApiKey, Project, Tenant, User, Webhook};
use crate::ids::{EventId, InvitationId, TenantId, UserId};
use crate::values::{Email, Role};

/// The kinds of event a tenant can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// A project was created.
    #[serde(rename = "project.created")]
    ProjectCreated,
    /// A project was renamed.
    #[serde(rename = "project.updated")]
    ProjectUpdated,
    /// A project was deleted.
    #[serde(rename = "project.deleted")]
    ProjectDeleted,
    /// The tenant was moved to another plan.
    #[serde(rename = "tenant.plan_changed")]
    TenantPlanChanged,
    /// The tenant was suspended (delivered once it is resumed: its deliveries wait meanwhile).
    #[serde(rename = "tenant.suspended")]
    TenantSuspended,
    /// The tenant was resumed.
    #[serde(rename = "tenant.resumed")]
    TenantResumed,
    /// A user was added: by an owner or admin, as a new tenant's owner, or by accepting an
    /// invitation.
    #[serde(rename = "user.created")]
    UserCreated,
    /// A user's role changed, or their address was verified.
    #[serde(rename = "user.updated")]
    UserUpdated,
    /// A user was removed (the data is the user as they were).
    #[serde(rename = "user.deleted")]
    UserDeleted,
    /// An invitation was accepted: its address is a member now.
    #[serde(rename = "invitation.accepted")]
    InvitationAccepted,
    /// An API key was created (never its secret).
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    /// An API key was revoked.
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    /// A webhook was disabled after failing every attempt for too long (sent to the tenant's
    /// other webhooks).
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    /// A test event, sent to one webhook on request (`POST /v1/webhooks/{id}/test`); never
    /// subscribed to.
    #[serde(rename = "webhook.ping")]
    WebhookPing,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 14] = [
        Self::ProjectCreated,
        Self::ProjectUpdated,
        Self::ProjectDeleted,
        Self::TenantPlanChanged,
        Self::TenantSuspended,
        Self::TenantResumed,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::InvitationAccepted,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::WebhookDisabled,
        Self::WebhookPing,
    ];

    /// The event's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProjectCreated => "project.created",
            Self::ProjectUpdated => "project.updated",
            Self::ProjectDeleted => "project.deleted",
            Self::TenantPlanChanged => "tenant.plan_changed",
            Self::TenantSuspended => "tenant.suspended",
            Self::TenantResumed => "tenant.resumed",
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::InvitationAccepted => "invitation.accepted",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::WebhookDisabled => "webhook.disabled",
            Self::WebhookPing => "webhook.ping",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What an event of this kind is about: the entity its `data` holds. The one place that
    /// says it (the adapters pick each event's data by it, the API document its schema).
    pub const fn subject(self) -> Subject {
        match self {
            Self::ProjectCreated | Self::ProjectUpdated | Self::ProjectDeleted => Subject::Project,
            Self::TenantPlanChanged | Self::TenantSuspended | Self::TenantResumed => Subject::Tenant,
            Self::UserCreated | Self::UserUpdated | Self::UserDeleted => Subject::User,
            Self::InvitationAccepted => Subject::Invitation,
            Self::ApiKeyCreated | Self::ApiKeyRevoked => Subject::ApiKey,
            Self::WebhookDisabled | Self::WebhookPing => Subject::Webhook,
        }
    }

    /// Whether a webhook may subscribe to it: every kind but `webhook.ping`, which is sent to
    /// one webhook on request.
    pub const fn is_subscribable(self) -> bool {
        !matches!(self, Self::WebhookPing)
    }

    /// The kinds a webhook may subscribe to, in [`EventKind::ALL`]'s order.
    pub fn subscribable() -> impl Iterator<Item = Self> + Clone {
        Self::ALL.into_iter().filter(|k| k.is_subscribable())
    }
}

/// What an event is about: the kind of entity in its `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A [`Project`].
    Project,
    /// The [`Tenant`].
    Tenant,
    /// A [`User`], as the API shows one.
    User,
    /// An [`AcceptedInvitation`].
    Invitation,
    /// An [`ApiKey`], as the API shows one (never its secret).
    ApiKey,
    /// A [`Webhook`], without its secret.
    Webhook,
}

/// An invitation once accepted, as `invitation.accepted` reports it: never its token or the
/// token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptedInvitation {
    /// The invitation's id.
    pub id: InvitationId,
    /// The address invited, now a member's.
    pub email: Email,
    /// The role it gave.
    pub role: Role,
    /// Who invited them.
    pub invited_by: UserId,
    /// The member it made.
    pub user_id: UserId,
    /// When it was sent (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// When it was accepted (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub accepted_at: OffsetDateTime,
}

/// Something that happened to a tenant's data, as webhooks report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainEvent {
    /// The event's id, stable across delivery attempts.
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Whose data it is.
    pub tenant_id: TenantId,
    /// What it happened to, as it is after the change (as it was, for a deletion).
    pub data: EventData,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// A project (`project.*`).
    Project(Project),
    /// The tenant (`tenant.*`).
    Tenant(Tenant),
    /// A webhook (`webhook.*`), without its secret.
    Webhook(Webhook),
    /// A user (`user.*`), as the API shows one: never their password's hash.
    User(User),
    /// An accepted invitation (`invitation.accepted`).
    Invitation(AcceptedInvitation),
    /// An API key (`api_key.*`), as the API shows one: never its secret or the secret's hash.
    ApiKey(ApiKey),
}

impl EventData {
    /// What it is.
    pub const fn subject(&self) -> Subject {
        match self {
            Self::Project(_) => Subject::Project,
            Self::Tenant(_) => Subject::Tenant,
            Self::Webhook(_) => Subject::Webhook,
            Self::User(_) => Subject::User,
            Self::Invitation(_) => Subject::Invitation,
            Self::ApiKey(_) => Subject::ApiKey,
        }
    }
}

impl DomainEvent {
    /// A new event of `kind` about `project`, happened `at`.
    pub fn project(kind: EventKind, project: &Project, at: OffsetDateTime) -> Self {
        let data = EventData::Project(project.clone());
        Self { id: EventId::new(), kind, created_at: at, tenant_id: project.tenant_id, data }
    }

    /// A new event of `kind` about `tenant` (as it is after the change), happened `at`.
    pub fn tenant(kind: EventKind, tenant: &Tenant, at: OffsetDateTime) -> Self {
        Self { id: EventId::new(), kind, created_at: at, tenant_id: tenant.id, data: EventData::Tenant(tenant.clone()) }
    }

    /// A new event of `kind` of `tenant` about `data`, happened `at`.
    pub fn about(kind: EventKind, tenant: TenantId, data: EventData, at: OffsetDateTime) -> Self {
        Self { id: EventId::new(), kind, created_at: at, tenant_id: tenant, data }
    }

    /// A new event of `kind` about `webhook` (as it is after the change), happened `at`. Its
    /// URL is cut to the origin: the event goes to the tenant's other receivers, and a URL's
    /// path or query often carries a secret of its own.
    pub fn webhook(kind: EventKind, webhook: &Webhook, at: OffsetDateTime) -> Self {
        let mut shown = webhook.clone();
        shown.url = webhook.origin();
        let data = EventData::Webhook(shown);
        Self { id: EventId::new(), kind, created_at: at, tenant_id: webhook.tenant_id, data }
    }
}
