//! The `jobs` scenario: a backlog of no-op jobs (kind `noop`, spread over every tenant) is
//! inserted as the owner while plinth runs with its in-process worker, and the rate at which
//! the worker completes (deletes) them is measured.
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

/// How many jobs are left.
fn remaining(pg: &PgServer) -> Result<u64, String> {
    pg.psql(&pg.owner_url(), "SELECT count(*) FROM jobs WHERE kind = 'noop'")?
        .parse()
        .map_err(|e| format!("counting jobs: {e}"))
}

/// Inserts `backlog` no-op jobs round-robin over the tenants, announces them, and measures
/// completions for up to `seconds` (or until the backlog is gone).
pub fn run(pg: &PgServer, backlog: u64, seconds: u32, progress: &Progress) -> Result<Measured, String> {
    let owner = pg.owner_url();
    let tenants: u64 = pg.psql(&owner, "SELECT count(*) FROM tenants")?.parse().map_err(|e| format!("{e}"))?;
    let per_tenant = backlog.div_ceil(tenants.max(1));
    let insert = format!(
        "INSERT INTO jobs (queue, kind, payload) \
         SELECT t.id::text, 'noop', jsonb_build_object('tenant_id', t.id::text) \
         FROM generate_series(1, {per_tenant}) s CROSS JOIN tenants t ORDER BY s, t.id; \
         NOTIFY plinth_jobs;"
    );
    pg.psql(&owner, &insert)?;
    let total = remaining(pg)?;
    let started = Instant::now();
    let limit = Duration::from_secs(u64::from(seconds));
    let mut left = total;
    while started.elapsed() < limit && left > 0 {
        std::thread::sleep(Duration::from_millis(500));
        left = remaining(pg)?;
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
        note: if left == 0 { "backlog drained before the end: a lower bound".into() } else { String::new() },
        ..Measured::default()
    })
}
