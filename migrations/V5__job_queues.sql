-- Claims that cost the same whatever another tenant's backlog. A claim used to walk every
-- ready job oldest first, skipping the jobs of tenants with one in flight, so one tenant's
-- 30,000 pending deliveries were scanned by every claim of every worker. Now each queue (a
-- tenant's id) has one row here, kept by triggers on `jobs`: how many jobs it holds
-- (`pending`, what PLINTH_TENANT_MAX_PENDING_JOBS caps), how many are claimed (`running`), when
-- its head, its oldest unclaimed job, is due (`head_run_at`), and when it was last served
-- (`turn_at`). Its next turn (`next_run_at`) is the later of the two: a tenant just served goes
-- behind every tenant already waiting, whatever the age of its backlog (round robin; ordered by
-- head alone, a flood of old jobs would win every claim). A claim locks the queue with nothing
-- in flight whose turn comes first (`FOR UPDATE SKIP LOCKED`, so two workers never take the
-- same tenant) and takes that queue's head through `jobs_queue_head_idx`: a few index pages,
-- whoever else is waiting. The queue gauges are sums over these rows, not counts over `jobs`.
-- Like `jobs`, this is not a tenant table: the worker claims across tenants, and it holds only
-- ids and counts.

LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE job_queues (
    queue       text        PRIMARY KEY,
    pending     integer     NOT NULL DEFAULT 0,
    running     integer     NOT NULL DEFAULT 0,
    head_run_at timestamptz,
    turn_at     timestamptz,
    next_run_at timestamptz GENERATED ALWAYS AS
        (CASE WHEN head_run_at IS NOT NULL THEN greatest(head_run_at, turn_at) END) STORED
);
-- The claim's walk: queues with nothing in flight, by when their turn comes.
CREATE INDEX job_queues_due_idx ON job_queues (next_run_at) WHERE running = 0;

-- A queue's head, and nothing else of it, is found through this one.
DROP INDEX jobs_ready_idx;
DROP INDEX jobs_in_flight_idx;
CREATE INDEX jobs_queue_head_idx ON jobs (queue, run_at, id) WHERE locked_at IS NULL;
-- Rescue looks only at claimed jobs.
CREATE INDEX jobs_locked_idx ON jobs (locked_at) WHERE locked_at IS NOT NULL;

INSERT INTO job_queues (queue, pending, running, head_run_at)
SELECT queue, count(*), count(*) FILTER (WHERE locked_at IS NOT NULL), min(run_at) FILTER (WHERE locked_at IS NULL)
FROM jobs GROUP BY queue;

-- When the queue's oldest unclaimed job is due: one descent of `jobs_queue_head_idx`. (In
-- PL/pgSQL, whose plans are kept per session: a SQL function's would be made per statement.)
CREATE FUNCTION plinth_job_queue_head(p_queue text) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (SELECT run_at FROM public.jobs WHERE queue = p_queue AND locked_at IS NULL ORDER BY run_at, id LIMIT 1);
END $$;

-- The triggers run once per statement over its transition tables, as the owner: the API role
-- may lock queue rows to claim but never write them. Once per statement, not per row: a bulk
-- insert or delete of 50,000 jobs of one queue updates its row once (row by row, each update
-- would walk the chain of that row's versions the statement made before it: minutes).
CREATE FUNCTION plinth_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    -- Adding jobs can only bring a head forward (least() ignores NULLs).
    INSERT INTO public.job_queues AS q (queue, pending, running, head_run_at)
    SELECT queue, count(*), count(*) FILTER (WHERE locked_at IS NOT NULL), min(run_at) FILTER (WHERE locked_at IS NULL)
    FROM new_jobs GROUP BY queue ORDER BY queue
    ON CONFLICT (queue) DO UPDATE SET
        pending = q.pending + excluded.pending,
        running = q.running + excluded.running,
        head_run_at = least(q.head_run_at, excluded.head_run_at);
    RETURN NULL;
END $$;

-- A claim takes a job out of the unclaimed ones (the head moves on: one index descent) and
-- starts the queue's turn; a release, a retry or a rescue puts one back (the head can only come
-- forward: no descent).
CREATE FUNCTION plinth_jobs_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    UPDATE public.job_queues q SET
        running = q.running + d.claimed,
        turn_at = CASE WHEN d.claimed > 0 THEN now() ELSE q.turn_at END,
        head_run_at = CASE WHEN d.moved THEN public.plinth_job_queue_head(q.queue)
                           ELSE least(q.head_run_at, d.back) END
    FROM (SELECT n.queue,
                 sum((n.locked_at IS NOT NULL)::integer - (o.locked_at IS NOT NULL)::integer)::integer AS claimed,
                 bool_or(o.locked_at IS NULL AND (n.locked_at IS NOT NULL OR n.run_at <> o.run_at)) AS moved,
                 min(n.run_at) FILTER (WHERE n.locked_at IS NULL) AS back
          FROM new_jobs n JOIN old_jobs o ON o.id = n.id GROUP BY n.queue) d
    WHERE q.queue = d.queue;
    RETURN NULL;
END $$;

-- A finished (claimed) job leaves the head alone.
CREATE FUNCTION plinth_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    UPDATE public.job_queues q SET
        pending = q.pending - d.n,
        running = q.running - d.claimed,
        head_run_at = CASE WHEN d.n > d.claimed THEN public.plinth_job_queue_head(q.queue) ELSE q.head_run_at END
    FROM (SELECT queue, count(*)::integer AS n, (count(*) FILTER (WHERE locked_at IS NOT NULL))::integer AS claimed
          FROM old_jobs GROUP BY queue) d
    WHERE q.queue = d.queue;
    RETURN NULL;
END $$;

CREATE FUNCTION plinth_jobs_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    DELETE FROM public.job_queues;
    RETURN NULL;
END $$;

REVOKE ALL ON FUNCTION plinth_job_queue_head(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION plinth_jobs_inserted(), plinth_jobs_updated(), plinth_jobs_deleted(), plinth_jobs_truncated()
    FROM PUBLIC;

CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION plinth_jobs_inserted();
CREATE TRIGGER jobs_updated AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION plinth_jobs_updated();
CREATE TRIGGER jobs_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION plinth_jobs_deleted();
CREATE TRIGGER jobs_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION plinth_jobs_truncated();

-- Reading the counters, and locking a queue row to claim from it (a row lock needs UPDATE on
-- some column): the API role writes none of them itself.
GRANT SELECT, UPDATE (head_run_at) ON job_queues TO plinth_app;
