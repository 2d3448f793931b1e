//! Configuration parsing: defaults, and errors that name the variable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

fn error_variable(vars: &[(&str, &str)]) -> &'static str {
    config(vars).expect_err("config should be refused").variable
}

#[test]
fn an_empty_environment_is_the_embedded_default() {
    let c = config(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.base_domain.as_str(), "localhost");
    assert!(c.database.is_none());
    assert!(c.redis_urls.is_empty());
    assert_eq!(c.cache, CacheLevels { l1: true, l2: true, l1_bytes: 32 << 20, data_ttl: Duration::from_secs(30) });
    assert_eq!(c.jwt.keys, JwtKeys::Hs256(None));
    assert_eq!((c.jwt.issuer.as_str(), c.jwt.audience.as_str()), ("plinth", "plinth-api"));
    assert_eq!(c.jwt.ttl.as_secs(), 900);
    assert_eq!(
        c.sessions,
        SessionConfig {
            idle: Duration::from_secs(14 * 86_400),
            max: Duration::from_secs(90 * 86_400),
            reuse_window: Duration::from_secs(10),
        }
    );
    let quota = |name: &str| c.plans.get(&name.parse().unwrap()).quota.per_minute.get();
    assert_eq!((quota("free"), quota("pro"), quota("enterprise")), (300, 3000, 30000));
    assert_eq!(c.quotas.ip.per_minute.get(), 60);
    assert_eq!(c.quotas.login.per_minute.get(), 10);
    assert_eq!(c.ipv6_prefix, 64);
    assert!(c.worker);
    assert!(!c.server_timing);
    assert_eq!((c.shutdown_drain.as_secs(), c.shutdown_grace.as_secs()), (5, 30));
    assert_eq!(c.webhooks.max_attempts, 8);
    assert_eq!(c.tenant_max_pending_jobs, 10_000);
    assert!(c.log.json);
}

