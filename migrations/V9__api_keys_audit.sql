-- Tenant API keys and the audit log.
--
-- Idempotency keys are scoped to whoever sent the request: a user or an API key. A key is no
-- user, so the scope's id no longer references users (expired keys are pruned as before, and
-- a deleted user's keys can no longer match anything: user ids are never reused).
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_tenant_id_user_id_fkey;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_tenant_id_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;

-- A key belongs to its tenant: removing its creator keeps it (created_by becomes NULL). Only
-- HMAC-SHA256 of its secret is stored. Revoked keys are kept for the audit log to name.
CREATE TABLE api_keys (
    tenant_id             uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                    uuid        NOT NULL,
    name                  text        NOT NULL,
    scopes                text[]      NOT NULL,
    role                  text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_by            uuid,
    secret_hash           bytea       NOT NULL CHECK (length(secret_hash) = 32),
    rate_limit_per_minute integer     CHECK (rate_limit_per_minute > 0),
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz,
    revoked_at            timestamptz,
    last_used_at          timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, created_by) REFERENCES users (tenant_id, id) ON DELETE SET NULL (created_by)
);
CREATE INDEX api_keys_live_idx ON api_keys (tenant_id, created_at DESC, id DESC) WHERE revoked_at IS NULL;

-- Each tenant's chain: its newest entry (seq, hash), which appends lock and move, and its
-- checkpoint, which only retention moves (through plinth_prune_audit).
-- Every audited write updates its tenant's row: room is left on each page so the update can
-- stay on it (a HOT update, which writes no index entry).
CREATE TABLE audit_heads (
    tenant_id       uuid   PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    seq             bigint NOT NULL DEFAULT 0,
    hash            bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    checkpoint_seq  bigint NOT NULL DEFAULT 0,
    checkpoint_hash bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
) WITH (fillfactor = 50);

-- The entries. `changes` is `json`, not `jsonb`: its exact text is what the chain covers.
CREATE TABLE audit_log (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq              bigint      NOT NULL,
    at               timestamptz NOT NULL,
    actor_kind       text        NOT NULL,
    actor_id         uuid,
    actor_ip         text,
    actor_user_agent text,
    action           text        NOT NULL,
    target_type      text,
    target_id        text,
    request_id       text,
    changes          json        NOT NULL,
    prev_hash        bytea       NOT NULL,
    hash             bytea       NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
-- Retention finds old entries by time; entries arrive in time order, so a BRIN index (a few
-- pages, nearly free to keep up on every insert) serves it.
CREATE INDEX audit_log_at_idx ON audit_log USING brin (at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'audit_heads', 'audit_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid) '
            'WITH CHECK (tenant_id = NULLIF(current_setting(''app.current_tenant'', true), '''')::uuid)', t);
    END LOOP;
END $$;

-- Keys are revoked and touched, never deleted by the API. The log is append-only for the API:
-- it inserts and reads entries, and moves its chain's head; it can neither change nor delete
-- an entry, nor move a checkpoint.
GRANT SELECT, INSERT, UPDATE ON api_keys TO plinth_app;
GRANT SELECT, INSERT ON audit_log TO plinth_app;
GRANT SELECT, INSERT ON audit_heads TO plinth_app;
GRANT UPDATE (seq, hash) ON audit_heads TO plinth_app;

-- Retention, as the owner: deletes every tenant's entries from before `p_before` (never from
-- the last 30 days, whatever the caller asks: the API role can't empty the log through it) and
-- moves each tenant's checkpoint to the last entry deleted, so its chain still verifies from
-- there.
CREATE FUNCTION plinth_prune_audit(p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    cutoff timestamptz := least(p_before, now() - interval '30 days');
    r record;
    n bigint := 0;
    c bigint;
BEGIN
    FOR r IN SELECT l.tenant_id, max(l.seq) AS seq FROM public.audit_log l WHERE l.at < cutoff GROUP BY l.tenant_id LOOP
        UPDATE public.audit_heads h
           SET checkpoint_seq = r.seq,
               checkpoint_hash = (SELECT l.hash FROM public.audit_log l WHERE l.tenant_id = r.tenant_id AND l.seq = r.seq)
         WHERE h.tenant_id = r.tenant_id;
        DELETE FROM public.audit_log l WHERE l.tenant_id = r.tenant_id AND l.seq <= r.seq;
        GET DIAGNOSTICS c = ROW_COUNT;
        n := n + c;
    END LOOP;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION plinth_prune_audit(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_prune_audit(timestamptz) TO plinth_app;

-- When keys were last used, for every tenant at once (one statement per flush, not one
-- transaction per key), as the owner: it can only move a live key's last_used_at forward.
CREATE FUNCTION plinth_touch_api_keys(p_tenants uuid[], p_ids uuid[], p_at timestamptz[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE n bigint;
BEGIN
    UPDATE public.api_keys k
       SET last_used_at = GREATEST(k.last_used_at, u.at)
      FROM unnest(p_tenants, p_ids, p_at) AS u(tenant_id, id, at)
     WHERE k.tenant_id = u.tenant_id AND k.id = u.id AND k.revoked_at IS NULL
       AND u.at <= now() + interval '1 minute';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION plinth_touch_api_keys(uuid[], uuid[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_touch_api_keys(uuid[], uuid[], timestamptz[]) TO plinth_app;
