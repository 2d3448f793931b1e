//! Soak: two `plinth` processes sharing PostgreSQL and Redis under a bounded mixed load from
//! loopback (reads, writes, logins, webhooks). Every response is checked: no 5xx, no row of
//! another tenant; every webhook event reaches the (deduping) receiver. Each instance's RSS is
//! read for 5 s after warm-up, at every minute mark and just before the load ends: each window's
//! highest reading and its floor (its lowest: no password hash's 19 MiB in flight) are printed,
//! with the floor's growth from minute 5 to the end (each the lowest of three windows' floors).
//! With `PLINTH_SOAK_CHECK_RSS=1` every reading and each instance's peak stay under 150 MB, and
//! in a run of ten minutes or more the floor grows by less than 3% from minute 5 to the end. A shorter run prints its growth from
//! the warm-up window but does not check it: the in-process cache is still filling then.
//!
//! `PLINTH_SOAK_SECONDS` sets the duration (30 in CI, without the RSS check; `cargo xtask soak`
//! runs 300 with it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use plinth_testkit::{TestDatabase, redis_prefix, shared_redis_url};
use rand::Rng as _;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const TENANTS: usize = 6;
const CLIENTS: usize = 8;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn start(db: &TestDatabase, redis: &str, prefix: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .envs([
                ("PLINTH_LISTEN", format!("127.0.0.1:{port}")),
                ("DATABASE_URL", db.app_url.clone()),
                ("PLINTH_DATABASE_OWNER_URL", db.owner_url.clone()),
                ("REDIS_URL", redis.to_owned()),
                ("PLINTH_REDIS_PREFIX", prefix.to_owned()),
                ("PLINTH_JWT_SECRET", "a-soak-secret-of-at-least-32-bytes!!".to_owned()),
                ("PLINTH_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()),
                ("PLINTH_QUOTA_FREE", "1000000".to_owned()),
                ("PLINTH_IP_QUOTA", "1000000".to_owned()),
                ("PLINTH_LOGIN_QUOTA", "1000000".to_owned()),
                ("PLINTH_MAILBOX_QUOTA", "1000000".to_owned()),
                ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
                ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8".to_owned()),
                ("PLINTH_WEBHOOK_BACKOFF_MS", "100".to_owned()),
                ("PLINTH_LOG", "warn".to_owned()),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let instance = Self { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "plinth did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        instance
    }

    /// A memory figure from the process's `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in bytes.
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the status of plinth (did it exit?)"));
        kib * 1024
    }
}

/// Each instance's RSS bound under this load, in bytes (MB are 10^6 bytes, as in the bench).
const RSS_LIMIT: u64 = 150_000_000;
/// The most RSS may grow from the baseline sample to the end, in percent.
const RSS_GROWTH_PERCENT: f64 = 3.0;
/// Where growth is measured from in a run long enough: minute 5.
const RSS_BASELINE_S: u64 = 300;

/// Readings of RSS at each mark, 250 ms apart.
const RSS_WINDOW_READINGS: u32 = 20;
/// How long a mark's readings take, in whole seconds (rounded up).
const RSS_WINDOW_S: u64 = 5;

/// When RSS is read while the load runs, in seconds from its start: after warm-up (a fifth
/// of the run, at most a minute), then at every minute mark, and last, just before the load
/// stops (each mark's readings take [`RSS_WINDOW_S`]).
fn rss_marks(seconds: u64) -> Vec<u64> {
    let warm = (seconds / 5).clamp(1, 60);
    let last = seconds.saturating_sub(RSS_WINDOW_S).max(warm);
    let minutes = (1..).map(|m| m * 60).skip_while(|&t| t <= warm).take_while(|&t| t + RSS_WINDOW_S < last);
    let mut marks: Vec<u64> = std::iter::once(warm).chain(minutes).collect();
    if last > warm {
        marks.push(last);
    }
    marks
}

/// The sample growth is measured from, and whether the run is long enough to check it: minute
/// 5 when the run goes on for at least as long again after it, else the warm-up sample.
fn rss_baseline(seconds: u64) -> (u64, bool) {
    if seconds >= 2 * RSS_BASELINE_S { (RSS_BASELINE_S, true) } else { (rss_marks(seconds)[0], false) }
}

fn mb(bytes: &[u64]) -> String {
    let each: Vec<String> = bytes.iter().map(|b| format!("{:.1}", *b as f64 / 1e6)).collect();
    format!("[{}] MB", each.join(", "))
}

#[test]
fn rss_is_sampled_after_warm_up_at_every_minute_and_compared_from_minute_5_in_long_runs() {
    assert_eq!(rss_marks(30), [6, 25]);
    assert_eq!(rss_marks(300), [60, 120, 180, 240, 295]);
    assert_eq!(rss_marks(1800).len(), 30);
    assert_eq!(rss_marks(1800)[..2], [60, 120]);
    assert_eq!(rss_marks(1800).last(), Some(&1795));
    assert_eq!(rss_baseline(30), (6, false));
    assert_eq!(rss_baseline(300), (60, false));
    assert_eq!(rss_baseline(599), (60, false));
    assert_eq!(rss_baseline(600), (300, true));
    assert_eq!(rss_baseline(1800), (300, true));
    assert!(rss_marks(1800).contains(&rss_baseline(1800).0));
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts what the load saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    server_errors: AtomicU64,
    foreign_rows: AtomicU64,
    events: AtomicU64,
}

async fn receiver(seen: Arc<Mutex<HashMap<String, u32>>>) -> String {
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let seen = seen.clone();
            async move {
                let id = req.headers().get("plinth-event-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                *seen.lock().unwrap().entry(id.to_owned()).or_default() += 1;
                HttpResponse::NoContent().finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}/hook")
}

fn host(slug: &str) -> String {
    format!("{slug}.localhost")
}

/// One client: random operations on random tenants through random instances until `until`.
async fn client(
    http: Client,
    bases: Arc<Vec<String>>,
    tenants: Arc<Vec<(String, String)>>,
    tally: Arc<Tally>,
    until: Instant,
) {
    let mut mine: Vec<(usize, String)> = Vec::new();
    while Instant::now() < until {
        let (t, base, roll) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..tenants.len()),
                bases[rng.random_range(0..bases.len())].clone(),
                rng.random_range(0..100),
            )
        };
        let (slug, token) = &tenants[t];
        let req = |method: Method, path: &str| {
            http.request(method, format!("{base}{path}")).header("host", host(slug)).bearer_auth(token)
        };
        let (res, event) = if roll < 70 {
            (req(Method::GET, "/v1/projects?limit=100").send().await, false)
        } else if roll < 85 {
            (req(Method::POST, "/v1/projects").json(&json!({"name": format!("{slug} project")})).send().await, true)
        } else if roll < 92 && !mine.is_empty() {
            let (_, id) = mine.iter().find(|(owner, _)| *owner == t).cloned().unwrap_or_else(|| mine[0].clone());
            let (owner, _) = mine.iter().find(|(_, i)| *i == id).cloned().unwrap();
            let path = format!("/v1/projects/{id}");
            let r = http
                .request(Method::PATCH, format!("{base}{path}"))
                .header("host", host(&tenants[owner].0))
                .bearer_auth(&tenants[owner].1)
                .json(&json!({"name": format!("{} renamed", tenants[owner].0)}))
                .send()
                .await;
            (r, true)
        } else if roll < 96 && !mine.is_empty() {
            let (owner, id) = mine.swap_remove(0);
            let r = http
                .request(Method::DELETE, format!("{base}/v1/projects/{id}"))
                .header("host", host(&tenants[owner].0))
                .bearer_auth(&tenants[owner].1)
                .send()
                .await;
            (r, true)
        } else {
            let r = http
                .post(format!("{base}/v1/auth/login"))
                .header("host", host(slug))
                .json(&json!({"email": format!("owner@{slug}.test"), "password": PASSWORD}))
                .send()
                .await;
            (r, false)
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let res = match res {
            Ok(res) if !res.status().is_server_error() => res,
            failed => {
                // Counted as a failure either way; the first few say which kind it was.
                if tally.server_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    match failed {
                        Ok(res) => eprintln!("soak: {} answered {}", res.url().path(), res.status()),
                        Err(e) => eprintln!("soak: a request got no answer: {e:?}"),
                    }
                }
                continue;
            }
        };
        let status = res.status();
        if event && status.is_success() {
            tally.events.fetch_add(1, Ordering::Relaxed);
        }
        if status == StatusCode::CREATED {
            let body: Value = res.json().await.unwrap_or_default();
            if let Some(id) = body["id"].as_str() {
                mine.push((t, id.to_owned()));
            }
        } else if status == StatusCode::OK && roll < 70 {
            let body: Value = res.json().await.unwrap_or_default();
            for item in body["items"].as_array().into_iter().flatten() {
                // Every project a tenant has is named after the tenant's slug.
                if !item["name"].as_str().unwrap_or_default().starts_with(&format!("{slug} ")) {
                    tally.foreign_rows.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_under_mixed_load_stay_correct() {
    let seconds: u64 = std::env::var("PLINTH_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let check_rss = std::env::var("PLINTH_SOAK_CHECK_RSS").is_ok_and(|v| v == "1");
    let db = TestDatabase::new().await;
    let redis = shared_redis_url();
    let prefix = redis_prefix();
    let instances = [Instance::start(&db, &redis, &prefix), Instance::start(&db, &redis, &prefix)];
    let bases: Arc<Vec<String>> = Arc::new(instances.iter().map(|i| i.base.clone()).collect());
    let http = Client::new();
    let seen = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let hook = receiver(seen.clone()).await;

    let mut tenants = Vec::new();
    for n in 0..TENANTS {
        let slug = format!("soak-{n}");
        let res = http
            .post(format!("{}/v1/signup", bases[0]))
            .header("host", "localhost")
            .json(&json!({"tenant_slug": slug, "tenant_name": slug, "email": format!("owner@{slug}.test"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        let res = http
            .post(format!("{}/v1/webhooks", bases[1]))
            .header("host", host(&slug))
            .bearer_auth(&token)
            .json(&json!({"url": hook, "events": ["project.created", "project.updated", "project.deleted"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        tenants.push((slug, token));
    }
    let tenants = Arc::new(tenants);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(http.clone(), bases.clone(), tenants.clone(), tally.clone(), until)))
        .collect();
    // Each mark reads RSS every 250 ms for a few seconds (under load): the window's highest
    // reading is checked against the bound, and its lowest (the floor, with no password hash's
    // 19 MiB in flight) is what growth is measured on, so a hash in flight at one mark does not
    // read as growth or shrinkage.
    let window = |at: u64| {
        let instances = &instances;
        async move {
            let mut floor = vec![u64::MAX; instances.len()];
            let mut top = vec![0; instances.len()];
            for _ in 0..RSS_WINDOW_READINGS {
                for (n, i) in instances.iter().enumerate() {
                    let rss = i.memory("VmRSS:");
                    floor[n] = floor[n].min(rss);
                    top[n] = top[n].max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            eprintln!("soak: RSS at {at} s: floor {}, highest {}", mb(&floor), mb(&top));
            (at, floor, top)
        }
    };
    let mut samples = Vec::new();
    for at in rss_marks(seconds) {
        tokio::time::sleep_until((started + Duration::from_secs(at)).into()).await;
        samples.push(window(at).await);
    }
    for c in clients {
        c.await.unwrap();
    }
    let peaks: Vec<u64> = instances.iter().map(|i| i.memory("VmHWM:")).collect();
    // The floors of three windows: from the baseline's on, and the last three. A window can
    // hold a hash in flight throughout (two hashing threads busy for five seconds); three
    // seldom all do, and memory that grows raises all three.
    let (from, check_growth) = rss_baseline(seconds);
    let lowest = |windows: &[(u64, Vec<u64>, Vec<u64>)]| -> Vec<u64> {
        (0..instances.len()).map(|n| windows.iter().map(|w| w.1[n]).min().unwrap()).collect()
    };
    let start = samples.iter().position(|(at, _, _)| *at == from).unwrap();
    let base = &lowest(&samples[start..(start + 3).min(samples.len())]);
    let end = &lowest(&samples[samples.len().saturating_sub(3)..]);
    let growth: Vec<f64> = base.iter().zip(end).map(|(b, e)| (*e as f64 / *b as f64 - 1.0) * 100.0).collect();
    let growth_shown: Vec<String> = growth.iter().map(|g| format!("{g:+.1}%")).collect();

    // Let the workers drain the queue.
    let expected = tally.events.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.lock().unwrap().len() as u64) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    let requests = tally.requests.load(Ordering::Relaxed);
    eprintln!(
        "soak: {seconds} s, {requests} requests ({:.0}/s), {} 5xx, {} foreign rows, {expected} events, {} delivered \
         ({} distinct, {duplicates} duplicates), RSS floor from {from} s {}, at the end {}, growth [{}], peak {}",
        requests as f64 / seconds as f64,
        tally.server_errors.load(Ordering::Relaxed),
        tally.foreign_rows.load(Ordering::Relaxed),
        seen.values().sum::<u32>(),
        seen.len(),
        mb(base),
        mb(end),
        growth_shown.join(", "),
        mb(&peaks),
    );
    assert!(requests > 100, "the load ran");
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0, "no 5xx");
    assert_eq!(tally.foreign_rows.load(Ordering::Relaxed), 0, "no tenant ever saw another's rows");
    assert_eq!(seen.len() as u64, expected, "every event delivered (deduplicated by Plinth-Event-Id)");
    let distinct: HashSet<&String> = seen.keys().collect();
    assert!(!distinct.contains(&String::new()), "every delivery carried its event id");
    if check_rss {
        for (at, _, top) in &samples {
            assert!(top.iter().all(|r| *r < RSS_LIMIT), "RSS {} at {at} s (limit 150 MB)", mb(top));
        }
        assert!(peaks.iter().all(|p| *p < RSS_LIMIT), "peak RSS {} (limit 150 MB)", mb(&peaks));
        assert!(
            !check_growth || growth.iter().all(|g| *g < RSS_GROWTH_PERCENT),
            "RSS grew by [{}] from {from} s to the end (limit {RSS_GROWTH_PERCENT}%)",
            growth_shown.join(", ")
        );
    }
}