#[test]
fn each_bad_value_names_its_variable() {
    assert_eq!(error_variable(&[("PLINTH_LISTEN", "nowhere")]), "PLINTH_LISTEN");
    assert_eq!(error_variable(&[("PLINTH_QUOTA_FREE", "0")]), "PLINTH_QUOTA_FREE");
    assert_eq!(error_variable(&[("PLINTH_IP_QUOTA", "lots")]), "PLINTH_IP_QUOTA");
    assert_eq!(error_variable(&[("PLINTH_PLANS_FILE", "/nonexistent/plans.json")]), "PLINTH_PLANS_FILE");
    let bad = std::env::temp_dir().join(format!("plinth-bad-plans-{:016x}.json", rand::random::<u64>()));
    std::fs::write(&bad, r#"{"plans": [{"name": "gold", "requests_per_minute": 5}]}"#).unwrap();
    let refused = config(&[("PLINTH_PLANS_FILE", bad.to_str().unwrap())]).expect_err("no free plan");
    let _ = std::fs::remove_file(&bad);
    assert_eq!(refused.variable, "PLINTH_PLANS_FILE");
    assert!(refused.to_string().contains("free"), "{refused}");
    assert_eq!(error_variable(&[("PLINTH_CACHE", "l3")]), "PLINTH_CACHE");
    assert_eq!(error_variable(&[("PLINTH_JWT_ALGORITHM", "none")]), "PLINTH_JWT_ALGORITHM");
    assert_eq!(error_variable(&[("PLINTH_JWT_SECRET", "short")]), "PLINTH_JWT_SECRET");
    assert_eq!(error_variable(&[("PLINTH_TRUSTED_PROXIES", "10.0.0.0/33")]), "PLINTH_TRUSTED_PROXIES");
    assert_eq!(error_variable(&[("PLINTH_IPV6_PREFIX", "31")]), "PLINTH_IPV6_PREFIX");
    assert_eq!(error_variable(&[("PLINTH_IPV6_PREFIX", "129")]), "PLINTH_IPV6_PREFIX");
    assert_eq!(error_variable(&[("PLINTH_IPV6_PREFIX", "/64")]), "PLINTH_IPV6_PREFIX");
    assert_eq!(error_variable(&[("PLINTH_WORKER", "yes please")]), "PLINTH_WORKER");
    assert_eq!(error_variable(&[("PLINTH_SERVER_TIMING", "on")]), "PLINTH_SERVER_TIMING");
    assert_eq!(error_variable(&[("PLINTH_LOG_FORMAT", "xml")]), "PLINTH_LOG_FORMAT");
    assert_eq!(error_variable(&[("PLINTH_TENANT_MAX_PENDING_JOBS", "0")]), "PLINTH_TENANT_MAX_PENDING_JOBS");
    assert_eq!(error_variable(&[("PLINTH_TENANT_MAX_PENDING_JOBS", "many")]), "PLINTH_TENANT_MAX_PENDING_JOBS");
    assert_eq!(error_variable(&[("PLINTH_ENCRYPTION_KEY", "not base64!")]), "PLINTH_ENCRYPTION_KEY");
    assert_eq!(error_variable(&[("PLINTH_ENCRYPTION_KEY", "c2hvcnQ=")]), "PLINTH_ENCRYPTION_KEY");
    assert_eq!(error_variable(&[("REDIS_URL", "http://x")]), "REDIS_URL");
    assert_eq!(error_variable(&[("PLINTH_JWT_ALGORITHM", "EdDSA")]), "PLINTH_JWT_PRIVATE_KEY_FILE");
    assert_eq!(
        error_variable(&[("PLINTH_DB_POOL_SIZE", "0"), ("DATABASE_URL", "postgres://x")]),
        "PLINTH_DB_POOL_SIZE"
    );
}

#[test]
fn a_database_requires_a_jwt_secret_and_an_encryption_key() {
    assert_eq!(error_variable(&[("DATABASE_URL", "postgres://x")]), "PLINTH_JWT_SECRET");
    let secret = "s".repeat(32);
    assert_eq!(
        error_variable(&[("DATABASE_URL", "postgres://x"), ("PLINTH_JWT_SECRET", &secret)]),
        "PLINTH_ENCRYPTION_KEY"
    );
}

#[test]
fn behind_a_pooler_the_listener_takes_a_direct_url_and_the_statement_cache_may_be_off() {
    let secret = "s".repeat(32);
    let key = "A".repeat(43) + "=";
    let base = [
        ("DATABASE_URL", "postgres://plinth_app@127.0.0.1:6432/plinth"),
        ("PLINTH_JWT_SECRET", secret.as_str()),
        ("PLINTH_ENCRYPTION_KEY", key.as_str()),
    ];
    let db = config(&base).unwrap().database.unwrap();
    assert!(db.statement_cache, "on by default");
    assert!(db.direct_url.is_none(), "LISTEN goes through DATABASE_URL by default");
    let pooled = [
        &base[..],
        &[
            ("PLINTH_DATABASE_DIRECT_URL", "postgres://plinth_app@127.0.0.1:5432/plinth"),
            ("PLINTH_DATABASE_STATEMENT_CACHE", "false"),
        ],
    ]
    .concat();
    let db = config(&pooled).unwrap().database.unwrap();
    assert!(!db.statement_cache);
    assert_eq!(
        db.direct_url.map(|u| u.expose().clone()).as_deref(),
        Some("postgres://plinth_app@127.0.0.1:5432/plinth")
    );
    let bad = [&base[..], &[("PLINTH_DATABASE_STATEMENT_CACHE", "sometimes")]].concat();
    assert_eq!(error_variable(&bad), "PLINTH_DATABASE_STATEMENT_CACHE");
}

#[test]
fn error_messages_never_show_the_value() {
    let err = config(&[("PLINTH_JWT_SECRET", "hunter2-but-short")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let c = config(&[("PLINTH_METRICS_TOKEN", "sekrit-token")]).unwrap();
    assert!(!format!("{c:?}").contains("sekrit"));
}

#[test]
fn lists_and_levels_parse() {
    let c = config(&[
        ("PLINTH_CACHE", "l2"),
        ("PLINTH_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16"),
        ("REDIS_URL", "redis://a:1,redis://b:2"),
        ("PLINTH_BASE_DOMAIN", "Example.COM"),
    ])
    .unwrap();
    assert_eq!(c.cache, CacheLevels { l1: false, l2: true, l1_bytes: 32 << 20, data_ttl: Duration::from_secs(30) });
    assert_eq!(c.trusted_proxies.len(), 2);
    assert_eq!(c.redis_urls.len(), 2);
    assert_eq!(c.base_domain.as_str(), "example.com");
    assert_eq!(
        config(&[("PLINTH_CACHE", "off")]).unwrap().cache,
        CacheLevels { l1: false, l2: false, l1_bytes: 32 << 20, data_ttl: Duration::from_secs(30) }
    );
}

#[test]
fn the_l1_bound_is_configurable_in_mebibytes() {
    assert_eq!(config(&[("PLINTH_L1_CACHE_MB", "256")]).unwrap().cache.l1_bytes, 256 << 20);
    for bad in ["0", "-1", "lots", "2000000"] {
        assert!(config(&[("PLINTH_L1_CACHE_MB", bad)]).is_err(), "{bad} was accepted");
    }
}

#[test]
fn the_limiter_lease_is_a_percentage_of_the_quota() {
    assert_eq!(config(&[]).unwrap().limit_lease_percent, 5);
    assert_eq!(config(&[("PLINTH_LIMIT_LEASE_PERCENT", "0")]).unwrap().limit_lease_percent, 0);
    for bad in ["-1", "101", "some"] {
        assert!(config(&[("PLINTH_LIMIT_LEASE_PERCENT", bad)]).is_err(), "{bad} was accepted");
    }
}

#[test]
fn the_data_ttl_is_configurable_and_zero_turns_data_caching_off() {
    assert_eq!(config(&[("PLINTH_CACHE_TTL_S", "0")]).unwrap().cache.data_ttl, Duration::ZERO);
    assert_eq!(config(&[("PLINTH_CACHE_TTL_S", "5")]).unwrap().cache.data_ttl, Duration::from_secs(5));
    for bad in ["-1", "soon", "86401"] {
        assert!(config(&[("PLINTH_CACHE_TTL_S", bad)]).is_err(), "{bad} was accepted");
    }
}

#[test]
fn migrating_reads_only_the_owner_url_and_the_app_url() {
    let vars: HashMap<&str, &str> = [
        ("DATABASE_URL", "postgres://plinth_app:pw@127.0.0.1/plinth"),
        ("PLINTH_DATABASE_OWNER_URL", "postgres://postgres@127.0.0.1/plinth"),
    ]
    .into();
    let migrate = MigrateConfig::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(migrate.owner_url.expose(), "postgres://postgres@127.0.0.1/plinth");
    assert_eq!(
        migrate.app_url.as_ref().map(|u| u.expose().as_str()),
        Some("postgres://plinth_app:pw@127.0.0.1/plinth")
    );
    // Serving with the same variables still needs its secrets.
    assert!(Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).is_err());
    let direct: HashMap<&str, &str> = [
        ("DATABASE_URL", "postgres://plinth_app:pooler@127.0.0.1:6432/plinth"),
        ("PLINTH_DATABASE_DIRECT_URL", "postgres://plinth_app:pw@127.0.0.1/plinth"),
        ("PLINTH_DATABASE_OWNER_URL", "postgres://postgres@127.0.0.1/plinth"),
    ]
    .into();
    let migrate = MigrateConfig::from_lookup(|name| direct.get(name).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(
        migrate.app_url.as_ref().map(|u| u.expose().as_str()),
        Some("postgres://plinth_app:pw@127.0.0.1/plinth"),
        "the direct URL's password, not the pooler's"
    );
    let missing = MigrateConfig::from_lookup(|_| None).expect_err("the owner's URL is required");
    assert_eq!(missing.variable, "PLINTH_DATABASE_OWNER_URL");
}

#[test]
fn the_server_limits_have_deliberate_defaults_and_are_configurable() {
    let c = config(&[]).unwrap();
    assert_eq!(
        c.server,
        ServerLimits {
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            keep_alive: Duration::from_secs(5)
        }
    );
    let c = config(&[("PLINTH_BODY_TIMEOUT_S", "1"), ("PLINTH_MAX_CONNECTIONS", "64"), ("PLINTH_KEEP_ALIVE_S", "0")])
        .unwrap();
    assert_eq!(
        c.server,
        ServerLimits { body_timeout: Duration::from_secs(1), max_connections: 64, keep_alive: Duration::ZERO }
    );
    assert_eq!(error_variable(&[("PLINTH_BODY_TIMEOUT_S", "0")]), "PLINTH_BODY_TIMEOUT_S");
    assert_eq!(error_variable(&[("PLINTH_MAX_CONNECTIONS", "0")]), "PLINTH_MAX_CONNECTIONS");
    assert_eq!(error_variable(&[("PLINTH_KEEP_ALIVE_S", "soon")]), "PLINTH_KEEP_ALIVE_S");
}

#[test]
fn the_ipv6_prefix_is_a_length_from_32_to_128() {
    for (raw, prefix) in [("32", 32), ("48", 48), ("128", 128)] {
        assert_eq!(config(&[("PLINTH_IPV6_PREFIX", raw)]).unwrap().ipv6_prefix, prefix);
    }
    assert_eq!(config(&[]).unwrap().ipv6_prefix, 64);
    for bad in ["31", "129", "/64", "many"] {
        assert_eq!(error_variable(&[("PLINTH_IPV6_PREFIX", bad)]), "PLINTH_IPV6_PREFIX", "{bad} was accepted");
    }
}

#[test]
fn server_timing_is_off_unless_asked_for() {
    assert!(!config(&[("PLINTH_SERVER_TIMING", "false")]).unwrap().server_timing);
    assert!(config(&[("PLINTH_SERVER_TIMING", "true")]).unwrap().server_timing);
}

#[test]
fn the_docs_page_is_on_unless_turned_off() {
    assert!(config(&[]).unwrap().docs);
    assert!(!config(&[("PLINTH_DOCS", "false")]).unwrap().docs);
    assert_eq!(error_variable(&[("PLINTH_DOCS", "maybe")]), "PLINTH_DOCS");
}
