//! Configuration: read once from the environment into typed structs. A bad value stops
//! start-up with a message that names the variable; secrets can't be printed by accident.

mod env;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use plinth_domain::host::BaseDomain;
use plinth_domain::ports::Quota;
use plinth_domain::usecases::Quotas;

use env::Env;
pub use env::{ConfigError, Secret};

/// Which cache levels are in use (`PLINTH_CACHE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLevels {
    /// The in-process cache.
    pub l1: bool,
    /// The shared (Redis) cache.
    pub l2: bool,
    /// The in-process cache's bound, in bytes (`PLINTH_L1_CACHE_MB`).
    pub l1_bytes: u64,
    /// How long tenant data (project pages, projects) stays cached (`PLINTH_CACHE_TTL_S`);
    /// zero reads it from PostgreSQL every time, while tenants and token checks stay cached.
    pub data_ttl: Duration,
}

/// How access tokens are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// HS256 with this secret; `None` for a random one per start (embedded mode only).
    Hs256(Option<Secret<Vec<u8>>>),
    /// EdDSA or RS256 with PEM key files; file names are `kid`s.
    Asymmetric {
        /// `EdDSA` or `RS256`.
        algorithm: AsymmetricAlgorithm,
        /// The signing key.
        private_key_file: PathBuf,
        /// Every key tokens may be verified with.
        public_key_files: Vec<PathBuf>,
    },
}

/// The asymmetric algorithms plinth signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricAlgorithm {
    /// Ed25519.
    EdDsa,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
}

/// Access token settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Keys and algorithm.
    pub keys: JwtKeys,
    /// `iss`, written and required.
    pub issuer: String,
    /// `aud`, written and required.
    pub audience: String,
    /// Token lifetime.
    pub ttl: Duration,
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The API's connection (as `plinth_app`).
    pub url: Secret<String>,
    /// The owner's connection, for migrations.
    pub owner_url: Option<Secret<String>>,
    /// Pool size.
    pub pool_size: usize,
    /// Longest wait for a pooled connection.
    pub pool_timeout: Duration,
    /// Longest statement.
    pub statement_timeout: Duration,
    /// `PLINTH_DATABASE_REPLICA_URLS`: streaming standbys for the reads that may lag (as
    /// `plinth_app`); empty: every read goes to the primary.
    pub replica_urls: Vec<Secret<String>>,
    /// `PLINTH_REPLICA_MAX_LAG_MS`: a replica lagging more is not read.
    pub replica_max_lag: Duration,
    /// `PLINTH_DATABASE_DIRECT_URL`: PostgreSQL itself, when `url` is a pooler (for the job
    /// queue's `LISTEN`); `None` listens through `url`.
    pub direct_url: Option<Secret<String>>,
    /// `PLINTH_DATABASE_STATEMENT_CACHE`: whether connections keep prepared statements
    /// across transactions (off behind PgBouncer in transaction mode).
    pub statement_cache: bool,
}

/// Log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter directive, e.g. `info` or `plinth=debug,info`.
    pub filter: String,
    /// JSON lines (default) or human-friendly text.
    pub json: bool,
    /// Where spans are exported; `None` (no OTLP endpoint configured): traces are off.
    pub traces: Option<TraceConfig>,
}

/// OpenTelemetry traces, from the standard `OTEL_*` variables: on when
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise). The SDK reads the
/// rest itself: `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// The URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` followed by `/v1/traces`.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME` (default `plinth`).
    pub service_name: String,
}

/// Webhook delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Allow private and loopback targets.
    pub allow_private: bool,
    /// When non-empty, targets must lie inside these networks.
    pub allowed_cidrs: Vec<IpNet>,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// The first retry's delay.
    pub backoff: Duration,
    /// An endpoint whose attempts have all failed for this long is disabled…
    pub disable_after: Duration,
    /// …once at least this many have.
    pub disable_min_failures: u32,
}

