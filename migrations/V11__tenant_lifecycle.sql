-- Tenant lifecycle: suspension, deletion with a grace period, and the purge that follows it.
--
-- A tenant is suspended while `suspended_at` is set and deleted (its hosts gone, its data kept
-- until `purge_after`, when `restore` can still undo it) while `deleted_at` is set. The two are
-- independent: restoring a tenant that was suspended when it was deleted leaves it suspended.

ALTER TABLE tenants
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN deleted_at   timestamptz,
    ADD COLUMN purge_after  timestamptz,
    ADD CONSTRAINT tenants_purge_after CHECK ((deleted_at IS NULL) = (purge_after IS NULL));

-- The operator's commands run through plinth under the tenant's own context, like set-plan.
GRANT UPDATE (suspended_at, deleted_at, purge_after) ON tenants TO plinth_app;

-- Resolving a host now answers with the tenant's lifecycle too, so that a suspended or deleted
-- tenant is refused from the cached record, without a database read per request.
DROP FUNCTION tenant_by_slug(text);
CREATE FUNCTION tenant_by_slug(p_slug text)
RETURNS TABLE (id uuid, slug text, name text, plan text, suspended_at timestamptz, deleted_at timestamptz,
               purge_after timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.name, t.plan, t.suspended_at, t.deleted_at, t.purge_after
    FROM public.tenants t WHERE t.slug = p_slug
$$;
REVOKE ALL ON FUNCTION tenant_by_slug(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_by_slug(text) TO plinth_app;

-- The operator's list: every tenant, by slug, a page at a time (the API role reads no tenant row
-- but its own otherwise). `p_state` is NULL (all), 'active', 'suspended' or 'deleted'.
CREATE FUNCTION plinth_list_tenants(p_after text, p_limit integer, p_state text)
RETURNS TABLE (id uuid, slug text, name text, plan text, suspended_at timestamptz, deleted_at timestamptz,
               purge_after timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.name, t.plan, t.suspended_at, t.deleted_at, t.purge_after
    FROM public.tenants t
    WHERE (p_after IS NULL OR t.slug > p_after)
      AND CASE p_state
            WHEN 'active' THEN t.suspended_at IS NULL AND t.deleted_at IS NULL
            WHEN 'suspended' THEN t.suspended_at IS NOT NULL AND t.deleted_at IS NULL
            WHEN 'deleted' THEN t.deleted_at IS NOT NULL
            ELSE true
          END
    ORDER BY t.slug
    LIMIT least(greatest(p_limit, 1), 1000)
$$;
REVOKE ALL ON FUNCTION plinth_list_tenants(text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_list_tenants(text, integer, text) TO plinth_app;

-- A suspended or deleted tenant's jobs (webhook deliveries, emails) wait: its queue is paused,
-- and claims pass it by. Nothing fails; resuming or restoring the tenant lets them go on.
ALTER TABLE job_queues ADD COLUMN paused boolean NOT NULL DEFAULT false;
DROP INDEX job_queues_due_idx;
CREATE INDEX job_queues_due_idx ON job_queues (next_run_at) WHERE running = 0 AND NOT paused;

-- The tenant's queue follows its lifecycle, whoever changes it (a trigger, as the owner: the API
-- role never writes queue rows). A tenant with no queue row yet gets one, paused.
CREATE FUNCTION plinth_tenant_lifecycle_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    INSERT INTO public.job_queues AS q (queue, paused)
    VALUES (NEW.id::text, NEW.suspended_at IS NOT NULL OR NEW.deleted_at IS NOT NULL)
    ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused;
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_lifecycle AFTER UPDATE OF suspended_at, deleted_at ON tenants
    FOR EACH ROW WHEN (OLD.suspended_at IS DISTINCT FROM NEW.suspended_at OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION plinth_tenant_lifecycle_changed();

-- Deleted tenants whose grace has run out by `p_now`, oldest first.
CREATE FUNCTION plinth_tenants_due_for_purge(p_now timestamptz, p_limit integer)
RETURNS TABLE (id uuid, slug text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug FROM public.tenants t
    WHERE t.deleted_at IS NOT NULL AND t.purge_after <= p_now
    ORDER BY t.purge_after LIMIT least(greatest(p_limit, 1), 1000)
$$;
REVOKE ALL ON FUNCTION plinth_tenants_due_for_purge(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_tenants_due_for_purge(timestamptz, integer) TO plinth_app;

-- Every table that holds a tenant's rows, children before their parents, with the column that
-- names the tenant. The purge walks it in this order; a test checks that it names every table
-- with a tenant column, so a table added later can't be forgotten.
CREATE FUNCTION plinth_tenant_tables()
RETURNS TABLE (table_name text, tenant_column text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public
AS $$
    VALUES ('refresh_tokens', 'tenant_id'), ('sessions', 'tenant_id'), ('user_tokens', 'tenant_id'),
           ('invitations', 'tenant_id'), ('outbound_emails', 'tenant_id'), ('idempotency_keys', 'tenant_id'),
           ('api_keys', 'tenant_id'), ('webhook_deliveries', 'tenant_id'), ('events', 'tenant_id'),
           ('webhooks', 'tenant_id'), ('projects', 'tenant_id'), ('audit_log', 'tenant_id'),
           ('audit_heads', 'tenant_id'), ('users', 'tenant_id'), ('jobs', 'queue'), ('job_queues', 'queue')
$$;

-- Erases up to `p_batch` rows of a deleted tenant whose grace has run out by `p_now`: from the
-- first of its tables that still holds any, and, once none does, the tenant itself. Returns how
-- many rows went; 0 when there is nothing (left) to erase. Each call is its own short
-- transaction, so the purge of a large tenant never holds a long lock on a shared table.
CREATE FUNCTION plinth_purge_tenant(p_tenant uuid, p_now timestamptz, p_batch integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    t record;
    n bigint;
    sql text;
BEGIN
    PERFORM 1 FROM public.tenants WHERE id = p_tenant AND deleted_at IS NOT NULL AND purge_after <= p_now
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    FOR t IN SELECT * FROM public.plinth_tenant_tables() LOOP
        sql := format(
            'DELETE FROM public.%I WHERE ctid = ANY (ARRAY (SELECT ctid FROM public.%I WHERE %I = $1 LIMIT $2))',
            t.table_name, t.table_name, t.tenant_column);
        IF t.tenant_column = 'queue' THEN
            EXECUTE sql USING p_tenant::text, p_batch;
        ELSE
            EXECUTE sql USING p_tenant, p_batch;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RETURN n;
        END IF;
    END LOOP;
    DELETE FROM public.tenants WHERE id = p_tenant;
    RETURN 1;
END $$;
REVOKE ALL ON FUNCTION plinth_purge_tenant(uuid, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plinth_purge_tenant(uuid, timestamptz, integer) TO plinth_app;
