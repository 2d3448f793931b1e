//! Domain events: what a write caused, stored by the repository in the same transaction as
//! the write itself (the outbox) so that webhooks are delivered for exactly the writes that
//! committed.

use serde::Serialize;
use time::OffsetDateTime;

use crate::entities::{Project, Tenant, Webhook};
use crate::ids::{EventId, TenantId};

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
    pub const ALL: [Self; 8] = [
        Self::ProjectCreated,
        Self::ProjectUpdated,
        Self::ProjectDeleted,
        Self::TenantPlanChanged,
        Self::TenantSuspended,
        Self::TenantResumed,
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
            Self::WebhookDisabled => "webhook.disabled",
            Self::WebhookPing => "webhook.ping",
        }
    }

    /// Whether a webhook may subscribe to it (every kind but `webhook.ping`, which is sent on
    /// request to one webhook).
    pub const fn subscribable(self) -> bool {
        !matches!(self, Self::WebhookPing)
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
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

    /// A new event of `kind` about `webhook` (as it is after the change), happened `at`.
    pub fn webhook(kind: EventKind, webhook: &Webhook, at: OffsetDateTime) -> Self {
        let data = EventData::Webhook(webhook.clone());
        Self { id: EventId::new(), kind, created_at: at, tenant_id: webhook.tenant_id, data }
    }
}
