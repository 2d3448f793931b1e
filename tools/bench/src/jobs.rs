//! The `jobs` scenario: a backlog of no-op jobs (kind `noop`, spread over every tenant) is
//! inserted as the owner while plinth runs with its in-process worker, and the rate at which
//! the worker completes (deletes) them is measured. `jobs-flood` first gives one more tenant a
//! backlog of its own, older than every measured job, and counts only the measured ones: with
//! claims that walked every ready job, that backlog slowed every claim of every worker.
//!
//! The scenario depends on the job queue (`migrations/V3__jobs.sql`, the worker's `Work::Noop`).
//! When the database has no `jobs` table, or the worker completes no `noop` job, the scenario
//! is skipped with a "not available in this build" message rather than failing the bench.

use std::time::{Duration, Instant};

use super::Progress;
use super::load::Measured;
use super::services::PgServer;

/// Why the scenario can't run against this build, if it can't.
pub fn unavailable(pg: &PgServer) -> Option<String> {
    match pg.psql(&pg.owner_url(), "SELECT to_regclass('public.jobs') IS NOT NULL") {
        Ok(t) if t == "t" => None,
        Ok(_) => Some("not available in this build: the database has no job queue (no `jobs` table)".into()),
        Err(e) => Some(format!("not available: {e}")),
    }
}

/// How many jobs are left, not counting the flooding tenant's (`flooder`).
fn remaining(pg: &PgServer, flooder: &str) -> Result<u64, String> {
    pg.psql(&pg.owner_url(), &format!("SELECT count(*) FROM jobs WHERE kind = 'noop' AND queue <> '{flooder}'"))?
        .parse()
        .map_err(|e| format!("counting jobs: {e}"))
}

/// Inserts `backlog` no-op jobs round-robin over the tenants (after `flood` ready jobs of one
/// more tenant, when given), announces them, and measures completions of the backlog for up to
/// `seconds` (or until it is gone).
pub fn run(
    pg: &PgServer,
    backlog: u64,
    flood: Option<u64>,
    seconds: u32,
    progress: &Progress,
) -> Result<Measured, String> {
    let owner = pg.owner_url();
    // The flooding tenant's id: a fresh one, so its queue is its alone.
    let flooder = match flood {
        None => String::new(),
        Some(n) => {
            let id = pg.psql(&owner, "SELECT gen_random_uuid()")?;
            pg.psql(
                &owner,
                &format!(
                    "INSERT INTO jobs (queue, kind, payload, run_at) \
                     SELECT '{id}', 'noop', jsonb_build_object('tenant_id', '{id}'), now() - interval '1 hour' \
                     FROM generate_series(1, {n})"
                ),
            )?;
            id
        }
    };
    let tenants: u64 = pg.psql(&owner, "SELECT count(*) FROM tenants")?.parse().map_err(|e| format!("{e}"))?;
    let per_tenant = backlog.div_ceil(tenants.max(1));
    let insert = format!(
        "INSERT INTO jobs (queue, kind, payload) \
         SELECT t.id::text, 'noop', jsonb_build_object('tenant_id', t.id::text) \
         FROM generate_series(1, {per_tenant}) s CROSS JOIN tenants t ORDER BY s, t.id; \
         NOTIFY plinth_jobs;"
    );
    pg.psql(&owner, &insert)?;
    let total = remaining(pg, &flooder)?;
    let started = Instant::now();
    let limit = Duration::from_secs(u64::from(seconds));
    let mut left = total;
    while started.elapsed() < limit && left > 0 {
        std::thread::sleep(Duration::from_millis(500));
        left = remaining(pg, &flooder)?;
        progress.tick(&format!("jobs ({} of {total} done)", total - left), started.elapsed(), limit);
        if left == total && started.elapsed() > Duration::from_secs(5) {
            pg.psql(&owner, "DELETE FROM jobs WHERE kind = 'noop'")?;
            return Err("not available in this build: the worker completed no `noop` job in 5 s".into());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    pg.psql(&owner, "DELETE FROM jobs WHERE kind = 'noop'")?;
    let done = total - left;
    Ok(Measured {
        requests: done,
        seconds: elapsed,
        rate: done as f64 / elapsed.max(1e-9),
        note: match (left, flood) {
            (0, _) => "backlog drained before the end: a lower bound".into(),
            (_, Some(n)) => format!("behind another tenant's {n} ready jobs"),
            (_, None) => String::new(),
        },
        ..Measured::default()
    })
}
