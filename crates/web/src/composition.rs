//! The composition root: reads the configuration and picks one adapter per port.

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::cache::{Cache, MeteredStore, TieredStore};
use plinth_domain::clock::SystemClock;
use plinth_domain::mail::MailSettings;
use plinth_domain::page::CursorKey;
use plinth_domain::ports::{
    AccountEmails, ApiKeyRepository, AuditLog, CacheStore, Clock, DeliveryStore, EmailSender, EventLog,
    GenerationStore, IdempotencyStore, JobQueue, PasswordHasher, ProjectRepository, SessionRepository, TenantExporter,
    TenantRepository, TokenService, UserRepository, WebhookRepository,
};
use plinth_domain::rate_limit::FallbackLimiter;
use plinth_domain::trace::Propagation;
use plinth_domain::usecases::{
    AuditSettings, CacheTtls, ClientInfo, DeliverySettings, EmailSettings, KeySettings, LifecycleSettings, Plinth,
    Ports, SessionSettings, Settings, SignupInput,
};
use plinth_domain::values::{ApiKeyKey, EmailKey, RefreshKey};
use plinth_email::{LogSender, SmtpSender};
use plinth_jwt::{Argon2Hasher, JwtTokens};
use plinth_memory::{GovernorLimiter, L1Cache, MemoryGenerations, MemoryStore};
use plinth_postgres::{PgSettings, PgStore, ReplicaSettings};
use plinth_redis::{RedisCache, RedisConn, RedisGenerations, RedisLimiter, RedisResidue, RedisSettings};
use plinth_webhooks::{AddressPolicy, HttpSender, SecretBox, UrlGuard};

use crate::config::{AsymmetricAlgorithm, Config, JwtKeys};

/// Why start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The JWT keys could not be loaded.
    #[error("PLINTH_JWT_*: {0}")]
    Keys(String),
    /// The password hasher could not start (no random salt for its dummy hash).
    #[error("the password hasher could not start: {0}")]
    Hasher(#[source] plinth_jwt::HasherError),
    /// The webhooks' HTTP client could not be built (no TLS roots, for one).
    #[error("the webhook HTTP client could not be built: {0}")]
    WebhookClient(String),
    /// The SMTP settings are unusable.
    #[error("PLINTH_SMTP_URL: {0}")]
    Smtp(String),
    /// The OpenAPI document could not be rendered.
    #[error("the OpenAPI document could not be rendered: {0}")]
    OpenApi(#[source] serde_json::Error),
    /// The database settings are unusable.
    #[error("DATABASE_URL: {0}")]
    Database(#[source] plinth_postgres::PgError),
    /// The Redis settings are unusable.
    #[error("REDIS_URL: {0}")]
    Redis(String),
    /// Seeding the demo tenant failed.
    #[error("seeding the demo tenant failed: {0}")]
    Seed(#[source] plinth_domain::Error),
    /// The listener could not be bound.
    #[error("could not listen: {0}")]
    Listen(#[source] std::io::Error),
}

/// How to sign in to the demo tenant of the embedded mode.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    /// The tenant's slug.
    pub slug: &'static str,
    /// The owner's email.
    pub email: &'static str,
    /// The owner's password.
    pub password: &'static str,
}

/// The demo tenant seeded in embedded mode.
pub const DEMO: DemoLogin = DemoLogin { slug: "demo", email: "owner@demo.test", password: "plinth-demo-password" };

/// Everything the server needs, built from the configuration.
#[derive(Debug)]
pub struct Composed {
    /// The use cases over their adapters.
    pub plinth: Arc<Plinth>,
    /// The in-process limiter, whose keyed state needs periodic pruning.
    pub local_limiter: Arc<GovernorLimiter>,
    /// Set in embedded mode: the seeded demo login.
    pub demo: Option<DemoLogin>,
}

/// The configured token service, issuing and checking tokens at `clock`'s time.
pub fn tokens(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn TokenService>, StartupError> {
    let jwt = &config.jwt;
    let keys = match &jwt.keys {
        JwtKeys::Hs256(Some(secret)) => plinth_jwt::KeySource::hs256(secret.expose().clone()),
        JwtKeys::Hs256(None) => plinth_jwt::KeySource::random_hs256().map_err(|e| StartupError::Keys(e.to_string()))?,
        JwtKeys::Asymmetric { algorithm, private_key_file, public_key_files } => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| StartupError::Keys(format!("can't read {}: {e}", p.display())))
            };
            // A key's id is its file name up to the first dot: `2026-01.pem` and
            // `2026-01.pub.pem` are the two halves of key `2026-01`.
            let kid = |p: &std::path::Path| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                name.split('.').next().unwrap_or_default().to_owned()
            };
            let verification_keys =
                public_key_files.iter().map(|p| Ok((kid(p), read(p)?))).collect::<Result<_, StartupError>>()?;
            plinth_jwt::KeySource::Asymmetric {
                algorithm: match algorithm {
                    AsymmetricAlgorithm::EdDsa => plinth_jwt::AsymmetricAlgorithm::EdDsa,
                    AsymmetricAlgorithm::Rs256 => plinth_jwt::AsymmetricAlgorithm::Rs256,
                },
                signing_key_pem: plinth_jwt::KeyMaterial::new(read(private_key_file)?),
                kid: kid(private_key_file),
                verification_keys,
            }
        }
    };
    let config =
        plinth_jwt::JwtConfig { keys, issuer: jwt.issuer.clone(), audience: jwt.audience.clone(), ttl: jwt.ttl };
    let tokens = JwtTokens::new(config, clock).map_err(|e| StartupError::Keys(e.to_string()))?;
    Ok(Arc::new(tokens))
}

