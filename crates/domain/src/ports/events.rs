//! The event log: a tenant's events as the outbox keeps them, read back by the events API so
//! that a consumer that missed deliveries can catch up.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::entities::Delivery;
use crate::error::Result;
use crate::events::EventKind;
use crate::ids::{EventId, TenantId};
use crate::page::Cursor;

/// Which of a tenant's events a page holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events that happened at or after this time.
    pub since: Option<OffsetDateTime>,
}

/// An event as stored: where it sorts, and its envelope exactly as webhooks receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id.
    pub id: EventId,
    /// Its kind.
    pub kind: EventKind,
    /// When it happened: with the id, its place in the list.
    pub created_at: OffsetDateTime,
    /// `{id, type, created_at, tenant_id, data}`, as stored with the write that caused it.
    pub envelope: serde_json::Value,
}

impl StoredEvent {
    /// The name of the schema its envelope follows in the API's document: one of the event
    /// types' schemas, by `type` (the document builds it from [`EventKind::ALL`]).
    pub const SCHEMA: &'static str = "Event";

    /// Its place in the list, newest first.
    pub fn cursor(&self) -> Cursor {
        Cursor { created_at: self.created_at, id: *self.id.as_uuid() }
    }
}

/// An event is shown as its envelope, and nothing else.
impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.envelope.serialize(s)
    }
}

/// The document refers to the schema of the envelopes (which the API layer builds) by name.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for StoredEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::Ref::from_schema_name(Self::SCHEMA).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for StoredEvent {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(Self::SCHEMA)
    }
}

/// A tenant's events: what the outbox holds, newest first by `(created_at, id)`, until
/// retention prunes them (with the job queue's `prune`).
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` of the tenant's events that `query` selects, newest first, strictly after
    /// `after`.
    async fn page(
        &self,
        tenant: TenantId,
        query: &EventQuery,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The tenant's event `id` with its deliveries (one per webhook subscribed to its kind when
    /// it happened), newest first; `None` when the tenant has no such event.
    async fn get(&self, tenant: TenantId, id: EventId) -> Result<Option<(StoredEvent, Vec<Delivery>)>>;
}
