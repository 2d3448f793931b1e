//! The event log: a tenant's events as the outbox keeps them, read newest first; and the last
//! statements of the writes whose events are never refused for a full queue.

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Delivery;
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::{EventId, TenantId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{EventLog, EventQuery, StoredEvent};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::error::{OrDb as _, corrupt};
use crate::keyset::{Keyset, keyset};
use crate::op;
use crate::pool::{PgStore, Tx, stale_read, tenant_read};

macro_rules! columns {
    () => {
        "id, kind, created_at, payload"
    };
}

/// The tenant's events at or after a time, newest first.
pub const LIST: Keyset = keyset!(columns!(), from "events" where "tenant_id = $1 AND created_at >= $2",
    first limit "$3", after ("$3", "$4") limit "$5");

/// The tenant's events of one kind at or after a time, newest first.
pub const LIST_OF_KIND: Keyset = keyset!(columns!(), from "events"
    where "tenant_id = $1 AND kind = $2 AND created_at >= $3",
    first limit "$4", after ("$4", "$5") limit "$6");

/// The `since` of a list without one, so that the statement is an index range either way: about
/// the year 1000 BC, before any time a `since` can name (RFC 3339's years start at 0) and any
/// event's, and within what PostgreSQL holds (from 4713 BC).
fn beginning() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH.saturating_sub(time::Duration::days(366 * 3000))
}

fn event_from_row(row: &Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: EventId::from_uuid(row.try_get("id").or_db()?),
        kind: EventKind::parse(row.try_get("kind").or_db()?).ok_or_else(|| corrupt("event kind"))?,
        created_at: row.try_get("created_at").or_db()?,
        envelope: row.try_get("payload").or_db()?,
    })
}

/// The last statements of a write that changes who may do what (a user, an API key), in its
/// transaction: stores `events` with their deliveries and jobs, never refused for a full queue
/// (as an operator's act on a tenant: revoking a key or removing a member must not wait for a
/// webhook's backlog), then appends `trail`.
pub(crate) async fn settle(tx: &Tx<'_>, tenant: TenantId, events: &[DomainEvent], trail: &AuditTrail) -> Result<()> {
    settle_within(tx, tenant, events, trail, i64::MAX).await
}

/// As [`settle`], but `QueueFull` (for the caller to roll back) when the events' deliveries
/// take the tenant past `max_pending_jobs`: for the writes that add someone (a user, an API
/// key), which a tenant could otherwise repeat, with a removal, to fill the queue past its cap.
pub(crate) async fn settle_within(
    tx: &Tx<'_>,
    tenant: TenantId,
    events: &[DomainEvent],
    trail: &AuditTrail,
    max_pending_jobs: i64,
) -> Result<()> {
    crate::projects::store_events(tx, events, max_pending_jobs).await?;
    crate::audit::append(tx, tenant, trail).await
}

#[async_trait]
impl EventLog for PgStore {
    #[tracing::instrument(level = "debug", skip(self))]
    async fn page(
        &self,
        tenant: TenantId,
        query: &EventQuery,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.bounded(stale_read!(self, op::EVENTS_LIST, tenant, |client| {
            let since = query.since.unwrap_or_else(beginning);
            let rows = match query.kind {
                None => LIST.page(&client, tenant, &[tenant.as_uuid(), &since], after, limit).await?,
                Some(kind) => {
                    let filter: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                        [tenant.as_uuid(), &kind.as_str(), &since];
                    LIST_OF_KIND.page(&client, tenant, &filter, after, limit).await?
                }
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                events.push(event_from_row(row)?);
            }
            Ok(events)
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, tenant: TenantId, id: EventId) -> Result<Option<(StoredEvent, Vec<Delivery>)>> {
        self.bounded(stale_read!(self, op::EVENTS_GET, tenant, |client| {
            let sql = concat!("SELECT ", columns!(), " FROM events WHERE tenant_id = $1 AND id = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            let Some(event) = rows.first().map(event_from_row).transpose()? else { return Ok(None) };
            // Every column, so that the row reads as `delivery_from_row` reads it whatever columns
            // it comes to read. At most one per webhook subscribed when the event happened.
            let sql = "SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND event_id = $2 \
                       ORDER BY created_at DESC, id DESC";
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 8).await?;
            let deliveries = rows.iter().map(crate::webhooks::delivery_from_row).collect::<Result<_>>()?;
            Ok(Some((event, deliveries)))
        }))
        .await
    }
}
