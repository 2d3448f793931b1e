//! An export's memory is bounded whatever the tenant's size: the real `plinth` on PostgreSQL
//! exports a tenant of many projects (`PLINTH_EXPORT_TEST_PROJECTS`, 200,000 by default) to a
//! client that pauses now and then, while the server's resident memory is sampled from
//! `/proc`: it grows by less than [`RSS_BOUND`] while the body is many times that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plinth_testkit::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Process, slug};

/// The most the server's resident memory may grow by during the export.
const RSS_BOUND: u64 = 8 * 1024 * 1024;

/// The server's resident memory, in bytes (`VmRSS` of `/proc/<pid>/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a VmRSS line");
    kb * 1024
}

/// Samples `pid`'s resident memory every 10 ms until `stop`; the peak so far is in `peak`.
fn sample(pid: u32, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test]
async fn an_export_many_times_larger_than_its_bound_grows_the_server_by_less_than_the_bound() {
    let projects: i64 =
        std::env::var("PLINTH_EXPORT_TEST_PROJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let db = TestDatabase::new().await;
    let app = Process::start(&[
        ("DATABASE_URL", &db.app_url),
        ("PLINTH_JWT_SECRET", crate::helpers::JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", crate::helpers::ENCRYPTION_KEY),
    ])
    .await;
    let tenant = slug("exported");
    let owner = crate::helpers::signup(&app.client, &app.address, &tenant).await;

    // Seeded as the owner in one statement: names of 200-odd characters, lines of ~400 bytes.
    let seeding = Instant::now();
    let sql = db.owner().await;
    let tenant_id: uuid::Uuid = owner.tenant_id.parse().unwrap();
    sql.execute(
        "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) \
         SELECT $1, gen_random_uuid(), 'project ' || lpad(i::text, 8, '0') || ' ' || repeat('x', 190), \
         now(), now() FROM generate_series(1, $2::bigint) AS i",
        &[&tenant_id, &projects],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE projects").await.unwrap();
    let seeded = seeding.elapsed();

    // A client of its own: the harness's gives up after 20 s.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let pid = app.pid();
    let before = rss(pid);
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(before)));
    let sampler = sample(pid, stop.clone(), peak.clone());

    let started = Instant::now();
    let mut res = client
        .get(format!("{}/v1/tenant/export", app.address))
        .header("host", format!("{tenant}.localhost"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (mut bytes, mut lines, mut paused) = (0u64, 0i64, 0);
    let mut tail = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as i64;
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(4096);
        tail.drain(..keep);
        // A reader that stops twice for a second, a quarter and half way through: an export
        // that did not wait for it would pile up everything it read meanwhile.
        if (paused == 0 && lines > projects / 4) || (paused == 1 && lines > projects / 2) {
            paused += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);

    let text = String::from_utf8(tail).unwrap();
    let end: Value = serde_json::from_str(text.trim_end().rsplit('\n').next().unwrap()).unwrap();
    assert_eq!(end["type"], "end", "the export is whole");
    assert_eq!(end["data"]["counts"]["project"], projects);
    let counts = end["data"]["counts"].as_object().unwrap();
    assert_eq!(lines, counts.values().map(|v| v.as_i64().unwrap()).sum::<i64>() + 1);
    assert_eq!(paused, 2);

    eprintln!(
        "export of {projects} projects ({lines} lines): {bytes} bytes ({:.1} MiB) in {:.1} s ({:.1} MiB/s, \
         seeded in {:.1} s); server RSS before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB (bound {:.0} MiB)",
        mib(bytes),
        took.as_secs_f64(),
        mib(bytes) / took.as_secs_f64(),
        seeded.as_secs_f64(),
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(RSS_BOUND),
    );
    assert!(bytes > 4 * RSS_BOUND, "the body ({:.1} MiB) is many times the bound", mib(bytes));
    assert!(
        peak.saturating_sub(before) < RSS_BOUND,
        "the server grew by {:.1} MiB during the export",
        mib(peak.saturating_sub(before))
    );

    // The whole export was one database call, under its own name.
    let metrics = app.scrape().await;
    assert_eq!(metrics.value("db_query_duration_seconds_count", &[("op", "tenants.export")]), 1.0);
    let res = app.request(Method::GET, &format!("{tenant}.localhost"), "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the server serves on");
}
