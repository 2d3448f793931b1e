//! Migrations: plain SQL in `migrations/`, applied in order by refinery as the schema owner,
//! recorded with a checksum (a changed, already applied migration is refused). Before them,
//! the API role `plinth_app` is created when missing.

use refinery::Target;
use tokio_postgres::{Client, NoTls};

use crate::error::PgError;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// The API's role: not a superuser, no BYPASSRLS, owner of nothing.
pub const APP_ROLE: &str = "plinth_app";

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Its version (`V1__…` is 1).
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Whether it has been applied.
    pub applied: bool,
}

async fn connect(owner_url: &str) -> Result<Client, PgError> {
    let config: tokio_postgres::Config = owner_url.parse().map_err(|_| PgError::Url)?;
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection closed");
        }
    });
    Ok(client)
}

/// Creates `plinth_app` when missing (with `password`, if given) and makes sure it has no
/// privileges beyond what the migrations grant.
async fn ensure_app_role(client: &Client, password: Option<&str>) -> Result<(), PgError> {
    let exists = client.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&APP_ROLE]).await?.is_some();
    if !exists {
        // Utility statements take no bind parameters: the server quotes the password itself.
        let create: String = client
            .query_one(
                "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', $1::text, $2::text)",
                &[&APP_ROLE, &password],
            )
            .await?
            .get(0);
        match client.batch_execute(&create).await {
            Ok(()) => {}
            // Another migrator created it meanwhile.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => return Err(e.into()),
        }
    } else if let Some(password) = password {
        let alter: String = client
            .query_one("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", &[&APP_ROLE, &password])
            .await?
            .get(0);
        client.batch_execute(&alter).await?;
    }
    let superuser: bool = client
        .query_one("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1", &[&APP_ROLE])
        .await?
        .get(0);
    if superuser {
        return Err(PgError::Other(format!("role {APP_ROLE} must not be a superuser nor bypass RLS")));
    }
    Ok(())
}

/// The password of `app_url`'s user, when it is `plinth_app` and has one.
pub fn app_password(app_url: &str) -> Result<Option<String>, PgError> {
    let config: tokio_postgres::Config = app_url.parse().map_err(|_| PgError::Url)?;
    if config.get_user().is_some_and(|u| u != APP_ROLE) {
        return Err(PgError::Other(format!("DATABASE_URL must connect as {APP_ROLE}")));
    }
    Ok(config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()))
}

/// Applies every pending migration as the owner. Refuses to run as `plinth_app`.
pub async fn migrate(owner_url: &str, app_password: Option<&str>) -> Result<Vec<MigrationStatus>, PgError> {
    let config: tokio_postgres::Config = owner_url.parse().map_err(|_| PgError::Url)?;
    if config.get_user() == Some(APP_ROLE) {
        return Err(PgError::Other(format!("migrations run as the schema owner, never as {APP_ROLE}")));
    }
    let mut client = connect(owner_url).await?;
    // Slug resolution and retention run as the owner across tenants: it must bypass RLS.
    let bypasses: bool = client
        .query_one("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user", &[])
        .await?
        .get(0);
    if !bypasses {
        return Err(PgError::Other(
            "the schema owner must be a superuser or have BYPASSRLS (ALTER ROLE … BYPASSRLS)".into(),
        ));
    }
    ensure_app_role(&client, app_password).await?;
    let report = embedded::migrations::runner()
        .set_target(Target::Latest)
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(&mut client)
        .await?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    status_with(&mut client).await
}

/// Every known migration and whether it is applied.
pub async fn status(owner_url: &str) -> Result<Vec<MigrationStatus>, PgError> {
    let mut client = connect(owner_url).await?;
    status_with(&mut client).await
}

async fn status_with(client: &mut Client) -> Result<Vec<MigrationStatus>, PgError> {
    let runner = embedded::migrations::runner();
    let table_exists: bool =
        client.query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[]).await?.get(0);
    let applied = if table_exists { runner.get_applied_migrations_async(client).await? } else { Vec::new() };
    Ok(runner
        .get_migrations()
        .iter()
        .map(|m| MigrationStatus {
            version: i64::from(m.version()),
            name: m.name().to_owned(),
            applied: applied.iter().any(|a| a.version() == m.version()),
        })
        .collect())
}

/// A hash of every migration's text: a database migrated with the same hash has the same schema.
pub fn fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in embedded::migrations::runner().get_migrations() {
        for b in m.name().bytes().chain(m.sql().unwrap_or_default().bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}
