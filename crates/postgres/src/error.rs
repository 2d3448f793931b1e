//! Turning driver errors into domain errors at the adapter's edge.

use plinth_domain::Error;
use tokio_postgres::error::SqlState;

/// A failure outside a port call: connecting, migrating, seeding.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL could not be parsed (its text is not repeated: it may hold a password).
    #[error("invalid PostgreSQL URL")]
    Url,
    /// PostgreSQL refused or failed a statement.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("pool: {0}")]
    Pool(String),
    /// A migration failed or was refused.
    #[error("migration: {0}")]
    Migration(#[from] refinery::Error),
    /// Something else, described.
    #[error("{0}")]
    Other(String),
}

/// The dependency's name in errors and readiness answers.
pub(crate) const DATABASE: &str = "database";

/// Whether `e` means "the database is not answering (in time)", as opposed to a bug.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O error, a timeout, a connection that went away.
        None => true,
        Some(code) => {
            *code == SqlState::QUERY_CANCELED // statement_timeout
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || code.code().starts_with("08") // connection exceptions
        }
    }
}

/// A driver error as a domain error.
pub(crate) fn db(e: tokio_postgres::Error) -> Error {
    if is_unavailable(&e) { Error::unavailable(DATABASE, e) } else { Error::internal(e) }
}

/// Driver results as domain results, at the adapter's edge: `.await.or_db()?`.
pub(crate) trait OrDb<T> {
    /// The value, or the driver's error as a domain error ([`db`]).
    fn or_db(self) -> Result<T, Error>;
}

impl<T> OrDb<T> for Result<T, tokio_postgres::Error> {
    fn or_db(self) -> Result<T, Error> {
        self.map_err(db)
    }
}

/// The name of the unique constraint `e` violated, if that is what it is.
pub(crate) fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (*db.code() == SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or_default())
}

/// Whether `e` is a foreign-key violation (a row names one that does not exist).
pub(crate) fn foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| *db.code() == SqlState::FOREIGN_KEY_VIOLATION)
}

/// A pool error as a domain error: every pool failure means the database is unavailable.
pub(crate) fn pool(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        other => Error::unavailable(DATABASE, other),
    }
}

/// A row whose content the domain refuses: the database holds something it should not.
pub(crate) fn corrupt(what: &'static str) -> Error {
    Error::internal(format!("stored {what} is not valid"))
}