/// Picks the adapters the configuration asks for, on the system's clock.
pub async fn compose(config: &Config) -> Result<Composed, StartupError> {
    compose_with(config, Arc::new(SystemClock::new()), |_| {}).await
}

/// Picks the adapters the configuration asks for, all keeping time by `clock` (tests move a
/// manual one), then lets `adapt` wrap or replace any of them (tests count what reaches a
/// port this way; an embedder may add its own decorators).
pub async fn compose_with(
    config: &Config,
    clock: Arc<dyn Clock>,
    adapt: impl FnOnce(&mut Ports),
) -> Result<Composed, StartupError> {
    let local_limiter = Arc::new(GovernorLimiter::new(clock.clone()));
    let passwords: Arc<dyn PasswordHasher> = Arc::new(Argon2Hasher::new(hash_permits()).map_err(StartupError::Hasher)?);
    let traces = crate::telemetry::traces::propagation();
    let (repos, database) = repositories(config, &clock, traces)?;
    let key = encryption_key(config);
    let mut ports = Ports {
        tenants: repos.tenants,
        users: repos.users,
        projects: repos.projects,
        idempotency: repos.idempotency,
        webhooks: repos.webhooks,
        sessions: repos.sessions,
        accounts: repos.accounts,
        api_keys: repos.api_keys,
        audit: repos.audit,
        events: repos.events,
        exporter: repos.exporter,
        mailer: mailer(config)?,
        url_guard: Arc::new(UrlGuard::new(address_policy(config))),
        secrets: Arc::new(SecretBox::new(&key)),
        jobs: repos.jobs,
        deliveries: repos.deliveries,
        sender: Arc::new(webhook_sender(config, clock.clone())?),
        tokens: tokens(config, clock.clone())?,
        passwords,
        limiter: local_limiter.clone(),
        residue: match redis_settings(config) {
            Some(settings) => {
                vec![Arc::new(RedisResidue::new(&settings).map_err(|e| StartupError::Redis(e.to_string()))?)]
            }
            None => Vec::new(),
        },
        dependencies: Vec::new(),
        clock: clock.clone(),
        traces,
    };
    if let Some(db) = &database {
        ports.dependencies.push(Arc::new(db.clone()));
    }
    let redis = redis_conn(config)?;
    if let Some(conn) = &redis {
        ports.dependencies.push(Arc::new(conn.clone()));
        conn.warm_up(Duration::from_secs(2)).await;
        // One quota for the fleet; the local limiter takes over while Redis is away.
        ports.limiter = Arc::new(FallbackLimiter::new(
            Arc::new(RedisLimiter::leasing(conn.clone(), config.limit_lease_percent)),
            local_limiter.clone(),
        ));
    }
    adapt(&mut ports);
    let cache = cache(config, redis.as_ref(), clock);
    let settings = Settings {
        quotas: config.quotas,
        plans: config.plans.clone(),
        ttls: CacheTtls { projects: config.cache.data_ttl, ..CacheTtls::default() },
        idempotency_ttl: Duration::from_secs(24 * 3600),
        delivery: DeliverySettings {
            max_attempts: config.webhooks.max_attempts,
            backoff: config.webhooks.backoff,
            disable_after: config.webhooks.disable_after,
            disable_min_failures: config.webhooks.disable_min_failures,
        },
        cursor_key: CursorKey::derive(&key),
        // Derived from the encryption key: set in every mode, required with a database and
        // shared by the fleet, unlike the JWT secret (absent with EdDSA and RS256 keys).
        sessions: SessionSettings {
            idle: config.sessions.idle,
            max: config.sessions.max,
            reuse_window: config.sessions.reuse_window,
            key: RefreshKey::derive(&key),
        },
        email: EmailSettings {
            invitation_ttl: config.email.invitation_ttl,
            reset_ttl: config.email.reset_ttl,
            verify_ttl: config.email.verify_ttl,
            require_verified: config.email.require_verified,
            ..EmailSettings::new(
                EmailKey::derive(&key),
                MailSettings {
                    public_url: config.email.public_url.clone(),
                    message_id_domain: config.email.from_domain().to_owned(),
                },
            )
        },
        audit: AuditSettings {
            enabled: config.audit.enabled,
            retention: config.audit.retention,
            ..AuditSettings::new(plinth_domain::audit::AuditKey::derive(&key))
        },
        keys: KeySettings { key: ApiKeyKey::derive(&key) },
        lifecycle: LifecycleSettings {
            delete_grace: config.tenant_delete_grace,
            exports_per_instance: config.exports_per_instance,
            ..LifecycleSettings::default()
        },
    };
    let plinth = Arc::new(Plinth::new(ports, cache, settings));
    let demo = match database {
        None => Some(seed_demo(&plinth).await?),
        Some(_) => None,
    };
    Ok(Composed { plinth, local_limiter, demo })
}