/// The HTTP server's limits on slow and idle clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `PLINTH_BODY_TIMEOUT_S`: how long a request's body may take to arrive once plinth
    /// starts reading it; later is a 408 and the connection closes.
    pub body_timeout: Duration,
    /// `PLINTH_MAX_CONNECTIONS`: open connections the process holds at most (shared out
    /// between the worker threads); further ones wait in the listen backlog.
    pub max_connections: usize,
    /// `PLINTH_KEEP_ALIVE_S`: how long an idle connection stays open between requests; zero
    /// closes each connection after its response.
    pub keep_alive: Duration,
}

/// How long sessions live, and the window in which a spent refresh token is a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// `PLINTH_SESSION_IDLE_S`: a session not refreshed for this long ends.
    pub idle: Duration,
    /// `PLINTH_SESSION_MAX_S`: a session ends this long after its login.
    pub max: Duration,
    /// `PLINTH_REFRESH_REUSE_S`: a spent refresh token presented again within this gets the
    /// same successor (a retry) instead of ending the session.
    pub reuse_window: Duration,
}

/// The audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// `PLINTH_AUDIT`: record changes in the audit log (default true).
    pub enabled: bool,
    /// `PLINTH_AUDIT_RETENTION_DAYS`: entries older than this are pruned (default 365), the
    /// chain kept verifiable by a checkpoint.
    pub retention: Duration,
}

/// Outbound email and the account flows that send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// `PLINTH_SMTP_URL` (`smtp://user:pass@host:port`, `smtps://…`); `None` writes each
    /// message to the log instead.
    pub smtp_url: Option<Secret<String>>,
    /// `PLINTH_SMTP_CA_FILE`: PEM roots to trust besides the system's (a private relay).
    pub smtp_ca_file: Option<PathBuf>,
    /// `PLINTH_EMAIL_FROM`: the `From` of every message.
    pub from: String,
    /// `PLINTH_PUBLIC_URL_TEMPLATE` with `{base_domain}` filled in: a tenant's public URL,
    /// `{slug}` standing for its slug.
    pub public_url: String,
    /// `PLINTH_INVITATION_TTL_S`.
    pub invitation_ttl: Duration,
    /// `PLINTH_RESET_TTL_S`.
    pub reset_ttl: Duration,
    /// `PLINTH_VERIFY_TTL_S`.
    pub verify_ttl: Duration,
    /// `PLINTH_REQUIRE_VERIFIED_EMAIL`: unverified users' writes answer 403 `email_unverified`.
    pub require_verified: bool,
}

impl EmailConfig {
    /// The domain of `from` (what `Message-ID`s end with).
    pub fn from_domain(&self) -> &str {
        let address = self.from.rsplit_once('<').map_or(self.from.as_str(), |(_, a)| a.trim_end_matches('>'));
        address.rsplit_once('@').map_or("localhost", |(_, d)| d.trim())
    }
}

