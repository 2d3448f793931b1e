-- Retention's floor, decided in the database. `plinth_prune` runs as the owner across every
-- tenant and the API role may call it, so a caller-chosen cutoff let that role delete every
-- tenant's finished deliveries and events, however young. The cutoff is now clamped to a day
-- ago at the latest: a day is the shortest retention PLINTH_RETENTION_DAYS accepts, so a
-- configured retention is never cut short, and no caller can make it shorter. Expired
-- idempotency keys are expired by their own clock, as before.
CREATE OR REPLACE FUNCTION plinth_prune(p_before timestamptz)
RETURNS TABLE (deliveries bigint, events bigint, idempotency_keys bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE d bigint; e bigint; k bigint;
DECLARE cutoff timestamptz := least(p_before, now() - interval '1 day');
BEGIN
    DELETE FROM public.webhook_deliveries WHERE created_at < cutoff AND state <> 'pending';
    GET DIAGNOSTICS d = ROW_COUNT;
    DELETE FROM public.events ev WHERE ev.created_at < cutoff
        AND NOT EXISTS (SELECT 1 FROM public.webhook_deliveries wd
                        WHERE wd.tenant_id = ev.tenant_id AND wd.event_id = ev.id);
    GET DIAGNOSTICS e = ROW_COUNT;
    DELETE FROM public.idempotency_keys WHERE expires_at < now();
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN QUERY SELECT d, e, k;
END $$;
