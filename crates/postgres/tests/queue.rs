//! The job queue under a flood: one tenant's 50,000 ready jobs neither hold back another
//! tenant's job nor make anyone's claim dearer; and the trace context stored with a job, which a
//! claim checks before handing it on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plinth_domain::ids::TenantId;
use plinth_domain::ports::{DeliveryStore, JobQueue};
use plinth_postgres::{CLAIM_SQL, PgSettings, PgStore};
use plinth_testkit::TestDatabase;
use tokio_postgres::Client;

const FLOOD: i64 = 50_000;

fn store(db: &TestDatabase) -> PgStore {
    let settings = PgSettings {
        pool_size: 2,
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "plinth-queue-test".into(),
        direct_url: None,
        statement_cache: true,
    };
    PgStore::connect(&db.app_url, &settings, std::sync::Arc::new(plinth_domain::clock::SystemClock::new())).unwrap()
}

/// Inserts `n` ready no-op jobs of `tenant` as the owner, due from an hour ago on (older than
/// anything enqueued now), in one statement.
async fn bulk(owner: &Client, tenant: TenantId, n: i64) {
    owner
        .execute(
            "INSERT INTO jobs (queue, kind, payload, run_at) \
             SELECT $1, 'noop', jsonb_build_object('tenant_id', $1::text), now() - interval '1 hour' + s * interval '1 ms' \
             FROM generate_series(1, $2::int8) s",
            &[&tenant.to_string(), &n],
        )
        .await
        .unwrap();
}

/// One ready no-op job of `tenant`, due now.
async fn one(owner: &Client, tenant: TenantId) {
    owner
        .execute(
            "INSERT INTO jobs (queue, kind, payload) VALUES ($1, 'noop', jsonb_build_object('tenant_id', $1::text))",
            &[&tenant.to_string()],
        )
        .await
        .unwrap();
}

/// Shared buffers (hit or read) the claim statement touches, run as `plinth_app` and rolled
/// back, and the tenant it would have claimed for.
async fn claim_cost(app: &Client) -> (i64, Option<String>) {
    app.batch_execute("BEGIN").await.unwrap();
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CLAIM_SQL}");
    let row = app.query_one(explain.as_str(), &[&"explain", &time::OffsetDateTime::now_utc()]).await.unwrap();
    let claimed: Option<String> =
        app.query_opt("SELECT queue FROM jobs WHERE locked_by = 'explain'", &[]).await.unwrap().map(|r| r.get(0));
    app.batch_execute("ROLLBACK").await.unwrap();
    let plan: serde_json::Value = row.get(0);
    let top = &plan[0]["Plan"];
    let blocks = |key: &str| top[key].as_i64().unwrap_or_else(|| panic!("{key} in {plan}"));
    (blocks("Shared Hit Blocks") + blocks("Shared Read Blocks"), claimed)
}

#[tokio::test]
async fn another_tenants_job_is_claimed_among_the_next_few_claims_behind_a_50k_backlog() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let store = store(&db);
    let (flood, other) = (TenantId::new(), TenantId::new());
    bulk(&owner, flood, FLOOD).await;
    one(&owner, other).await;
    owner.batch_execute("ANALYZE jobs, job_queues").await.unwrap();

    let mut claimed = Vec::new();
    for _ in 0..3 {
        let job = store.claim("worker").await.unwrap().expect("a job is due");
        claimed.push(job.tenant);
        if job.tenant == other {
            break;
        }
        // The flood's worker finishes its job; the next claim may take its next one.
        store.discard(&job).await.unwrap();
    }
    assert!(claimed.contains(&other), "the other tenant waited behind the flood: {claimed:?}");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.running, 1, "the other tenant's job is in flight");
    assert_eq!(stats.ready, u64::try_from(FLOOD).unwrap() - 1, "the flood, less the job finished");
}

#[tokio::test]
async fn a_claims_cost_does_not_grow_with_another_tenants_backlog() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let app = db.app().await;
    let store = store(&db);
    let (flood, other) = (TenantId::new(), TenantId::new());
    bulk(&owner, flood, 10).await;
    // The flood's tenant has a job in flight: every claim must look past its backlog.
    let busy = store.claim("worker").await.unwrap().expect("the flood's head");
    assert_eq!(busy.tenant, flood);
    one(&owner, other).await;
    owner.batch_execute("ANALYZE jobs, job_queues").await.unwrap();
    let (small, claimed) = claim_cost(&app).await;
    assert_eq!(claimed, Some(other.to_string()), "the claim takes the other tenant's job");

    bulk(&owner, flood, FLOOD).await;
    owner.batch_execute("ANALYZE jobs, job_queues").await.unwrap();
    let (large, claimed) = claim_cost(&app).await;
    assert_eq!(claimed, Some(other.to_string()), "the claim takes the other tenant's job");
    assert!(
        large <= small + 8 && large < 100,
        "a claim read {large} buffers behind a backlog of {FLOOD} (and {small} behind one of 10)"
    );
}