/// Everything plinth reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `PLINTH_LISTEN`.
    pub listen: SocketAddr,
    /// `PLINTH_BASE_DOMAIN`.
    pub base_domain: BaseDomain,
    /// `DATABASE_URL` and friends; `None` for in-memory storage.
    pub database: Option<DatabaseConfig>,
    /// `REDIS_URL`: one URL, or several for a cluster; empty for none.
    pub redis_urls: Vec<Secret<String>>,
    /// `PLINTH_REDIS_PREFIX`: every Redis key starts with it (default `plinth:`).
    pub redis_prefix: String,
    /// `PLINTH_CACHE`.
    pub cache: CacheLevels,
    /// The `PLINTH_JWT_*` settings and `PLINTH_TOKEN_TTL`.
    pub jwt: JwtConfig,
    /// `PLINTH_IP_QUOTA`, `PLINTH_LOGIN_QUOTA`, `PLINTH_MAILBOX_QUOTA`.
    pub quotas: Quotas,
    /// `PLINTH_PLANS_FILE`, else the built-in plans with `PLINTH_QUOTA_*`.
    pub plans: plinth_domain::plans::Plans,
    /// `PLINTH_LIMIT_LEASE_PERCENT`: with Redis, the share of a quota one instance may take
    /// from Redis at once and spend locally; 0 asks Redis for every request.
    pub limit_lease_percent: u32,
    /// `PLINTH_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpNet>,
    /// `PLINTH_IPV6_PREFIX`: the per-address limits count an IPv6 client by this prefix
    /// (64: its /64, which one subscriber usually has whole).
    pub ipv6_prefix: u8,
    /// `PLINTH_METRICS_TOKEN`.
    pub metrics_token: Option<Secret<String>>,
    /// `PLINTH_SERVER_TIMING`: answer every request with a `Server-Timing` header.
    pub server_timing: bool,
    /// `PLINTH_DOCS`: serve the API reference page at `/docs`.
    pub docs: bool,
    /// `PLINTH_ENCRYPTION_KEY`; `None` for a random one per start (embedded mode only).
    pub encryption_key: Option<Secret<[u8; 32]>>,
    /// `PLINTH_WEBHOOK_*`.
    pub webhooks: WebhookConfig,
    /// `PLINTH_WORKER`.
    pub worker: bool,
    /// `PLINTH_WORKER_CONCURRENCY`, `PLINTH_JOB_RESCUE_AFTER_S`, `PLINTH_RETENTION_DAYS`.
    pub worker_settings: crate::worker::WorkerSettings,
    /// `PLINTH_BODY_TIMEOUT_S`, `PLINTH_MAX_CONNECTIONS`, `PLINTH_KEEP_ALIVE_S`.
    pub server: ServerLimits,
    /// `PLINTH_TENANT_MAX_PENDING_JOBS`: a write that would take a tenant past this many
    /// pending jobs answers 429 `queue_full`.
    pub tenant_max_pending_jobs: u64,
    /// `PLINTH_SESSION_IDLE_S`, `PLINTH_SESSION_MAX_S`, `PLINTH_REFRESH_REUSE_S`.
    pub sessions: SessionConfig,
    /// `PLINTH_SMTP_*`, `PLINTH_EMAIL_FROM`, `PLINTH_PUBLIC_URL_TEMPLATE`, the links' lifetimes.
    pub email: EmailConfig,
    /// `PLINTH_AUDIT`, `PLINTH_AUDIT_RETENTION_DAYS`.
    pub audit: AuditConfig,
    /// `PLINTH_TENANT_DELETE_GRACE_DAYS`: how long a deleted tenant's data is kept (and can
    /// be restored) before it is erased (default 30).
    pub tenant_delete_grace: Duration,
    /// `PLINTH_EXPORTS_PER_INSTANCE`: tenant exports one instance runs at once (default 4).
    pub exports_per_instance: usize,
    /// `PLINTH_OPERATOR_TOKEN_HASHES`: the SHA-256 (hex) of each operator token `/admin/v1`
    /// accepts; empty (the default) turns the operator API off.
    pub operator_token_hashes: Vec<[u8; 32]>,
    /// `PLINTH_SHUTDOWN_DRAIN_S`.
    pub shutdown_drain: Duration,
    /// `PLINTH_SHUTDOWN_GRACE_S`.
    pub shutdown_grace: Duration,
    /// `PLINTH_LOG`, `PLINTH_LOG_FORMAT`.
    pub log: LogConfig,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let database = match env.string("DATABASE_URL") {
            None => None,
            Some(url) => Some(DatabaseConfig {
                url: Secret::new(url),
                owner_url: env.string("PLINTH_DATABASE_OWNER_URL").map(Secret::new),
                pool_size: env.parse_in("PLINTH_DB_POOL_SIZE", 16, 1..=1024)?,
                pool_timeout: Duration::from_millis(env.parse_in("PLINTH_DB_POOL_TIMEOUT_MS", 2000, 1..=600_000)?),
                statement_timeout: Duration::from_millis(env.parse_in(
                    "PLINTH_DB_STATEMENT_TIMEOUT_MS",
                    5000,
                    1..=3_600_000,
                )?),
                replica_urls: env.list("PLINTH_DATABASE_REPLICA_URLS").into_iter().map(Secret::new).collect(),
                replica_max_lag: Duration::from_millis(env.parse_in(
                    "PLINTH_REPLICA_MAX_LAG_MS",
                    1000,
                    1..=3_600_000,
                )?),
                direct_url: env.string("PLINTH_DATABASE_DIRECT_URL").map(Secret::new),
                statement_cache: env.parse("PLINTH_DATABASE_STATEMENT_CACHE", true)?,
            }),
        };
        let persistent = database.is_some();
        Ok(Self {
            listen: env.parse("PLINTH_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            base_domain: BaseDomain::new(&env.string("PLINTH_BASE_DOMAIN").unwrap_or_else(|| "localhost".into())),
            database,
            redis_urls: env
                .list("REDIS_URL")
                .into_iter()
                .map(|u| {
                    if u.starts_with("redis://") || u.starts_with("rediss://") {
                        Ok(Secret::new(u))
                    } else {
                        Err(ConfigError::new("REDIS_URL", "each URL must start with redis:// or rediss://"))
                    }
                })
                .collect::<Result<_, _>>()?,
            redis_prefix: env.string("PLINTH_REDIS_PREFIX").unwrap_or_else(|| "plinth:".into()),
            cache: cache_levels(&env)?,
            jwt: jwt_config(&env, persistent)?,
            plans: plans(&env)?,
            quotas: Quotas {
                ip: quota(&env, "PLINTH_IP_QUOTA", 60)?,
                login: quota(&env, "PLINTH_LOGIN_QUOTA", 10)?,
                mailbox: quota(&env, "PLINTH_MAILBOX_QUOTA", 3)?,
            },
            limit_lease_percent: env.parse_in("PLINTH_LIMIT_LEASE_PERCENT", 5, 0..=100)?,
            trusted_proxies: env.cidrs("PLINTH_TRUSTED_PROXIES")?,
            ipv6_prefix: env.parse_in("PLINTH_IPV6_PREFIX", 64, 32..=128)?,
            metrics_token: env.string("PLINTH_METRICS_TOKEN").map(Secret::new),
            server_timing: env.parse("PLINTH_SERVER_TIMING", false)?,
            docs: env.parse("PLINTH_DOCS", true)?,
            encryption_key: encryption_key(&env, persistent)?,
            webhooks: WebhookConfig {
                allow_private: env.parse("PLINTH_WEBHOOK_ALLOW_PRIVATE", false)?,
                allowed_cidrs: env.cidrs("PLINTH_WEBHOOK_ALLOWED_CIDRS")?,
                max_attempts: env.parse_in("PLINTH_WEBHOOK_MAX_ATTEMPTS", 8, 1..=100)?,
                backoff: Duration::from_millis(env.parse_in("PLINTH_WEBHOOK_BACKOFF_MS", 1000, 1..=3_600_000)?),
                disable_after: Duration::from_secs(env.parse_in(
                    "PLINTH_WEBHOOK_DISABLE_AFTER_S",
                    5 * 86_400,
                    1..=365 * 86_400,
                )?),
                disable_min_failures: env.parse_in("PLINTH_WEBHOOK_DISABLE_MIN_FAILURES", 10, 1..=1_000_000)?,
            },
            audit: AuditConfig {
                enabled: env.parse("PLINTH_AUDIT", true)?,
                retention: Duration::from_secs(86_400 * env.parse_in("PLINTH_AUDIT_RETENTION_DAYS", 365, 30..=36_500)?),
            },
            worker: env.parse("PLINTH_WORKER", true)?,
            worker_settings: crate::worker::WorkerSettings {
                concurrency: env.parse_in("PLINTH_WORKER_CONCURRENCY", 4, 1..=256)?,
                rescue_after: Duration::from_secs(env.parse_in("PLINTH_JOB_RESCUE_AFTER_S", 60, 1..=86_400)?),
                retention: Duration::from_secs(86_400 * env.parse_in("PLINTH_RETENTION_DAYS", 30, 1..=3650)?),
            },
            server: ServerLimits {
                body_timeout: Duration::from_secs(env.parse_in(
                    "PLINTH_BODY_TIMEOUT_S",
                    crate::api::extract::DEFAULT_BODY_TIMEOUT.as_secs(),
                    1..=3600,
                )?),
                max_connections: env.parse_in("PLINTH_MAX_CONNECTIONS", 1024, 1..=1_000_000)?,
                keep_alive: Duration::from_secs(env.parse_in("PLINTH_KEEP_ALIVE_S", 5, 0..=3600)?),
            },
            tenant_max_pending_jobs: env.parse_in(
                "PLINTH_TENANT_MAX_PENDING_JOBS",
                plinth_domain::ports::DEFAULT_MAX_PENDING_JOBS,
                1..=100_000_000,
            )?,
            sessions: SessionConfig {
                idle: Duration::from_secs(env.parse_in("PLINTH_SESSION_IDLE_S", 14 * 86_400, 60..=31_536_000)?),
                max: Duration::from_secs(env.parse_in("PLINTH_SESSION_MAX_S", 90 * 86_400, 60..=315_360_000)?),
                reuse_window: Duration::from_secs(env.parse_in("PLINTH_REFRESH_REUSE_S", 10, 0..=300)?),
            },
            email: email_config(&env)?,
            tenant_delete_grace: Duration::from_secs(
                86_400 * env.parse_in("PLINTH_TENANT_DELETE_GRACE_DAYS", 30, 0..=3650)?,
            ),
            operator_token_hashes: operator_token_hashes(&env)?,
            exports_per_instance: env.parse_in("PLINTH_EXPORTS_PER_INSTANCE", 4, 1..=64)?,
            shutdown_drain: Duration::from_secs(env.parse_in("PLINTH_SHUTDOWN_DRAIN_S", 5, 0..=3600)?),
            shutdown_grace: Duration::from_secs(env.parse_in("PLINTH_SHUTDOWN_GRACE_S", 30, 0..=3600)?),
            log: log_config(&env)?,
        })
    }
}

