//! `Argon2Hasher`: the `PasswordHasher` port with argon2id, off the async worker threads.
//!
//! A hash is deliberately expensive (with the default parameters 19 MiB and two passes over
//! it). It runs on a fixed set of hashing threads, and only as many at once as a semaphore has
//! permits: a login flood queues for those permits instead of taking every core from the rest
//! of the API, and a caller that gives up while queued costs nothing.
//!
//! Each hash allocates its argon2 memory and frees it when done, so an idle hasher holds none.
//! What a free of 19 MiB costs in resident memory is the allocator's business: the `plinth`
//! binary uses jemalloc, which hands a block that large back to the operating system at once
//! (glibc's malloc kept such blocks in its arenas, hundreds of MB under logins; see the memory
//! section of docs/performance.md).

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{self, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Version};
use async_trait::async_trait;
use plinth_domain::ports::PasswordHasher;
use plinth_domain::values::{Password, PasswordHash};
use plinth_domain::{Error, Result};
use rand::TryRngCore;
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

/// argon2's cost parameters; `Argon2Params::default()` is OWASP's recommendation for
/// argon2id (m = 19 MiB, t = 2, p = 1), which production uses.
pub use argon2::Params as Argon2Params;

/// Salt length in bytes: the 128 bits RFC 9106 recommends.
const SALT_LEN: usize = 16;

/// What the dummy hash is a hash of. Nothing depends on it being secret: a verification
/// against the dummy answers false whatever the password.
const DUMMY_PASSWORD: &[u8] = b"plinth: the dummy password of no user";

/// Hashes and verifies passwords with argon2id, a bounded number at a time.
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Hands jobs to the hashing threads.
    jobs: std::sync::mpsc::Sender<HashJob>,
    /// A hash made at start with the same parameters as real ones, verified against when
    /// there is no user, so that an unknown email costs what a wrong password costs.
    dummy: PasswordHash,
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Starts `n` threads that run hashing jobs, and returns the queue that feeds them.
///
/// Dedicated threads rather than tokio's blocking pool: a fixed set, as many as the permits,
/// bounds the argon2 memory in use at once at that many hashes' worth, whatever the allocator.
fn start_threads(n: usize) -> std::sync::mpsc::Sender<HashJob> {
    let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return, // the hasher is gone
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a hashing thread");
        }
    }
    tx
}

/// Why a hasher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// No salt could be drawn.
    #[error("the operating system's random number generator failed")]
    Random,
    /// argon2 refused the parameters or the salt.
    #[error("argon2 could not hash")]
    Argon2(#[source] password_hash::Error),
}

impl Argon2Hasher {
    /// A hasher with the default (OWASP) parameters running at most `permits` hashes at once
    /// (0 is taken as 1). Computes the dummy hash, so it takes one hash's time.
    pub fn new(permits: usize) -> Result<Self, HasherError> {
        Self::with_params(Argon2Params::default(), permits)
    }

    /// A hasher with custom parameters: cheaper ones for tests; production keeps the default.
    pub fn with_params(params: Argon2Params, permits: usize) -> Result<Self, HasherError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = PasswordHash::new(hash_with(&argon2, DUMMY_PASSWORD)?);
        let permits = permits.max(1);
        Ok(Self { argon2, permits: Arc::new(Semaphore::new(permits)), jobs: start_threads(permits), dummy })
    }

    /// Runs `job` on a hashing thread once a permit is free. The permit moves into the job, so
    /// it is held until the hash is done even if the caller stops waiting.
    async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>) -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(Error::internal)?;
        let argon2 = self.argon2.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let work: HashJob = Box::new(move || {
            let _permit = permit;
            let _ = done.send(job(&argon2));
        });
        self.jobs.send(work).map_err(|_| Error::internal("the hashing threads are gone"))?;
        result.await.map_err(Error::internal)
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    #[tracing::instrument(level = "debug", name = "argon2_hash", skip_all)]
    async fn hash(&self, password: &Password) -> Result<PasswordHash> {
        let password = password.clone();
        let phc = self.run(move |argon2| hash_with(argon2, password.expose().as_bytes())).await?;
        Ok(PasswordHash::new(phc.map_err(Error::internal)?))
    }

    #[tracing::instrument(level = "debug", name = "argon2_verify", skip_all)]
    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> Result<bool> {
        let password = password.clone();
        let (stored, known) = match hash {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let matches =
            self.run(move |argon2| verify_with(argon2, password.expose().as_bytes(), stored.as_str())).await?;
        Ok(matches.map_err(Error::internal)? && known)
    }
}

impl fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", self.argon2.params())
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// The PHC string of `password` with a fresh salt from the operating system.
fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, HasherError> {
    let mut salt = [0; SALT_LEN];
    OsRng.try_fill_bytes(&mut salt).map_err(|_| HasherError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(HasherError::Argon2)?;
    let hash = argon2.hash_password(password, &salt).map_err(HasherError::Argon2)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, hashed with the parameters `stored`
/// names. A string that is not a complete argon2 PHC string is an error, not a mismatch.
fn verify_with(argon2: &Argon2<'_>, password: &[u8], stored: &str) -> Result<bool, password_hash::Error> {
    let parsed = password_hash::PasswordHash::new(stored)?;
    // Without a salt or an output, `verify_password` answers "wrong password" at once:
    // that would hide a corrupt row and answer faster than a real verification.
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(password_hash::Error::PhcStringField);
    }
    match argon2.verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(e),
    }
}