#[tokio::test]
async fn the_api_role_reads_the_queue_counters_but_cannot_write_them() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let app = db.app().await;
    bulk(&owner, TenantId::new(), 3).await;
    let pending: i32 = app.query_one("SELECT pending FROM job_queues", &[]).await.unwrap().get(0);
    assert_eq!(pending, 3);
    for write in [
        "UPDATE job_queues SET pending = 0",
        "UPDATE job_queues SET running = 1",
        "DELETE FROM job_queues",
        "INSERT INTO job_queues (queue) VALUES ('forged')",
        "TRUNCATE job_queues",
    ] {
        let e = app.batch_execute(write).await.expect_err(write);
        assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{write}: {e}");
    }
    let pending: i32 = owner.query_one("SELECT pending FROM job_queues", &[]).await.unwrap().get(0);
    assert_eq!(pending, 3, "the counters are the triggers' alone");
}

#[tokio::test]
async fn the_queue_counters_match_a_recount_after_claims_releases_rescues_and_deletes() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let store = store(&db);
    let (a, b) = (TenantId::new(), TenantId::new());
    bulk(&owner, a, 100).await;
    bulk(&owner, b, 7).await;
    let first = store.claim("worker").await.unwrap().expect("due");
    store.claim("worker").await.unwrap().expect("due");
    store.release(&first).await.unwrap();
    assert_eq!(store.rescue(Duration::ZERO).await.unwrap(), 1, "the second claim is rescued");
    let third = store.claim("worker").await.unwrap().expect("due");
    store.discard(&third).await.unwrap();
    store.claim("worker").await.unwrap().expect("due");
    owner
        .batch_execute(
            "DELETE FROM jobs WHERE id % 3 = 0; UPDATE jobs SET run_at = run_at - interval '1 day' WHERE id % 5 = 0",
        )
        .await
        .unwrap();

    let counted = "SELECT queue, count(*)::int, (count(*) FILTER (WHERE locked_at IS NOT NULL))::int, \
                   min(run_at) FILTER (WHERE locked_at IS NULL) FROM jobs GROUP BY queue ORDER BY queue";
    let kept = "SELECT queue, pending, running, head_run_at FROM job_queues WHERE pending > 0 ORDER BY queue";
    let rows = |sql: &'static str| {
        let owner = &owner;
        async move {
            owner
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, i32>(1),
                        r.get::<_, i32>(2),
                        r.get::<_, Option<time::OffsetDateTime>>(3),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let recount = rows(counted).await;
    assert_eq!(recount.len(), 2);
    assert_eq!(rows(kept).await, recount);
}

#[tokio::test]
async fn a_claimed_jobs_stored_trace_context_is_handed_on_only_when_well_formed() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let store = store(&db);
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // 55 characters, as the column requires, but not a traceparent: upper-case hex.
    let malformed = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    let mut stored = std::collections::HashMap::new();
    for (value, kept) in [(valid, true), (malformed, false)] {
        let tenant = TenantId::new();
        owner
            .execute(
                "INSERT INTO jobs (queue, kind, payload, traceparent) \
                 VALUES ($1, 'noop', jsonb_build_object('tenant_id', $1::text), $2)",
                &[&tenant.to_string(), &value],
            )
            .await
            .unwrap();
        stored.insert(tenant, (value, kept));
    }
    for _ in 0..2 {
        let job = store.claim("worker").await.unwrap().expect("due");
        let (value, kept) = stored[&job.tenant];
        let handed = job.trace.as_ref().map(plinth_domain::trace::TraceParent::as_str);
        assert_eq!(handed, kept.then_some(value), "stored {value}");
    }
    let too_long = format!("{valid}-01");
    let e = owner
        .execute("UPDATE jobs SET traceparent = $1", &[&too_long])
        .await
        .expect_err("the column holds version-00 values only");
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "{e}");
}