/// What `plinth migrate` reads, and nothing more: migrating needs the owner's connection, and
/// `PLINTH_DATABASE_DIRECT_URL` (else `DATABASE_URL`) only for the password `plinth_app` is
/// given, never the runtime secrets (an operator who migrates need not hold the JWT secret or
/// the encryption key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateConfig {
    /// `PLINTH_DATABASE_OWNER_URL`: the schema owner's connection (required).
    pub owner_url: Secret<String>,
    /// `PLINTH_DATABASE_DIRECT_URL`, else `DATABASE_URL`: the API's connection to PostgreSQL
    /// itself (not through a pooler, whose passwords may be its own), whose password (if any)
    /// `plinth_app` is given.
    pub app_url: Option<Secret<String>>,
    /// `PLINTH_LOG`, `PLINTH_LOG_FORMAT`.
    pub log: LogConfig,
}

impl MigrateConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        Ok(Self {
            owner_url: env
                .string("PLINTH_DATABASE_OWNER_URL")
                .map(Secret::new)
                .ok_or_else(|| ConfigError::new("PLINTH_DATABASE_OWNER_URL", "is required by plinth migrate"))?,
            app_url: env.string("PLINTH_DATABASE_DIRECT_URL").or_else(|| env.string("DATABASE_URL")).map(Secret::new),
            log: log_config(&env)?,
        })
    }
}

