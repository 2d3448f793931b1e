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

/// A running instance on a database of its own and the shared Redis (a prefix of its own), and
/// the variables a `plinth tenant …` command needs to act on it (`extra` on top).
async fn app_and_cli_vars(extra: &[(&'static str, &str)]) -> (crate::helpers::TestApp, Vec<(&'static str, String)>) {
    use crate::helpers::{ENCRYPTION_KEY, JWT_SECRET, TestApp};

    let fleet =
        [("REDIS_URL", plinth_testkit::shared_redis_url()), ("PLINTH_REDIS_PREFIX", plinth_testkit::redis_prefix())];
    let app_vars: Vec<(&str, &str)> = fleet.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::start(&app_vars, Some(plinth_testkit::TestDatabase::new().await)).await;
    let db = app.db.as_ref().expect("a database");
    let mut vars = vec![
        ("DATABASE_URL", db.app_url.clone()),
        ("PLINTH_JWT_SECRET", JWT_SECRET.to_owned()),
        ("PLINTH_ENCRYPTION_KEY", ENCRYPTION_KEY.to_owned()),
        ("PLINTH_LOG", "error".to_owned()),
    ];
    vars.extend(fleet);
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    (app, vars)
}

#[tokio::test]
async fn tenant_set_plan_reaches_a_running_instance_within_5_s_and_is_audited() {
    let (app, vars) = app_and_cli_vars(&[]).await;
    let token = app.signup("planned").await.token;
    let plan_of = async || {
        let res = app.request(reqwest::Method::GET, "planned.localhost", "/v1/tenant").send().await.expect("tenant");
        res.json::<serde_json::Value>().await.expect("json")["plan"].as_str().unwrap_or_default().to_owned()
    };
    // The running instance has the tenant cached (for a minute) as free.
    assert_eq!(plan_of().await, "free");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
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

#[tokio::test]
async fn the_tenant_commands_suspend_resume_delete_restore_list_and_purge() {
    let (app, vars) = app_and_cli_vars(&[]).await;
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let no_grace: Vec<(&str, &str)> = vars.iter().copied().chain([("PLINTH_TENANT_DELETE_GRACE_DAYS", "0")]).collect();
    let token = app.signup("lives").await.token;
    app.signup("another").await;
    let run = async |args: &[&str]| {
        let out = plinth_exits(args, &vars).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<serde_json::Value>(&stdout).expect("json")
    };
    let status = async || {
        let res = app.on(reqwest::Method::GET, "lives", "/v1/projects", Some(&token)).send().await.expect("projects");
        res.status().as_u16()
    };
    // Each change reaches the running instance within 5 s.
    let within_5_s = async |expected: u16| {
        let changed = Instant::now();
        while status().await != expected {
            assert!(changed.elapsed() < Duration::from_secs(5), "still not {expected} after 5 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(status().await, 200);

    let shown = run(&["tenant", "suspend", "--tenant", "lives", "--reason", "abuse report 7"]).await;
    assert_eq!(shown["state"], "suspended");
    within_5_s(403).await;
    let listed = run(&["tenant", "list", "--state", "suspended"]).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["slug"], "lives");
    assert_eq!(run(&["tenant", "resume", "--tenant", "lives"]).await["state"], "active");
    within_5_s(200).await;

    assert_eq!(run(&["tenant", "delete", "--tenant", "lives"]).await["state"], "deleted");
    within_5_s(404).await;
    assert_eq!(run(&["tenant", "restore", "--tenant", "lives"]).await["state"], "active");
    within_5_s(200).await;
    // Deleted with no grace: past it at once, no longer restorable, and the next purge erases it.
    let out = plinth_exits(&["tenant", "delete", "--tenant", "lives"], &no_grace).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = plinth_exits(&["tenant", "restore", "--tenant", "lives"], &vars).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("grace has run out"));
    let purged = run(&["tenant", "purge"]).await;
    assert_eq!(purged["tenants"], 1, "{purged}");
    let all = run(&["tenant", "list"]).await;
    let slugs: Vec<&str> = all["items"].as_array().expect("items").iter().filter_map(|t| t["slug"].as_str()).collect();
    assert_eq!(slugs, ["another"]);

    let out = plinth_exits(&["tenant", "list", "--state", "asleep"], &vars).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--state"));
    let out = plinth_exits(&["tenant", "restore", "--tenant", "lives"], &vars).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such tenant"));
}

#[tokio::test]
async fn operator_token_prints_a_token_and_the_hash_that_admits_it() {
    let out = plinth_exits(&["operator-token"], &[]).await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let [token, hash] = lines[..] else { panic!("two lines: {stdout}") };
    assert!(token.starts_with("plop_") && token.len() == 48, "{token}");
    let hash = plinth_domain::hex::decode_array::<32>(hash).expect("a hex SHA-256");
    assert!(plinth_domain::values::OperatorTokens::new(vec![hash]).admits(token));
}
