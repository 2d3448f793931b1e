//! Several instances sharing PostgreSQL and Redis, as a fleet runs; and Redis blinking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::clock::ManualClock;
use plinth_domain::ports::Clock;
use plinth_testkit::{PrivateRedis, RedisCluster, redis_prefix, shared_redis_url};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, TestApp};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";
const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A second instance on `first`'s database, with `vars` on top.
async fn sibling(first: &TestApp, vars: &[(&str, &str)]) -> TestApp {
    sibling_on_clock(first, vars, Arc::new(plinth_domain::clock::SystemClock::new())).await
}

/// As [`sibling`], keeping time by `clock`.
async fn sibling_on_clock(first: &TestApp, vars: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestApp {
    let db = first.db.as_ref().expect("the first instance has a database");
    let mut all = vec![
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_DATABASE_OWNER_URL", db.owner_url.as_str()),
        ("PLINTH_JWT_SECRET", SECRET),
        ("PLINTH_ENCRYPTION_KEY", KEY),
    ];
    all.extend_from_slice(vars);
    TestApp::spawn_on_clock(Backend::Memory, &all, clock).await
}

async fn names(app: &TestApp, token: &str) -> Vec<String> {
    let res = app.on(Method::GET, "fleet", "/v1/projects", Some(token)).send().await.expect("list");
    assert_eq!(res.status(), StatusCode::OK);
    let page: Value = res.json().await.expect("page");
    page["items"].as_array().expect("items").iter().map(|p| p["name"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Two instances on one database and one Redis (under a key prefix of their own), on one
/// clock that stands still: nothing either caches in process expires by its ttl, so what an
/// instance learns of the other's writes, it learns from the invalidations announced through
/// Redis.
async fn fleet_of_two() -> (TestApp, TestApp) {
    fleet_of_two_on(Arc::new(ManualClock::new())).await
}

/// As [`fleet_of_two`], on `clock`.
async fn fleet_of_two_on(clock: Arc<dyn Clock>) -> (TestApp, TestApp) {
    let redis = shared_redis_url();
    let prefix = redis_prefix();
    let vars = [("REDIS_URL", redis.as_str()), ("PLINTH_REDIS_PREFIX", prefix.as_str())];
    let db = plinth_testkit::TestDatabase::new().await;
    let a = TestApp::start_wired(&vars, Some(db), clock.clone(), |_| {}).await;
    let b = sibling_on_clock(&a, &vars, clock).await;
    (a, b)
}

/// Returns once every instance hears the others' invalidations (is subscribed), or fails.
async fn in_step(fleet: &[&TestApp]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for app in fleet {
        while !app.plinth.hears_other_instances().await {
            assert!(Instant::now() < deadline, "an instance never subscribed to the invalidations");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_write_on_one_instance_is_seen_by_another_within_a_second() {
    let (a, b) = fleet_of_two().await;
    let token = a.signup("fleet").await.token;
    // Once both instances hear each other, warm B's caches with the empty list.
    in_step(&[&a, &b]).await;
    assert!(names(&b, &token).await.is_empty());
    assert!(names(&b, &token).await.is_empty());

    a.project("fleet", &token, "Seen everywhere").await;
    assert_eq!(names(&a, &token).await, ["Seen everywhere"], "the writer sees it at once");
    let written = Instant::now();
    loop {
        if names(&b, &token).await == ["Seen everywhere"] {
            break;
        }
        assert!(written.elapsed() < Duration::from_secs(1), "B still serves the old list after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reuse_of_a_spent_refresh_token_on_one_instance_ends_the_session_on_another_within_5_s() {
    let clock = Arc::new(ManualClock::new());
    let (a, b) = fleet_of_two_on(clock.clone()).await;
    let s = a.signup("fleet").await;
    in_step(&[&a, &b]).await;
    let refresh = |app: &TestApp, token: String| {
        app.on(Method::POST, "fleet", "/v1/auth/refresh", None)
            .json(&serde_json::json!({"refresh_token": token}))
            .send()
    };
    let res = refresh(&a, s.refresh.clone()).await.expect("refresh");
    assert_eq!(res.status(), StatusCode::OK);
    let access = res.json::<Value>().await.expect("tokens")["access_token"].as_str().expect("token").to_owned();
    // Both instances have checked the new token, and cache its session's marker.
    let me = |app: &TestApp, token: String| app.on(Method::GET, "fleet", "/v1/me", Some(&token)).send();
    for app in [&a, &b, &a, &b] {
        assert_eq!(me(app, access.clone()).await.expect("me").status(), StatusCode::OK);
    }

    clock.advance(Duration::from_secs(11));
    let res = refresh(&b, s.refresh).await.expect("replay");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a replay after the window is reuse");
    let ended = Instant::now();
    loop {
        if me(&a, access.clone()).await.expect("me").status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(ended.elapsed() < Duration::from_secs(5), "A still accepts the ended session's token after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(me(&b, access).await.expect("me").status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tenant_signed_up_on_one_instance_is_found_by_another_within_a_second() {
    let (a, b) = fleet_of_two().await;
    // Once both instances hear each other, have B (and A) remember that no tenant is "acme".
    in_step(&[&a, &b]).await;
    for app in [&b, &b, &a] {
        let res = app.on(Method::GET, "acme", "/v1/tenant", None).send().await.expect("tenant");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    a.signup("acme").await;
    let signed_up = Instant::now();
    loop {
        let res = b.on(Method::GET, "acme", "/v1/tenant", None).send().await.expect("tenant");
        if res.status() == StatusCode::OK {
            let tenant: Value = res.json().await.expect("tenant");
            assert_eq!(tenant["slug"], "acme");
            break;
        }
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(signed_up.elapsed() < Duration::from_secs(1), "B still says no such tenant after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = a.on(Method::GET, "acme", "/v1/tenant", None).send().await.expect("tenant");
    assert_eq!(res.status(), StatusCode::OK, "and the instance that signed it up");
}

#[tokio::test]
async fn two_instances_together_admit_one_quota() {
    let redis = shared_redis_url();
    let prefix = redis_prefix();
    let vars = [("REDIS_URL", redis.as_str()), ("PLINTH_REDIS_PREFIX", prefix.as_str()), ("PLINTH_QUOTA_FREE", "300")];
    let a = TestApp::spawn_with(Backend::Postgres, &vars).await;
    let b = sibling(&a, &vars).await;
    let token = a.signup("fleet").await.token;
    let started = Instant::now();
    let mut admitted = 0u32;
    let mut limited = 0u32;
    for i in 0..330 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = app.on(Method::GET, "fleet", "/v1/projects", Some(&token)).send().await.expect("list");
        match res.status() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // GCRA earns back one request every 200 ms at 300/min.
    let earned = u32::try_from(started.elapsed().as_millis() / 200).unwrap_or(u32::MAX) + 1;
    assert!(admitted >= 300, "the whole quota is admitted: {admitted}");
    assert!(admitted <= 300 + earned, "admitted {admitted}, more than one quota (+{earned} earned back)");
    assert_eq!(admitted + limited, 330);
}

#[tokio::test]
async fn with_redis_killed_nothing_fails_limits_hold_locally_and_the_cache_refills_after() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str()), ("PLINTH_QUOTA_FREE", "40")];
    let app = TestApp::spawn_with(Backend::Postgres, &vars).await;
    let token = app.signup("fleet").await.token;
    app.project("fleet", &token, "Survivor").await;
    assert_eq!(names(&app, &token).await, ["Survivor"]);

    redis.kill();
    let mut statuses = Vec::new();
    for i in 0..60 {
        let started = Instant::now();
        let res = app.on(Method::GET, "fleet", "/v1/projects", Some(&token)).send().await.expect("list");
        assert!(started.elapsed() < Duration::from_secs(2), "request {i} hung for {:?}", started.elapsed());
        statuses.push(res.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "no 5xx while Redis is down: {statuses:?}");
    assert!(statuses.contains(&429), "the local limiter still limits: {statuses:?}");
    // Writes still work and are seen at once (the cache is a pass-through meanwhile).
    let writes = app.on(Method::POST, "fleet", "/v1/projects", Some(&token)).json(&serde_json::json!({"name": "x"}));
    let res = writes.send().await.expect("create");
    assert!(res.status() == StatusCode::CREATED || res.status() == StatusCode::TOO_MANY_REQUESTS, "{}", res.status());

    redis.restart();
    let client = redis::Client::open(url.as_str()).expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let res = app.on(Method::GET, "fleet", "/v1/projects", Some(&token)).send().await.expect("list");
        assert!(res.status() == StatusCode::OK || res.status() == StatusCode::TOO_MANY_REQUESTS);
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS").arg("plinth:*").query_async(&mut conn).await.expect("keys");
        if keys.iter().any(|k| k.contains(":projects:")) && keys.iter().any(|k| k.contains("rl:tenant")) {
            break;
        }
        assert!(Instant::now() < deadline, "the cache and the limiter went back to Redis: {keys:?}");
    }
}

#[tokio::test]
async fn the_cache_and_the_limiter_work_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let app = TestApp::spawn_with(Backend::Postgres, &[("REDIS_URL", urls.as_str()), ("PLINTH_QUOTA_FREE", "8")]).await;
    let token = app.signup("fleet").await.token;
    app.project("fleet", &token, "Clustered").await;
    assert_eq!(names(&app, &token).await, ["Clustered"]);
    assert_eq!(names(&app, &token).await, ["Clustered"]);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = app.on(Method::GET, "fleet", "/v1/projects", Some(&token)).send().await.expect("list");
        statuses.push(res.status().as_u16());
        let policy = res.headers().get("ratelimit-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(policy, "\"tenant\";q=8;w=60");
    }
    assert!(statuses.contains(&429), "the shared limiter limits on a cluster: {statuses:?}");
    let first = urls.split(',').next().expect("a node").to_owned();
    let nodes: Vec<String> = urls.split(',').map(String::from).collect();
    let mut found = Vec::new();
    for node in nodes {
        let client = redis::Client::open(node.as_str()).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS").arg("plinth:*").query_async(&mut conn).await.expect("keys");
        found.extend(keys);
    }
    assert!(found.iter().any(|k| k.contains(":projects:")), "cached pages live in the cluster: {found:?} ({first})");
    assert!(found.iter().any(|k| k.contains("rl:tenant")), "limiter state lives in the cluster: {found:?}");
}

#[tokio::test]
async fn on_a_redis_cluster_invalidations_travel_on_sharded_channels_not_to_every_node() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let prefix = redis_prefix();
    let vars = [("REDIS_URL", urls.as_str()), ("PLINTH_REDIS_PREFIX", prefix.as_str())];
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let a = TestApp::start_wired(&vars, Some(plinth_testkit::TestDatabase::new().await), clock.clone(), |_| {}).await;
    let b = sibling_on_clock(&a, &vars, clock).await;
    let token = a.signup("fleet").await.token;
    in_step(&[&a, &b]).await;
    assert!(names(&b, &token).await.is_empty());
    assert!(names(&b, &token).await.is_empty());

    a.project("fleet", &token, "Sharded").await;
    let written = Instant::now();
    while names(&b, &token).await != ["Sharded"] {
        assert!(written.elapsed() < Duration::from_secs(1), "B still serves the old list after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each node carries only the sharded channels whose slots it owns, each with both
    // instances subscribed; no plain channel is used (PUBLISH would reach every node).
    let mut sharded = Vec::new();
    for node in urls.split(',') {
        let client = redis::Client::open(node).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let plain: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("channels");
        assert!(plain.is_empty(), "no plain pub/sub channel: {plain:?}");
        let mine: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("shard channels");
        for channel in &mine {
            let counts: Vec<redis::Value> =
                redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel).query_async(&mut conn).await.expect("numsub");
            assert_eq!(redis::from_redis_value_ref::<i64>(&counts[1]).ok(), Some(2), "{channel}: both instances");
        }
        assert!(mine.len() < plinth_redis::SHARDS, "a node carries only its own shards: {mine:?}");
        sharded.extend(mine);
    }
    sharded.sort();
    sharded.dedup();
    assert_eq!(sharded.len(), plinth_redis::SHARDS, "every shard is subscribed, on its owner: {sharded:?}");
}

#[tokio::test]
async fn a_revoked_api_key_stops_working_on_every_instance_within_5_s() {
    let (a, b) = fleet_of_two().await;
    let token = a.signup("fleet").await.token;
    in_step(&[&a, &b]).await;
    let res = a
        .on(Method::POST, "fleet", "/v1/api-keys", Some(&token))
        .json(&serde_json::json!({"name": "fleet script", "scopes": ["projects:read"]}))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("key");
    let (id, key) = (created["id"].as_str().expect("id"), created["key"].as_str().expect("key"));
    // Both instances have checked the key and cache its record (the clock stands still, so no
    // ttl ends it).
    for app in [&a, &b, &a, &b] {
        assert_eq!(names(app, key).await, Vec::<String>::new());
    }
    let res = a.on(Method::DELETE, "fleet", &format!("/v1/api-keys/{id}"), Some(&token)).send().await.expect("revoke");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let revoked = Instant::now();
    for app in [&a, &b] {
        loop {
            let res = app.on(Method::GET, "fleet", "/v1/projects", Some(key)).send().await.expect("list");
            if res.status() == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(revoked.elapsed() < Duration::from_secs(5), "a revoked key still works after 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `app` until the fleet tenant's projects answer `status`, failing 5 s after `since`.
async fn answers_within_5_s(app: &TestApp, token: &str, status: StatusCode, since: Instant) {
    loop {
        let res = app.on(Method::GET, "fleet", "/v1/projects", Some(token)).send().await.expect("list");
        if res.status() == status {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(5), "still {} after 5 s, not {status}", res.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn suspension_resumption_and_deletion_reach_every_instance_within_5_s() {
    let (a, b) = fleet_of_two().await;
    let token = a.signup("fleet").await.token;
    in_step(&[&a, &b]).await;
    // Both instances have the tenant cached (the clock stands still: no ttl ends it).
    for app in [&a, &b, &a, &b] {
        assert_eq!(names(app, &token).await, Vec::<String>::new());
    }
    let slug = plinth_domain::values::Slug::parse("fleet").expect("slug");
    a.plinth.suspend(&slug, Some("test")).await.expect("suspend");
    let changed = Instant::now();
    for app in [&a, &b] {
        answers_within_5_s(app, &token, StatusCode::FORBIDDEN, changed).await;
    }
    b.plinth.resume(&slug).await.expect("resume");
    let changed = Instant::now();
    for app in [&a, &b] {
        answers_within_5_s(app, &token, StatusCode::OK, changed).await;
    }
    a.plinth.delete_tenant(&slug).await.expect("delete");
    let changed = Instant::now();
    for app in [&a, &b] {
        answers_within_5_s(app, &token, StatusCode::NOT_FOUND, changed).await;
    }
}
