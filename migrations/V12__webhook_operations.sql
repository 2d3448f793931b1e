-- Webhook operations: endpoints that can be changed, paused and disabled, secrets rotated with
-- an overlap, deliveries skipped, retried and recovered, and notices mailed when an endpoint
-- is disabled.
--
-- An endpoint's health is kept on its row by the worker's record of each attempt: when it last
-- succeeded, how many attempts in a row have failed and since when. An endpoint that fails every
-- attempt for long enough is disabled (`enabled = false`, with the reason and the time): its
-- pending deliveries become `skipped` and no new ones are made until it is enabled again.
--
-- Rotation keeps the previous secret (sealed like the current one) until
-- `previous_secret_expires_at`; meanwhile every delivery is signed under both.
--
-- `rate_limit_per_second` paces an endpoint's deliveries: each attempt takes the endpoint's next
-- slot (`next_slot_at`, moved on by one interval per attempt); a delivery whose slot lies ahead
-- keeps it (`webhook_deliveries.slot_at`) and its job waits until then, in its tenant's queue,
-- without holding the tenant's other jobs.

ALTER TABLE webhooks
    ADD COLUMN enabled                    boolean     NOT NULL DEFAULT true,
    ADD COLUMN disabled_reason            text        CHECK (length(disabled_reason) <= 200),
    ADD COLUMN disabled_at                timestamptz,
    ADD COLUMN rate_limit_per_second      integer     CHECK (rate_limit_per_second BETWEEN 1 AND 1000),
    ADD COLUMN next_slot_at               timestamptz,
    ADD COLUMN last_success_at            timestamptz,
    ADD COLUMN consecutive_failures       integer     NOT NULL DEFAULT 0,
    ADD COLUMN failing_since              timestamptz,
    ADD COLUMN previous_secret_sealed     bytea,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT webhooks_disabled CHECK (enabled = (disabled_at IS NULL)),
    ADD CONSTRAINT webhooks_previous_secret
        CHECK ((previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL));

-- New deliveries are made for enabled endpoints only.
CREATE INDEX webhooks_subscribed_idx ON webhooks (tenant_id) WHERE enabled;

GRANT UPDATE (url, events, enabled, disabled_reason, disabled_at, rate_limit_per_second, next_slot_at,
              last_success_at, consecutive_failures, failing_since, secret_sealed, previous_secret_sealed,
              previous_secret_expires_at)
    ON webhooks TO plinth_app;

-- `skipped`: its endpoint was disabled before it could be delivered (`recover` sends it again).
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_state_check;
ALTER TABLE webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_state_check CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    ADD COLUMN slot_at timestamptz;
-- `recover` walks one endpoint's deliveries since a time, oldest first.
CREATE INDEX webhook_deliveries_recover_idx ON webhook_deliveries (tenant_id, webhook_id, created_at, id)
    WHERE state <> 'delivered';

-- The notice mailed to owners and admins when an endpoint is disabled names the endpoint.
ALTER TABLE outbound_emails DROP CONSTRAINT outbound_emails_purpose_check;
ALTER TABLE outbound_emails
    ADD CONSTRAINT outbound_emails_purpose_check
        CHECK (purpose IN ('invitation', 'password_reset', 'verify_email', 'webhook_disabled')),
    ADD COLUMN webhook_id uuid;