fn log_config(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        filter: env.string("PLINTH_LOG").unwrap_or_else(|| "info".into()),
        json: match env.string("PLINTH_LOG_FORMAT").as_deref() {
            None | Some("json") => true,
            Some("pretty") => false,
            Some(_) => return Err(ConfigError::new("PLINTH_LOG_FORMAT", "must be json or pretty")),
        },
        traces: trace_config(env)?,
    })
}

/// [`TraceConfig`] from the standard variables; `None` when no endpoint is set. Only OTLP over
/// HTTP with protobuf is built in: another `OTEL_EXPORTER_OTLP_PROTOCOL` is refused.
fn trace_config(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Option<TraceConfig>, ConfigError> {
    const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    let off = env.string("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env.string("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint = match (env.string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env.string("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        _ if off => return Ok(None),
        (Some(url), _) => url,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    for name in [PROTOCOL, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
        if env.string(name).is_some_and(|p| p != "http/protobuf") {
            return Err(ConfigError::new(name, "must be http/protobuf (the one OTLP transport built in)"));
        }
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", "must be an http:// or https:// URL"));
    }
    let service_name = env.string("OTEL_SERVICE_NAME").unwrap_or_else(|| "plinth".into());
    Ok(Some(TraceConfig { endpoint, service_name }))
}

/// The plans of `PLINTH_PLANS_FILE` (JSON: `{"plans": [{"name", "requests_per_minute", "limits":
/// {"members", "projects", "webhooks", "api_keys"}}]}`, a limit `null` or absent for none); else
/// `free`, `pro` and `enterprise` with the `PLINTH_QUOTA_*` quotas.
fn plans(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<plinth_domain::plans::Plans, ConfigError> {
    const NAME: &str = "PLINTH_PLANS_FILE";
    let Some(path) = env.string(NAME) else {
        return Ok(plinth_domain::plans::Plans::built_in(
            quota(env, "PLINTH_QUOTA_FREE", 300)?,
            quota(env, "PLINTH_QUOTA_PRO", 3000)?,
            quota(env, "PLINTH_QUOTA_ENTERPRISE", 30000)?,
        ));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::new(NAME, format!("can't read {path}: {e}")))?;
    plinth_domain::plans::Plans::from_json(&text).map_err(|e| ConfigError::new(NAME, format!("{path}: {e}")))
}

fn quota(env: &Env<impl Fn(&str) -> Option<String>>, name: &'static str, default: u32) -> Result<Quota, ConfigError> {
    let n: u32 = env.parse_in(name, default, 1..=10_000_000)?;
    Quota::per_minute(n).ok_or_else(|| ConfigError::new(name, "must be at least 1"))
}

fn cache_levels(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<CacheLevels, ConfigError> {
    let raw = env.string("PLINTH_CACHE").unwrap_or_else(|| "l1,l2".into());
    let l1_mb: u64 = env.parse_in("PLINTH_L1_CACHE_MB", 32, 1..=1_048_576)?;
    let data_ttl = Duration::from_secs(env.parse_in("PLINTH_CACHE_TTL_S", 30, 0..=86_400)?);
    let mut levels = CacheLevels { l1: false, l2: false, l1_bytes: l1_mb << 20, data_ttl };
    if raw.trim() == "off" {
        return Ok(levels);
    }
    for level in raw.split(',').map(str::trim) {
        match level {
            "l1" => levels.l1 = true,
            "l2" => levels.l2 = true,
            _ => return Err(ConfigError::new("PLINTH_CACHE", "must be l1,l2, l1, l2 or off")),
        }
    }
    Ok(levels)
}

fn jwt_config(env: &Env<impl Fn(&str) -> Option<String>>, persistent: bool) -> Result<JwtConfig, ConfigError> {
    let algorithm = env.string("PLINTH_JWT_ALGORITHM").unwrap_or_else(|| "HS256".into());
    let keys = match algorithm.as_str() {
        "HS256" => match env.string("PLINTH_JWT_SECRET") {
            Some(s) if s.len() >= 32 => JwtKeys::Hs256(Some(Secret::new(s.into_bytes()))),
            Some(_) => return Err(ConfigError::new("PLINTH_JWT_SECRET", "must be at least 32 bytes")),
            None if persistent => {
                return Err(ConfigError::new("PLINTH_JWT_SECRET", "is required for HS256 when DATABASE_URL is set"));
            }
            None => JwtKeys::Hs256(None),
        },
        "EdDSA" | "RS256" => {
            let algorithm = if algorithm == "EdDSA" { AsymmetricAlgorithm::EdDsa } else { AsymmetricAlgorithm::Rs256 };
            let private_key_file = env
                .string("PLINTH_JWT_PRIVATE_KEY_FILE")
                .map(PathBuf::from)
                .ok_or_else(|| ConfigError::new("PLINTH_JWT_PRIVATE_KEY_FILE", "is required for EdDSA and RS256"))?;
            let mut public_key_files: Vec<PathBuf> =
                env.list("PLINTH_JWT_PUBLIC_KEY_FILES").into_iter().map(PathBuf::from).collect();
            if public_key_files.is_empty() {
                return Err(ConfigError::new("PLINTH_JWT_PUBLIC_KEY_FILES", "is required for EdDSA and RS256"));
            }
            public_key_files.dedup();
            JwtKeys::Asymmetric { algorithm, private_key_file, public_key_files }
        }
        _ => return Err(ConfigError::new("PLINTH_JWT_ALGORITHM", "must be HS256, EdDSA or RS256")),
    };
    Ok(JwtConfig {
        keys,
        issuer: env.string("PLINTH_JWT_ISSUER").unwrap_or_else(|| "plinth".into()),
        audience: env.string("PLINTH_JWT_AUDIENCE").unwrap_or_else(|| "plinth-api".into()),
        ttl: Duration::from_secs(env.parse_in("PLINTH_TOKEN_TTL", 900, 1..=31_536_000)?),
    })
}

fn operator_token_hashes<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Vec<[u8; 32]>, ConfigError> {
    const VAR: &str = "PLINTH_OPERATOR_TOKEN_HASHES";
    env.list(VAR)
        .iter()
        .map(|h| {
            plinth_domain::hex::decode_array(h).ok_or_else(|| {
                ConfigError::new(
                    VAR,
                    "each entry must be a SHA-256 in hex (64 characters): `plinth operator-token` makes one",
                )
            })
        })
        .collect()
}

fn encryption_key(
    env: &Env<impl Fn(&str) -> Option<String>>,
    persistent: bool,
) -> Result<Option<Secret<[u8; 32]>>, ConfigError> {
    use base64::Engine as _;
    const NAME: &str = "PLINTH_ENCRYPTION_KEY";
    match env.string(NAME) {
        None if persistent => Err(ConfigError::new(NAME, "is required when DATABASE_URL is set")),
        None => Ok(None),
        Some(s) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| ConfigError::new(NAME, "must be base64"))?;
            let key: [u8; 32] = raw.try_into().map_err(|_| ConfigError::new(NAME, "must decode to 32 bytes"))?;
            Ok(Some(Secret::new(key)))
        }
    }
}

#[cfg(test)]
mod tests;

fn email_config(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<EmailConfig, ConfigError> {
    let smtp_url = env.string("PLINTH_SMTP_URL");
    if let Some(url) = &smtp_url
        && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
    {
        return Err(ConfigError::new("PLINTH_SMTP_URL", "must start with smtp:// or smtps://"));
    }
    let base_domain = env.string("PLINTH_BASE_DOMAIN").unwrap_or_else(|| "localhost".into());
    let template = env.string("PLINTH_PUBLIC_URL_TEMPLATE").unwrap_or_else(|| "https://{slug}.{base_domain}".into());
    if !template.contains("{slug}") || !(template.starts_with("https://") || template.starts_with("http://")) {
        return Err(ConfigError::new(
            "PLINTH_PUBLIC_URL_TEMPLATE",
            "must be an http(s) URL containing {slug} (for example https://{slug}.example.com)",
        ));
    }
    let from = env.string("PLINTH_EMAIL_FROM").unwrap_or_else(|| format!("plinth <no-reply@{base_domain}>"));
    if !from.contains('@') || from.contains(['\r', '\n']) {
        return Err(ConfigError::new("PLINTH_EMAIL_FROM", "must be an address, optionally with a name: Name <a@b>"));
    }
    Ok(EmailConfig {
        smtp_url: smtp_url.map(Secret::new),
        smtp_ca_file: env.string("PLINTH_SMTP_CA_FILE").map(PathBuf::from),
        from,
        public_url: template.replace("{base_domain}", &base_domain),
        invitation_ttl: Duration::from_secs(env.parse_in("PLINTH_INVITATION_TTL_S", 7 * 86_400, 60..=31_536_000)?),
        reset_ttl: Duration::from_secs(env.parse_in("PLINTH_RESET_TTL_S", 1800, 60..=86_400)?),
        verify_ttl: Duration::from_secs(env.parse_in("PLINTH_VERIFY_TTL_S", 2 * 86_400, 60..=31_536_000)?),
        require_verified: env.parse("PLINTH_REQUIRE_VERIFIED_EMAIL", false)?,
    })
}