/// The storage ports, all from one adapter.
struct Repositories {
    tenants: Arc<dyn TenantRepository>,
    users: Arc<dyn UserRepository>,
    projects: Arc<dyn ProjectRepository>,
    idempotency: Arc<dyn IdempotencyStore>,
    webhooks: Arc<dyn WebhookRepository>,
    sessions: Arc<dyn SessionRepository>,
    accounts: Arc<dyn AccountEmails>,
    api_keys: Arc<dyn ApiKeyRepository>,
    audit: Arc<dyn AuditLog>,
    events: Arc<dyn EventLog>,
    exporter: Arc<dyn TenantExporter>,
    jobs: Arc<dyn JobQueue>,
    deliveries: Arc<dyn DeliveryStore>,
}

impl Repositories {
    fn of<S>(store: Arc<S>) -> Self
    where
        S: TenantRepository
            + UserRepository
            + ProjectRepository
            + IdempotencyStore
            + WebhookRepository
            + SessionRepository
            + AccountEmails
            + ApiKeyRepository
            + AuditLog
            + EventLog
            + TenantExporter
            + JobQueue
            + DeliveryStore
            + 'static,
    {
        Self {
            tenants: store.clone(),
            users: store.clone(),
            projects: store.clone(),
            idempotency: store.clone(),
            webhooks: store.clone(),
            sessions: store.clone(),
            accounts: store.clone(),
            api_keys: store.clone(),
            audit: store.clone(),
            events: store.clone(),
            exporter: store.clone(),
            jobs: store.clone(),
            deliveries: store,
        }
    }
}

/// PostgreSQL when `DATABASE_URL` is set, else memory; either stores with each job the trace
/// context `traces` gives.
fn repositories(
    config: &Config,
    clock: &Arc<dyn Clock>,
    traces: Propagation,
) -> Result<(Repositories, Option<PgStore>), StartupError> {
    let Some(db) = &config.database else {
        let store = MemoryStore::new(clock.clone())
            .with_max_pending_jobs(config.tenant_max_pending_jobs)
            .with_trace_propagation(traces);
        return Ok((Repositories::of(Arc::new(store)), None));
    };
    let settings = PgSettings {
        pool_size: db.pool_size,
        pool_timeout: db.pool_timeout,
        statement_timeout: db.statement_timeout,
        application_name: "plinth-api".into(),
        direct_url: db.direct_url.as_ref().map(|u| u.expose().clone()),
        statement_cache: db.statement_cache,
    };
    let replica_urls: Vec<String> = db.replica_urls.iter().map(|u| u.expose().clone()).collect();
    let pg = PgStore::connect(db.url.expose(), &settings, clock.clone())
        .and_then(|pg| pg.with_replicas(&replica_urls, &settings, &ReplicaSettings { max_lag: db.replica_max_lag }))
        .map_err(StartupError::Database)?
        .with_max_pending_jobs(config.tenant_max_pending_jobs)
        .with_trace_propagation(traces);
    if !replica_urls.is_empty() {
        tracing::info!(
            replicas = replica_urls.len(),
            max_lag_ms = db.replica_max_lag.as_millis(),
            read_your_writes_ms = pg.read_your_writes_window().as_millis(),
            "stale-tolerant reads go to the read replicas in use"
        );
    }
    Ok((Repositories::of(Arc::new(pg.clone())), Some(pg)))
}

