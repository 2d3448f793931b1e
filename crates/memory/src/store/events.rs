//! `EventLog` over the store: each tenant's outbox, read newest first.

use async_trait::async_trait;
use plinth_domain::entities::Delivery;
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{EventId, TenantId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{EventLog, EventQuery, StoredEvent};
use plinth_domain::{Error, Result};

use super::MemoryStore;

/// `event` as the log shows it: its envelope as it is delivered.
fn stored(event: &DomainEvent) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: event.id,
        kind: event.kind,
        created_at: event.created_at,
        envelope: serde_json::to_value(event).map_err(Error::internal)?,
    })
}

#[async_trait]
impl EventLog for MemoryStore {
    async fn page(
        &self,
        tenant: TenantId,
        query: &EventQuery,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        rows.outbox
            .after(after)
            // Newest first: past the first one older than `since`, every one is.
            .take_while(|e| query.since.is_none_or(|since| e.created_at >= since))
            .filter(|e| query.kind.is_none_or(|kind| e.kind == kind))
            .take(limit)
            .map(stored)
            .collect()
    }

    async fn get(&self, tenant: TenantId, id: EventId) -> Result<Option<(StoredEvent, Vec<Delivery>)>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        let Some(event) = rows.outbox.get(*id.as_uuid()) else { return Ok(None) };
        let deliveries = rows.deliveries.iter().filter(|d| d.event_id == id).cloned().collect();
        Ok(Some((stored(event)?, deliveries)))
    }
}
