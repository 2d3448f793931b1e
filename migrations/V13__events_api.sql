-- The events API: a tenant's events read back from the outbox, newest first by
-- (created_at, id), whole or of one kind, from a time on; and an event's deliveries.
--
-- Each list reads one index from its start (or its cursor) down, stopping at `since` or at the
-- page's end, whatever the number of events: the whole list by the first, one kind by the
-- second. The third finds an event's deliveries (one per webhook subscribed to it), which
-- nothing indexed before: the foreign key to events, its cascade and retention's look for
-- deliveries an event still has use it too.
CREATE INDEX events_list_idx ON events (tenant_id, created_at DESC, id DESC);
CREATE INDEX events_kind_list_idx ON events (tenant_id, kind, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (tenant_id, event_id);
