-- The job queue. It carries only work: which delivery of which tenant to attempt, and when.
-- Tenant data stays in the RLS tables; a worker sets the job's tenant as the transaction's
-- tenant before touching any of it. `queue` is the fairness key (the tenant's id): a worker
-- claims no job of a queue that already has one in flight, so one tenant's backlog can't
-- hold every worker.

CREATE TABLE jobs (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue      text        NOT NULL,
    kind       text        NOT NULL,
    payload    jsonb       NOT NULL,
    run_at     timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 0,
    locked_by  text,
    locked_at  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_ready_idx ON jobs (run_at, id) WHERE locked_at IS NULL;
CREATE INDEX jobs_in_flight_idx ON jobs (queue) WHERE locked_at IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO plinth_app;

-- Retention, across every tenant: runs as the owner (who bypasses RLS; `plinth migrate`
-- checks that), so the API role needs no cross-tenant rights of its own. Deletes finished
-- deliveries older than the cutoff with the events no delivery needs any more, and expired
-- idempotency keys. Returns how many rows of each went.
CREATE FUNCTION plinth_prune(p_before timestamptz)
RETURNS TABLE (deliveries bigint, events bigint, idempotency_keys bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE d bigint; e bigint; k bigint;
BEGIN
    DELETE FROM public.webhook_deliveries WHERE created_at < p_before AND state <> 'pending';
    GET DIAGNOSTICS d = ROW_COUNT;
    DELETE FROM public.events ev WHERE ev.created_at < p_before
        AND NOT EXISTS (SELECT 1 FROM public.webhook_deliveries wd
                        WHERE wd.tenant_id = ev.tenant_id AND wd.event_id = ev.id);
    GET DIAGNOSTICS e = ROW_COUNT;
    DELETE FROM public.idempotency_keys WHERE expires_at < now();
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN QUERY SELECT d, e, k;
END $$;
REVOKE ALL ON FUNCTION plinth_prune(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_prune(timestamptz) TO plinth_app;
