//! The `plinth` command line: serve (the default), worker, migrate, seed, audit, openapi.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plinth_domain::ids::{SessionId, TenantId, UserId};
use plinth_domain::ports::PasswordHasher as _;
use plinth_domain::values::{Password, Role};
use plinth_jwt::Argon2Hasher;
use plinth_postgres::{migrate, seed};

use crate::composition;
use crate::config::{Config, MigrateConfig};

/// plinth: a multi-tenant SaaS API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do; serving the API when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Run only the job worker, until SIGTERM or SIGINT.
    Worker,
    /// Apply pending migrations as PLINTH_DATABASE_OWNER_URL; create the role plinth_app.
    Migrate {
        /// List the migrations and whether each is applied, changing nothing.
        #[arg(long)]
        status: bool,
    },
    /// Operate on a tenant (as the deployment's operator).
    Tenant {
        /// What to do.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Print a new operator token for `/admin/v1` and the SHA-256 to add to
    /// PLINTH_OPERATOR_TOKEN_HASHES for it (the token itself is stored nowhere).
    OperatorToken,
    /// Print the OpenAPI document (the one `GET /openapi.json` serves) as pretty JSON; needs
    /// no configuration and starts nothing.
    Openapi,
    /// The audit log.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Bulk-load tenants, users and projects (as the owner) and write one token per tenant.
    Seed {
        /// How many tenants.
        #[arg(long, default_value_t = 10_000)]
        tenants: u32,
        /// Users per tenant (the first is the owner).
        #[arg(long, default_value_t = 10)]
        users_per_tenant: u32,
        /// Projects per tenant.
        #[arg(long, default_value_t = 100)]
        projects_per_tenant: u32,
        /// Slugs are this prefix and a number.
        #[arg(long, default_value = "t")]
        slug_prefix: String,
        /// Write `slug<TAB>token` lines here (the owner's token of each tenant).
        #[arg(long)]
        tokens_file: Option<PathBuf>,
    },
}

