//! The operator files against the real thing: every metric that `deploy/grafana/plinth.json`
//! and `deploy/prometheus/alerts.yml` read is one a busy plinth exposes; every alert has its
//! runbook section; and a real Prometheus scraping plinth loads the rules, evaluates every
//! expression, and fires the alerts for what plinth was made to do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use plinth_testkit::{PrivateRedis, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ENCRYPTION_KEY, JWT_SECRET, Metrics, Process, free_port, signup, slug};
use crate::promql::{PROMETHEUS_MADE, Rule, alert_rules, dashboard_targets, expand_variables, metric_names, root};

/// Panels whose series only exist after something the workload can't make happen (a 5xx).
const NEEDS_A_SERVER_ERROR: &[&str] = &["5xx ratio"];

/// A plinth on PostgreSQL and a Redis of its own, with a worker whose failing deliveries go
/// dead at their first attempt, and whose endpoints are disabled after three failures spread
/// over a second.
async fn busy_plinth(db: &TestDatabase, redis: &PrivateRedis, metrics_token: Option<&str>) -> Process {
    let url = redis.url();
    let mut vars = vec![
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_JWT_SECRET", JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("REDIS_URL", url.as_str()),
        // Every request asks Redis, so the outage shows at once.
        ("PLINTH_LIMIT_LEASE_PERCENT", "0"),
        ("PLINTH_IP_QUOTA", "3"),
        ("PLINTH_WORKER", "true"),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("PLINTH_WEBHOOK_MAX_ATTEMPTS", "1"),
        ("PLINTH_WEBHOOK_DISABLE_AFTER_S", "1"),
        ("PLINTH_WEBHOOK_DISABLE_MIN_FAILURES", "3"),
    ];
    if let Some(token) = metrics_token {
        vars.push(("PLINTH_METRICS_TOKEN", token));
    }
    Process::start(&vars).await
}

/// Scrapes until `done` holds, for up to 30 s.
async fn scrape_until(app: &Process, token: Option<&str>, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = app.scrape_as(token).await;
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} did not happen:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn total(m: &Metrics, name: &str) -> f64 {
    m.series.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
}

/// Makes plinth create the series that appear only once something happens: reads through both
/// cache levels, a readiness check, a rate-limit rejection, webhook deliveries paced and gone
/// dead, an endpoint disabled, and a Redis outage (errors, fallbacks, degraded components, a
/// failed readiness check) that ends before this returns.
async fn exercise(app: &Process, redis: &mut PrivateRedis, token: Option<&str>) -> Metrics {
    let tenant = slug("ops-files");
    let owner = signup(&app.client, &app.address, &tenant).await.token;
    let host = format!("{tenant}.localhost");
    let ready = async |expected: StatusCode| {
        let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
        assert_eq!(res.status(), expected);
    };
    let read = async || {
        for path in ["/v1/tenant", "/v1/projects"] {
            let res = app.request(Method::GET, &host, path).bearer_auth(&owner).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "the API serves whether Redis does or not");
        }
    };
    ready(StatusCode::OK).await;
    read().await;
    read().await;
    // The IP quota is 3: an anonymous client is refused by the fourth read.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.request(Method::GET, &host, "/v1/tenant").send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);

    // Nothing listens on a port that was free a moment ago: every attempt fails.
    let hook = json!({"url": format!("http://127.0.0.1:{}/hook", free_port()), "events": ["project.created"]});
    let res = app.request(Method::POST, &host, "/v1/webhooks").bearer_auth(&owner).json(&hook).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{id}");
    let pace = json!({"rate_limit_per_second": 1});
    let res = app.request(Method::PATCH, &host, &path).bearer_auth(&owner).json(&pace).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let create = async |name: &str| {
        let project = json!({"name": name});
        let res = app.request(Method::POST, &host, "/v1/projects").bearer_auth(&owner).json(&project).send().await;
        assert_eq!(res.unwrap().status(), StatusCode::CREATED);
    };
    // One attempt a second: the second delivery is held for its slot; each goes dead at once.
    create("Goes dead").await;
    create("Paced, then goes dead").await;
    scrape_until(app, token, "two dead deliveries, one paced", |m| {
        m.get("webhook_attempts_total", &[("result", "dead")]) == Some(2.0)
            && m.get("webhook_deliveries_held_total", &[("reason", "paced")]).is_some()
    })
    .await;
    // Over a second after the first failure, the third one disables the endpoint.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create("Disables its endpoint").await;
    scrape_until(app, token, "a disabled endpoint", |m| m.get("webhooks_disabled_total", &[]) == Some(1.0)).await;

    redis.kill();
    read().await;
    ready(StatusCode::SERVICE_UNAVAILABLE).await;
    let m = app.scrape_as(token).await;
    assert_eq!(m.value("component_degraded", &[("component", "rate_limiter")]), 1.0, "{}", m.text);
    assert_eq!(m.value("readiness_check_up", &[("dependency", "redis")]), 0.0);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        read().await;
        let m = app.scrape_as(token).await;
        if total(&m, "component_degraded") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "plinth did not recover from the outage:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready(StatusCode::OK).await;
    app.scrape_as(token).await
}

