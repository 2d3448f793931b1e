//! `plinth migrate` needs only what migrating needs (the owner's URL, and `DATABASE_URL` for
//! the app role's password), while serving still refuses to start without its secrets.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use plinth_testkit::PrivateCluster;

/// Runs the `plinth` binary with `args` and exactly `vars` as its environment, and fails the
/// test if it has not exited within 20 s (a server that starts when it should have refused
/// would otherwise run forever).
async fn plinth_exits(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        // Nothing from the developer's shell (a PLINTH_ENCRYPTION_KEY, a DATABASE_URL) leaks in.
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the plinth binary runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("plinth {args:?} is still running: it should have refused to start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().expect("the output")
}

#[tokio::test]
async fn migrate_needs_only_the_owner_url_and_the_app_url() {
    let cluster = PrivateCluster::start();
    let admin = plinth_testkit::connect(&cluster.url("postgres", None, "postgres")).await;
    admin.batch_execute("CREATE DATABASE plinth").await.expect("create database");
    let owner_url = cluster.url("postgres", None, "plinth");
    let app_url = cluster.url("plinth_app", Some("migrated-password"), "plinth");
    let vars = [("PLINTH_DATABASE_OWNER_URL", owner_url.as_str()), ("DATABASE_URL", app_url.as_str())];

    let out = plinth_exits(&["migrate"], &vars).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "plinth migrate failed ({}):\n{stderr}", out.status);
    // Its log lines (JSON) go to stdout too; the migrations are the lines `V<n>__<name>\t<state>`.
    let migrations: Vec<&str> = stdout.lines().filter(|l| l.starts_with('V')).collect();
    assert!(!migrations.is_empty() && migrations.iter().all(|l| l.ends_with("\tapplied")), "{stdout}");
    let owner = plinth_testkit::connect(&owner_url).await;
    let role = owner
        .query_one("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'plinth_app'", &[])
        .await
        .expect("plinth_app exists");
    assert!(role.get::<_, bool>(0), "plinth_app was given DATABASE_URL's password");
    let projects = owner.query_one("SELECT to_regclass('projects') IS NOT NULL", &[]).await.expect("query");
    assert!(projects.get::<_, bool>(0), "the schema is there");

    // The same two variables are not enough to serve.
    let listen = ("PLINTH_LISTEN", "127.0.0.1:0");
    let jwt = ("PLINTH_JWT_SECRET", "a-test-secret-of-at-least-32-bytes!");
    let out = plinth_exits(&[], &[vars[0], vars[1], listen, jwt]).await;
    assert_eq!(out.status.code(), Some(2), "serving started without PLINTH_ENCRYPTION_KEY");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLINTH_ENCRYPTION_KEY"), "{out:?}");
    let out = plinth_exits(&[], &[vars[0], vars[1], listen]).await;
    assert_eq!(out.status.code(), Some(2), "serving started without its secrets");
}

#[tokio::test]
async fn audit_verify_passes_an_intact_chain_and_fails_a_tampered_one() {
    use crate::helpers::{ENCRYPTION_KEY, JWT_SECRET, TestApp};

    let app = TestApp::start(&[], Some(plinth_testkit::TestDatabase::new().await)).await;
    let token = app.signup("ledger").await.token;
    app.project("ledger", &token, "Counted").await;
    let db = app.db.as_ref().expect("a database");
    let vars = [
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_JWT_SECRET", JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("PLINTH_LOG", "error"),
    ];
    let verify = async || {
        let out = plinth_exits(&["audit", "verify", "--tenant", "ledger"], &vars).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (out.status.success(), report)
    };
    let (ok, report) = verify().await;
    assert!(ok, "{report}");
    assert_eq!((report["valid"].as_bool(), report["entries"].as_u64()), (Some(true), Some(3)), "{report}");

    let owner = db.owner().await;
    owner.execute("UPDATE audit_log SET action = 'project.deleted' WHERE seq = 3", &[]).await.expect("tamper");
    let (ok, report) = verify().await;
    assert!(!ok, "a broken chain fails the command: {report}");
    assert_eq!(report["first_problem"], serde_json::json!({"seq": 3, "problem": "edited"}));

    let out = plinth_exits(&["audit", "verify", "--tenant", "nobody-here"], &vars).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such tenant"));
}

#[tokio::test]
async fn tenant_set_plan_reaches_a_running_instance_within_5_s_and_is_audited() {
    use crate::helpers::{ENCRYPTION_KEY, JWT_SECRET, TestApp};

    let redis = plinth_testkit::shared_redis_url();
    let prefix = plinth_testkit::redis_prefix();
    let fleet = [("REDIS_URL", redis.as_str()), ("PLINTH_REDIS_PREFIX", prefix.as_str())];
    let app = TestApp::start(&fleet, Some(plinth_testkit::TestDatabase::new().await)).await;
    let token = app.signup("planned").await.token;
    let plan_of = async || {
        let res = app.request(reqwest::Method::GET, "planned.localhost", "/v1/tenant").send().await.expect("tenant");
        res.json::<serde_json::Value>().await.expect("json")["plan"].as_str().unwrap_or_default().to_owned()
    };
    // The running instance has the tenant cached (for a minute) as free.
    assert_eq!(plan_of().await, "free");
    let db = app.db.as_ref().expect("a database");
    let mut vars = vec![
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_JWT_SECRET", JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("PLINTH_LOG", "error"),
    ];
    vars.extend_from_slice(&fleet);

    let out = plinth_exits(&["tenant", "set-plan", "--tenant", "planned", "--plan", "gold"], &vars).await;
    assert!(!out.status.success(), "no plan named gold");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--plan"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = plinth_exits(&["tenant", "set-plan", "--tenant", "planned", "--plan", "pro"], &vars).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!((shown["plan"].as_str(), shown["usage"]["members"].as_u64()), (Some("pro"), Some(1)), "{shown}");

    let changed = Instant::now();
    while plan_of().await != "pro" {
        assert!(changed.elapsed() < Duration::from_secs(5), "the running instance still says free after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log: serde_json::Value = app
        .on(reqwest::Method::GET, "planned", "/v1/audit-log?action=tenant.plan_changed", Some(&token))
        .send()
        .await
        .expect("audit log")
        .json()
        .await
        .expect("json");
    let entry = &log["items"][0];
    assert_eq!(entry["actor"]["kind"], "operator", "{log}");
    assert_eq!(entry["changes"], serde_json::json!({"plan": "pro", "from": "free"}));

    let out = plinth_exits(&["tenant", "show", "--tenant", "nobody-here"], &vars).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such tenant"));
}
