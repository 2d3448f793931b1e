//! The events API: a tenant's events read back from the outbox, so that a consumer that was
//! down can replay what it missed (the envelopes exactly as webhooks deliver them).

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Plinth;
use crate::entities::Delivery;
use crate::error::{Error, Result, Validator};
use crate::events::EventKind;
use crate::ids::{EventId, WebhookId};
use crate::page::{Page, PageRequest};
use crate::ports::{EventQuery, StoredEvent};
use crate::usecases::Principal;

/// An event with its deliveries, as `GET /v1/events/{id}` shows it: the envelope untouched
/// beside them, so it can be checked or handled again exactly as it was delivered.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventDetail {
    /// The envelope, `{id, type, created_at, tenant_id, data}`, exactly as delivered.
    pub event: StoredEvent,
    /// Its deliveries, newest first: one per webhook subscribed to its kind when it happened.
    pub deliveries: Vec<EventDelivery>,
}

/// One delivery of an event, naming the webhook it goes to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventDelivery {
    /// The webhook it goes to.
    pub webhook_id: WebhookId,
    /// The delivery, as the webhook's list shows it.
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// The message for a `type` that names no event kind: every kind, as [`EventKind::ALL`] has
/// them.
fn unknown_kind() -> String {
    let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    format!("must be one of {}", kinds.join(", "))
}

/// `since` in UTC, as every store holds times. RFC 3339 has four-digit years, so only a time
/// late in the year 9999 can fall outside what UTC can say here (in the year 10000): it keeps no
/// event, as the latest time there is.
fn since_bound(at: OffsetDateTime) -> OffsetDateTime {
    at.checked_to_offset(time::UtcOffset::UTC).unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// The filters of the events list, from the query's raw `type` and `since`: an unknown kind or
/// a time that is not RFC 3339 is a `Validation` error naming its parameter.
pub fn event_query(kind: Option<&str>, since: Option<&str>) -> Result<EventQuery> {
    let mut v = Validator::new();
    let kind = kind.map(|k| v.check("type", EventKind::parse(k).ok_or_else(unknown_kind)));
    let since = since.map(|s| {
        let parsed =
            OffsetDateTime::parse(s, &Rfc3339).map_err(|_| "must be an RFC 3339 time, such as 2025-01-31T09:30:00Z");
        v.check("since", parsed).map(since_bound)
    });
    if !v.is_empty() {
        return Err(v.into_error());
    }
    Ok(EventQuery { kind: kind.flatten(), since: since.flatten() })
}

impl Plinth {
    /// A page of the tenant's events that `query` selects, newest first, each its envelope as
    /// stored. Errors: `Forbidden` (a member).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_events(
        &self,
        who: &Principal,
        query: &EventQuery,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        who.require_manager()?;
        let rows = self.ports.events.page(who.tenant, query, page.after.as_ref(), page.fetch_limit()).await?;
        Ok(Page::from_rows(rows, page, StoredEvent::cursor, &self.settings.cursor_key))
    }

    /// One of the tenant's events with its deliveries. Errors: `Forbidden`; `NotFound` (none,
    /// or another tenant's).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_event(&self, who: &Principal, id: EventId) -> Result<EventDetail> {
        who.require_manager()?;
        let (event, deliveries) = self.ports.events.get(who.tenant, id).await?.ok_or(Error::NotFound)?;
        let deliveries = deliveries
            .into_iter()
            .map(|delivery| EventDelivery { webhook_id: delivery.webhook_id, delivery })
            .collect();
        Ok(EventDetail { event, deliveries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: Error) -> Vec<(String, String)> {
        match e {
            Error::Validation(errors) => errors.into_iter().map(|f| (f.field, f.message)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_filters_are_an_event_kind_and_an_rfc_3339_time() {
        let q = event_query(Some("user.created"), Some("2025-01-31T09:30:00+01:00"));
        let q = q.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(q.kind, Some(EventKind::UserCreated));
        assert_eq!(q.since.map(OffsetDateTime::unix_timestamp), Some(1_738_312_200));
        assert_eq!(event_query(None, None).ok(), Some(EventQuery::default()));
    }

    #[test]
    fn an_unknown_kind_and_a_malformed_time_are_each_named() {
        let Err(e) = event_query(Some("user.exploded"), Some("yesterday")) else { panic!("accepted") };
        let fields = fields(e);
        assert_eq!(fields.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["type", "since"]);
        for kind in EventKind::ALL {
            assert!(fields[0].1.contains(kind.as_str()), "{} is not listed: {}", kind.as_str(), fields[0].1);
        }
        for bad in ["", "2025-01-31", "2025-01-31T09:30:00", "2025-02-30T00:00:00Z"] {
            assert!(event_query(None, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_rfc_3339_time_is_a_bound_even_past_the_years_a_store_holds() {
        let since = |s: &str| event_query(None, Some(s)).map(|q| q.since).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        assert_eq!(since("0000-01-01T00:00:00+01:00").map(|t| t.year()), Some(-1), "the year 0 ahead of UTC");
        let late = since("9999-12-31T23:59:59-01:00").unwrap_or_else(|| panic!("a bound"));
        assert_eq!(late.year(), 9999, "after the year 9999 in UTC: nothing");
        assert_eq!(since("0000-01-01T00:00:00Z").map(|t| t.year()), Some(0));
        assert_eq!(since("2025-01-31t09:30:00z").map(OffsetDateTime::unix_timestamp), Some(1_738_315_800));
    }
}