/// SMTP when `PLINTH_SMTP_URL` is set, else the log (each message's link written there, so
/// every flow can be walked without a mail server).
fn mailer(config: &Config) -> Result<Arc<dyn EmailSender>, StartupError> {
    let email = &config.email;
    let Some(url) = &email.smtp_url else {
        tracing::warn!(
            "no SMTP server is configured (PLINTH_SMTP_URL): emails are written to the log, links included, \
             and not sent"
        );
        return Ok(Arc::new(LogSender));
    };
    let sender = SmtpSender::new(url.expose(), &email.from, email.smtp_ca_file.as_deref())
        .map_err(|e| StartupError::Smtp(e.to_string()))?;
    tracing::info!(smtp = %sender.describe(), "emails are sent by SMTP");
    Ok(Arc::new(sender))
}

/// The webhook sender; when traces are exported, each delivery carries its job's trace context.
fn webhook_sender(config: &Config, clock: Arc<dyn Clock>) -> Result<HttpSender, StartupError> {
    let sender = HttpSender::new(address_policy(config), None, clock).map_err(StartupError::WebhookClient)?;
    Ok(if crate::telemetry::traces::enabled() {
        sender.with_trace_headers(crate::telemetry::traces::current_headers)
    } else {
        sender
    })
}

/// Where webhooks may go (`PLINTH_WEBHOOK_ALLOW_PRIVATE`, `PLINTH_WEBHOOK_ALLOWED_CIDRS`).
pub fn address_policy(config: &Config) -> AddressPolicy {
    AddressPolicy { allow_private: config.webhooks.allow_private, allowed: config.webhooks.allowed_cidrs.clone() }
}

/// The configured encryption key, or (embedded mode only) a random one for this run.
fn encryption_key(config: &Config) -> [u8; 32] {
    config.encryption_key.as_ref().map_or_else(rand::random, |k| *k.expose())
}

fn redis_settings(config: &Config) -> Option<RedisSettings> {
    if config.redis_urls.is_empty() {
        return None;
    }
    let mut settings = RedisSettings::new(config.redis_urls.iter().map(|u| u.expose().clone()).collect());
    settings.prefix.clone_from(&config.redis_prefix);
    Some(settings)
}

fn redis_conn(config: &Config) -> Result<Option<RedisConn>, StartupError> {
    redis_settings(config)
        .map(|settings| RedisConn::new(&settings).map_err(|e| StartupError::Redis(e.to_string())))
        .transpose()
}

/// The cache levels the configuration asks for, over the generations that key them.
fn cache(config: &Config, redis: Option<&RedisConn>, clock: Arc<dyn Clock>) -> Cache {
    // Each level is metered on its own (`cache_requests_total{layer}`).
    let metered = |layer, store: Arc<dyn CacheStore>| Arc::new(MeteredStore::new(layer, store)) as Arc<dyn CacheStore>;
    let l1 =
        config.cache.l1.then(|| metered("l1", Arc::new(L1Cache::with_capacity_bytes(config.cache.l1_bytes, clock))));
    let Some(conn) = redis else {
        return Cache::new(l1, None, Arc::new(MemoryGenerations::new()));
    };
    let generations: Arc<dyn GenerationStore> = Arc::new(RedisGenerations::start(conn.clone()));
    let l2 = config.cache.l2.then(|| metered("l2", Arc::new(RedisCache::new(conn.clone()))));
    let store = match (l1, &l2) {
        (Some(l1), Some(l2)) => Some(Arc::new(TieredStore::new(l1, l2.clone())) as Arc<dyn CacheStore>),
        (Some(l1), None) => Some(l1),
        (None, l2) => l2.clone(),
    };
    Cache::new(store, l2, generations)
}

/// How many password hashes may run at once: one per core, so logins can't starve requests.
fn hash_permits() -> usize {
    std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2)
}

async fn seed_demo(plinth: &Plinth) -> Result<DemoLogin, StartupError> {
    plinth
        .signup(
            SignupInput {
                tenant_slug: DEMO.slug.into(),
                tenant_name: "Demo".into(),
                email: DEMO.email.into(),
                password: DEMO.password.into(),
                email_verified: true,
            },
            ClientInfo::default(),
        )
        .await
        .map_err(StartupError::Seed)?;
    Ok(DEMO)
}