/// The metric names `expr` reads that `exposed` lacks.
fn missing(expr: &str, exposed: &BTreeSet<String>, allowed: &[&str]) -> Vec<String> {
    metric_names(expr).into_iter().filter(|n| !exposed.contains(n) && !allowed.contains(&n.as_str())).collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_read_is_one_plinth_exposes() {
    let (db, mut redis) = (TestDatabase::new().await, PrivateRedis::start());
    let app = busy_plinth(&db, &redis, None).await;
    let m = exercise(&app, &mut redis, None).await;
    let exposed: BTreeSet<String> =
        m.series.keys().map(|k| k.split('{').next().unwrap_or_default().to_owned()).collect();

    let targets = dashboard_targets();
    assert!(targets.len() >= 20, "the dashboard has {} targets", targets.len());
    let rules = alert_rules();
    assert!(rules.len() >= 12, "alerts.yml has {} rules", rules.len());
    let mut problems = Vec::new();
    for t in &targets {
        let names = missing(&t.expr, &exposed, &[]);
        if !names.is_empty() {
            problems.push(format!("dashboard panel {:?} reads {names:?}: {}", t.panel, t.expr));
        }
        assert!(!metric_names(&t.expr).is_empty(), "panel {:?} reads no metric: {}", t.panel, t.expr);
    }
    for r in &rules {
        let names = missing(&r.expr, &exposed, PROMETHEUS_MADE);
        if !names.is_empty() {
            problems.push(format!("alert {} reads {names:?}: {}", r.alert, r.expr));
        }
    }
    assert!(problems.is_empty(), "not exposed by plinth:\n{}\n\nexposed: {exposed:?}", problems.join("\n"));
}

/// The anchors of `docs/operations.md`'s headings, as GitHub makes them.
fn anchors() -> BTreeSet<String> {
    let path = root().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let title = l.trim_start_matches('#').trim().to_lowercase();
            title.chars().filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_').collect::<String>()
        })
        .map(|t| t.replace(' ', "-"))
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section_in_docs_operations() {
    let anchors = anchors();
    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for Rule { alert, runbook, .. } in &rules {
        assert!(names.insert(alert), "alert {alert} is defined twice");
        let runbook = runbook.as_deref().unwrap_or_else(|| panic!("alert {alert} has no runbook annotation"));
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("alert {alert}: its runbook {runbook} is not a section of docs/operations.md"));
        assert!(anchors.contains(anchor), "alert {alert}: docs/operations.md has no section #{anchor}");
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Prometheus on a private loopback port, killed when dropped.
struct Prometheus {
    child: Mutex<Child>,
    address: String,
    client: reqwest::Client,
    dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, as job `plinth` with `token` as its
    /// bearer, and evaluating `alerts.yml` every second.
    fn start(target: &str, token: &str) -> Self {
        let dir = TempDir(std::env::temp_dir().join(format!("plinth-prometheus-{}", uuid::Uuid::now_v7().simple())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let rules = root().join("deploy/prometheus/alerts.yml").canonicalize().unwrap();
        std::fs::write(dir.0.join("token"), token).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: plinth\n    authorization:\n      credentials_file: {token}\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display(),
            token = dir.0.join("token").display(),
        );
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start prometheus ({e}): install it with `apt-get install --no-install-recommends prometheus` \
                     (then `systemctl disable --now prometheus prometheus-node-exporter`: the test runs its own)"
                )
            });
        Self {
            child: Mutex::new(child),
            address: format!("http://127.0.0.1:{port}"),
            client: crate::helpers::client(),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/{path}`: its `data`, or the error Prometheus gave.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let res = self.client.get(format!("{}/api/v1/{path}", self.address)).query(query).send().await;
        let res = res.map_err(|e| format!("no answer: {e}"))?;
        let body: Value = res.json().await.map_err(|e| format!("not JSON: {e}"))?;
        if body["status"] == "success" { Ok(body["data"].clone()) } else { Err(body.to_string()) }
    }

    /// The instant vector `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits up to 30 s for `done` to hold of the answer to `path`; fails at once if
    /// Prometheus has exited (it does on rules it can't load).
    async fn wait_for(&self, what: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = self.child.lock().unwrap_or_else(PoisonError::into_inner).try_wait().ok().flatten();
            assert!(exited.is_none(), "{what}: prometheus exited ({exited:?}):\n{}", self.log());
            let answer = self.api(path, &[]).await;
            if let Ok(data) = &answer
                && done(data)
            {
                return data.clone();
            }
            assert!(Instant::now() < deadline, "{what}: last answer {answer:?}\nprometheus log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn firing(alerts: &Value) -> BTreeSet<String> {
    let list = alerts["alerts"].as_array().into_iter().flatten();
    list.filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn prometheus_scraping_plinth_loads_every_rule_evaluates_every_expression_and_fires_on_what_happened() {
    let token = "a-metrics-token-for-prometheus";
    let (db, mut redis) = (TestDatabase::new().await, PrivateRedis::start());
    let app = busy_plinth(&db, &redis, Some(token)).await;
    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", app.port), token);
    prometheus
        .wait_for("the first scrape with the bearer token", "targets", |d| {
            d["activeTargets"].as_array().is_some_and(|t| t.len() == 1 && t[0]["health"] == "up")
        })
        .await;

    exercise(&app, &mut redis, Some(token)).await;
    // Both counters were scraped at 0 before the workload: the first dead delivery and the
    // first disabled endpoint show as increases, and these alerts have no `for`.
    let expected: BTreeSet<String> =
        ["PlinthWebhookDeliveriesDead", "PlinthWebhooksDisabled"].into_iter().map(str::to_owned).collect();
    let alerts =
        prometheus.wait_for("the alerts for what happened", "alerts", |d| firing(d).is_superset(&expected)).await;
    let unexpected: Vec<String> = firing(&alerts).difference(&expected).cloned().collect();
    assert!(unexpected.is_empty(), "firing besides: {unexpected:?}\n{alerts}");

    let file_rules = alert_rules();
    let rules = prometheus
        .wait_for("every group evaluated", "rules", |d| {
            let groups = d["groups"].as_array().cloned().unwrap_or_default();
            !groups.is_empty()
                && groups.iter().all(|g| g["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
        })
        .await;
    let mut loaded = BTreeMap::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["name"].as_str().unwrap().to_owned();
            assert_eq!(rule["health"], "ok", "rule {name} of group {}: {rule}", group["name"]);
            assert!(rule["lastError"].as_str().unwrap_or_default().is_empty(), "rule {name}: {rule}");
            assert_eq!(rule["type"], "alerting", "{rule}");
            loaded.insert(name, rule["query"].as_str().unwrap().to_owned());
        }
    }
    let names: BTreeSet<&String> = file_rules.iter().map(|r| &r.alert).collect();
    assert_eq!(loaded.keys().collect::<BTreeSet<_>>(), names, "the rules Prometheus loaded are the file's");

    for r in &file_rules {
        prometheus.query(&r.expr).await.unwrap_or_else(|e| panic!("alert {}: {e}\n{}", r.alert, r.expr));
    }
    // Every panel's query runs, and (but for a 5xx ratio) finds series: a label or a
    // metric misspelt shows as an empty panel. Rates need two scrapes of a series born late.
    let targets = dashboard_targets();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut empty = Vec::new();
        for t in &targets {
            let expr = expand_variables(&t.expr);
            let result = prometheus.query(&expr).await.unwrap_or_else(|e| panic!("panel {:?}: {e}\n{expr}", t.panel));
            if result.is_empty() && !NEEDS_A_SERVER_ERROR.contains(&t.panel.as_str()) {
                empty.push(format!("{:?}: {expr}", t.panel));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "panels with no series:\n{}", empty.join("\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
