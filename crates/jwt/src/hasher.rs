//! `Argon2Hasher`: the `PasswordHasher` port with argon2id, off the async worker threads.
//!
//! A hash is deliberately expensive (with the default parameters 19 MiB and two passes over
//! it). It runs on a fixed set of hashing threads, and only as many at once as a semaphore has
//! permits: a login flood queues for those permits instead of taking every core from the rest
//! of the API, and a caller that gives up while queued costs nothing.
//!
//! Each hashing thread keeps its 19 MiB of argon2 memory from one hash to the next instead of
//! allocating and freeing it per hash. Freeing a block that large raises glibc's dynamic mmap
//! threshold to its size (and the trim threshold to twice that) for the whole process, after
//! which every thread's allocator arena kept up to 38 MiB of freed memory: that, not the hashes
//! themselves, was most of an instance's resident memory under logins (see the memory section
//! of docs/performance.md).

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{self, Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Version};
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

/// The algorithm and version every new hash uses.
const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

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

type HashJob = Box<dyn FnOnce(&mut Memory) + Send>;

/// A hashing thread's argon2 memory, kept across hashes.
///
/// It holds up to `kept` blocks (the configured parameters' count), allocated on the thread's
/// first hash. A stored hash that asks for more (made with larger parameters) gets memory of
/// its own for that one verification.
pub(crate) struct Memory {
    blocks: Vec<Block>,
    kept: usize,
}

impl Memory {
    fn new(kept: usize) -> Self {
        Self { blocks: Vec::new(), kept }
    }

    /// Runs `f` on `count` blocks.
    fn with_blocks<T>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if count > self.kept {
            return f(&mut vec![Block::new(); count]);
        }
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        f(&mut self.blocks[..count])
    }
}

/// Starts `n` threads that run hashing jobs, each keeping `kept` blocks of argon2 memory, and
/// returns the queue that feeds them.
///
/// Dedicated threads rather than tokio's blocking pool: each keeps its argon2 memory, so a
/// fixed set bounds that memory at `n` times one hash's.
fn start_threads(n: usize, kept: usize) -> std::sync::mpsc::Sender<HashJob> {
    let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            let mut memory = Memory::new(kept);
            loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(&mut memory),
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
    /// No hashing thread could be started.
    #[error("no hashing thread could be started")]
    Threads,
}

impl Argon2Hasher {
    /// A hasher with the default (OWASP) parameters running at most `permits` hashes at once
    /// (0 is taken as 1). Computes the dummy hash, so it takes one hash's time.
    pub fn new(permits: usize) -> Result<Self, HasherError> {
        Self::with_params(Argon2Params::default(), permits)
    }

    /// A hasher with custom parameters: cheaper ones for tests; production keeps the default.
    pub fn with_params(params: Argon2Params, permits: usize) -> Result<Self, HasherError> {
        let kept = params.block_count();
        let argon2 = Argon2::new(ALGORITHM, VERSION, params);
        let permits = permits.max(1);
        let jobs = start_threads(permits, kept);
        // The dummy is hashed on a hashing thread too, in the memory it keeps.
        let (done, dummy) = std::sync::mpsc::channel();
        let hasher = argon2.clone();
        let job: HashJob = Box::new(move |memory| {
            let _ = done.send(hash_with(&hasher, memory, DUMMY_PASSWORD));
        });
        jobs.send(job).map_err(|_| HasherError::Threads)?;
        let dummy = PasswordHash::new(dummy.recv().map_err(|_| HasherError::Threads)??);
        Ok(Self { argon2, permits: Arc::new(Semaphore::new(permits)), jobs, dummy })
    }

    /// Runs `job` on a hashing thread once a permit is free. The permit moves into the job, so
    /// it is held until the hash is done even if the caller stops waiting.
    async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Argon2<'static>, &mut Memory) -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(Error::internal)?;
        let argon2 = self.argon2.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let work: HashJob = Box::new(move |memory| {
            let _permit = permit;
            let _ = done.send(job(&argon2, memory));
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
        let phc = self.run(move |argon2, memory| hash_with(argon2, memory, password.expose().as_bytes())).await?;
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
            self.run(move |_, memory| verify_with(memory, password.expose().as_bytes(), stored.as_str())).await?;
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

/// argon2's output for `password` and `salt` under `argon2`'s parameters, `len` bytes long,
/// computed in `memory`.
fn output(
    argon2: &Argon2<'_>,
    memory: &mut Memory,
    password: &[u8],
    salt: &[u8],
    len: usize,
) -> Result<Output, password_hash::Error> {
    memory.with_blocks(argon2.params().block_count(), |blocks| {
        Output::init_with(len, |out| Ok(argon2.hash_password_into_with_memory(password, salt, out, blocks)?))
    })
}

/// The PHC string of `password` with a fresh salt from the operating system.
fn hash_with(argon2: &Argon2<'_>, memory: &mut Memory, password: &[u8]) -> Result<String, HasherError> {
    let mut salt = [0; SALT_LEN];
    OsRng.try_fill_bytes(&mut salt).map_err(|_| HasherError::Random)?;
    let len = argon2.params().output_len().unwrap_or(Argon2Params::DEFAULT_OUTPUT_LEN);
    let hash = output(argon2, memory, password, &salt, len).map_err(HasherError::Argon2)?;
    let salt = SaltString::encode_b64(&salt).map_err(HasherError::Argon2)?;
    let phc = password_hash::PasswordHash {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(argon2.params()).map_err(HasherError::Argon2)?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`, hashed with the algorithm, version and
/// parameters `stored` names. A string that is not a complete argon2 PHC string is an error,
/// not a mismatch.
fn verify_with(memory: &mut Memory, password: &[u8], stored: &str) -> Result<bool, password_hash::Error> {
    let parsed = password_hash::PasswordHash::new(stored)?;
    // Without a salt or an output there is nothing to compare: that would hide a corrupt row
    // and answer faster than a real verification.
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
    let argon2 = Argon2::new(algorithm, version, Argon2Params::try_from(&parsed)?);
    let mut salt_bytes = [0; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    // `Output`'s comparison takes constant time.
    Ok(output(&argon2, memory, password, salt, expected.len())? == expected)
}