/// `plinth tenant …`. Needs DATABASE_URL and PLINTH_ENCRYPTION_KEY (and REDIS_URL, with the
/// fleet's PLINTH_REDIS_PREFIX, for a change to reach the running instances at once).
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print a tenant: its plan, the plan's limits and its usage, as JSON.
    Show {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
    /// Move a tenant to another of the configured plans (audited as `tenant.plan_changed`).
    SetPlan {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// The plan's name, as PLINTH_PLANS_FILE (or the built-in plans) names it.
        #[arg(long)]
        plan: String,
    },
    /// List tenants by slug, as JSON: `{items, next_cursor}`.
    List {
        /// Only tenants in this state: active, suspended or deleted.
        #[arg(long)]
        state: Option<String>,
        /// Start after this slug (the previous page's `next_cursor`).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Suspend a tenant: its hosts answer 403 `tenant_suspended`, its deliveries and emails wait.
    Suspend {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended tenant.
    Resume {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
    /// Delete a tenant: its hosts answer 404 at once; its data is erased after
    /// PLINTH_TENANT_DELETE_GRACE_DAYS unless it is restored first.
    Delete {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
    /// Undo a tenant's deletion while its grace lasts.
    Restore {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
    /// Erase now every deleted tenant whose grace has run out (the worker does this hourly).
    Purge,
}

/// `plinth tenant …`: prints the tenant as JSON.
pub async fn run_tenant(config: &Config, command: &TenantCommand) -> Result<(), String> {
    if config.database.is_none() {
        return Err("DATABASE_URL is required: the embedded mode keeps no tenants across runs".into());
    }
    let composed = composition::compose(config).await.map_err(|e| e.to_string())?;
    let plinth = composed.plinth;
    let slug = |s: &str| plinth_domain::values::Slug::parse(s).map_err(|e| format!("--tenant: {e}"));
    let view = match command {
        TenantCommand::Show { tenant } => plinth.operator_show(&slug(tenant)?).await.map(json),
        TenantCommand::SetPlan { tenant, plan } => plinth.set_plan(&slug(tenant)?, plan).await.map(json),
        TenantCommand::List { state, after, limit } => {
            let state = state
                .as_deref()
                .map(|s| serde_json::from_value(serde_json::Value::String(s.to_owned())))
                .transpose()
                .map_err(|_| "--state: one of active, suspended, deleted".to_owned())?;
            let after = after.as_deref().map(slug).transpose()?;
            plinth.list_tenants(after.as_ref(), *limit, state).await.map(json)
        }
        TenantCommand::Suspend { tenant, reason } => plinth.suspend(&slug(tenant)?, reason.as_deref()).await.map(json),
        TenantCommand::Resume { tenant } => plinth.resume(&slug(tenant)?).await.map(json),
        TenantCommand::Delete { tenant } => plinth.delete_tenant(&slug(tenant)?).await.map(json),
        TenantCommand::Restore { tenant } => plinth.restore(&slug(tenant)?).await.map(json),
        TenantCommand::Purge => {
            plinth.purge_deleted_tenants().await.map(|p| serde_json::json!({ "tenants": p.tenants, "rows": p.rows }))
        }
    };
    let view = view.map_err(|e| match e {
        plinth_domain::Error::TenantNotFound => "no such tenant".to_owned(),
        plinth_domain::Error::Validation(errors) => {
            errors.iter().map(|f| format!("--{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    })?;
    let json = serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?;
    writeln!(std::io::stdout().lock(), "{json}").map_err(|e| e.to_string())?;
    plinth.close_dependencies();
    Ok(())
}

/// What a command prints, as JSON.
fn json(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// `plinth operator-token`: the token on stdout's first line, its hash on the second.
pub fn run_operator_token() -> Result<(), String> {
    let (token, hash) = plinth_domain::values::OperatorTokens::issue().map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}\n{hash}").map_err(|e| e.to_string())?;
    eprintln!("Give the first line to the operator; add the second to PLINTH_OPERATOR_TOKEN_HASHES (comma-separated).");
    Ok(())
}

/// `plinth openapi`: the document of every registered route, the one the server serves.
pub fn run_openapi() -> Result<(), String> {
    let json = serde_json::to_string_pretty(&crate::startup::openapi_document()).map_err(|e| e.to_string())?;
    writeln!(std::io::stdout().lock(), "{json}").map_err(|e| e.to_string())
}

/// `plinth audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute a tenant's chain and report the first entry edited, deleted or reordered
    /// (exit code 1 when there is one). Needs DATABASE_URL and PLINTH_ENCRYPTION_KEY.
    Verify {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
    },
}

/// `plinth audit verify --tenant SLUG`: prints the verification as JSON; fails when the chain
/// is broken.
pub async fn run_audit(config: &Config, command: &AuditCommand) -> Result<(), String> {
    let AuditCommand::Verify { tenant } = command;
    if config.database.is_none() {
        return Err("DATABASE_URL is required: the embedded mode keeps no audit log across runs".into());
    }
    let composed = composition::compose(config).await.map_err(|e| e.to_string())?;
    let plinth = composed.plinth;
    let tenant = plinth.operator_show(&plinth_domain::values::Slug::parse(tenant).map_err(|e| e.to_string())?).await;
    let tenant = tenant.map_err(|e| format!("no such tenant: {e}"))?.tenant;
    let report = plinth.verify_audit(tenant.id).await.map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    writeln!(std::io::stdout().lock(), "{json}").map_err(|e| e.to_string())?;
    plinth.close_dependencies();
    if report.valid { Ok(()) } else { Err("the audit chain is broken (see first_problem)".into()) }
}

/// The password every seeded user shares.
pub const SEED_PASSWORD: &str = "seeded-password";

fn owner_url(config: &Config) -> Result<String, String> {
    config
        .database
        .as_ref()
        .and_then(|d| d.owner_url.as_ref())
        .map(|u| u.expose().clone())
        .ok_or_else(|| "PLINTH_DATABASE_OWNER_URL is required".to_owned())
}

/// `plinth migrate [--status]`: reads only its own [`MigrateConfig`].
pub async fn run_migrate(config: &MigrateConfig, status_only: bool) -> Result<(), String> {
    let owner = config.owner_url.expose();
    let statuses = if status_only {
        migrate::status(owner).await
    } else {
        let password = match &config.app_url {
            Some(url) => migrate::app_password(url.expose()).map_err(|e| e.to_string())?,
            None => None,
        };
        migrate::migrate(owner, password.as_deref()).await
    }
    .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for m in statuses {
        let state = if m.applied { "applied" } else { "pending" };
        writeln!(out, "V{}__{}\t{state}", m.version, m.name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `plinth seed …`.
pub async fn run_seed(config: &Config, command: &Command) -> Result<(), String> {
    let Command::Seed { tenants, users_per_tenant, projects_per_tenant, slug_prefix, tokens_file } = command else {
        return Err("not a seed command".into());
    };
    let owner = owner_url(config)?;
    let hasher = Argon2Hasher::new(1).map_err(|e| e.to_string())?;
    let password = Password::parse(SEED_PASSWORD).map_err(|e| e.to_string())?;
    let hash = hasher.hash(&password).await.map_err(|e| e.to_string())?;
    let plan = seed::SeedPlan {
        tenants: *tenants,
        users_per_tenant: (*users_per_tenant).max(1),
        projects_per_tenant: *projects_per_tenant,
        password_hash: hash.as_str().to_owned(),
        slug_prefix: slug_prefix.clone(),
    };
    let started = std::time::Instant::now();
    let seeded = seed::seed(&owner, &plan, |done, total| {
        eprint!("\rseeding: {done}/{total} tenants ({:.0}%)", done as f64 * 100.0 / total.max(1) as f64);
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!("\nseeded {} tenants in {:.1} s", seeded.len(), started.elapsed().as_secs_f64());
    if let Some(path) = tokens_file {
        let tokens = composition::tokens(config, std::sync::Arc::new(plinth_domain::clock::SystemClock::new()))
            .map_err(|e| e.to_string())?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
        for t in &seeded {
            let token = tokens
                .issue(
                    UserId::from_uuid(t.owner),
                    TenantId::from_uuid(t.id),
                    Role::Owner,
                    0,
                    SessionId::from_uuid(t.session),
                )
                .map_err(|e| e.to_string())?;
            writeln!(file, "{}\t{}", t.slug, token.token).map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())?;
        eprintln!("wrote {} tokens to {}", seeded.len(), path.display());
    }
    Ok(())
}

/// `plinth worker`: works the queue until SIGTERM or SIGINT, then finishes the jobs in hand.
pub async fn run_worker(config: &Config) -> Result<(), String> {
    let composed = composition::compose(config).await.map_err(|e| e.to_string())?;
    let worker = crate::worker::WorkerHandle::spawn(composed.plinth, config.worker_settings);
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("worker stopping: finishing the jobs in hand");
    worker.stop().await;
    Ok(())
}
