//! Idempotent writes: a retried request gets the first answer again and does nothing twice.
//!
//! The key and its answer are stored by the repository in the transaction of the change they
//! answer, so the claim, the change and the answer commit together or not at all: a request
//! cut off anywhere (a client reset, a killed process, a failed commit) leaves no key behind,
//! and its retry simply runs. Two copies of one request racing each run up to the write; the
//! second one's write finds the key stored by the first (PostgreSQL makes it wait for the
//! first's transaction to end), writes nothing, and answers the first one's answer.

use super::{Plinth, Principal};
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::ports::{IdempotencyKey, IdempotencyScope, IdempotentWrite, Keyed, Lookup, StoredResponse};

/// Renders the answer a replay of a success gets.
pub type KeptAnswer<'a, T> = &'a (dyn Fn(&T) -> Result<StoredResponse> + Send + Sync);

/// Renders the answer a replay of a refusal gets; `None` for a failure that a retry may fix
/// (unavailable, internal), which is not kept.
pub type RefusedAnswer<'a> = &'a (dyn Fn(&Error) -> Option<StoredResponse> + Send + Sync);

/// A request's `Idempotency-Key` and how its answers are kept, as the API renders them.
#[derive(Clone, Copy)]
pub struct Idempotency<'a, T> {
    /// The key the client chose.
    pub key: &'a IdempotencyKey,
    /// The request's content hash (its route and body).
    pub fingerprint: u128,
    /// The answer kept for a success (a webhook's secret is left out of it).
    pub kept: KeptAnswer<'a, T>,
    /// The answer kept for a refusal.
    pub refused: RefusedAnswer<'a>,
}

impl<T> std::fmt::Debug for Idempotency<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").field("key", &self.key).finish_non_exhaustive()
    }
}

/// What an idempotent use case answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The request ran now.
    Done(T),
    /// The request ran before: its first answer, to send again.
    Replay(StoredResponse),
}

impl Plinth {
    /// Runs `prepare`, then `write` with the key to store alongside the change, at most once
    /// per key of `who`; without a key it just runs both. Errors: `IdempotencyKeyReused`;
    /// whatever `prepare` and `write` return.
    pub(super) async fn once<T>(
        &self,
        who: &Principal,
        idempotency: Option<Idempotency<'_, T>>,
        prepare: impl AsyncFnOnce() -> Result<T>,
        write: impl AsyncFnOnce(&T, Option<&IdempotentWrite>) -> Result<Keyed>,
    ) -> Result<Answer<T>> {
        let Some(idem) = idempotency else {
            let value = prepare().await?;
            write(&value, None).await?;
            return Ok(Answer::Done(value));
        };
        // A key's requests are scoped by the key's id, a person's by theirs.
        let scope = IdempotencyScope { tenant: who.tenant, user: UserId::from_uuid(who.id()), key: idem.key.clone() };
        let store = &self.ports.idempotency;
        match store.lookup(&scope, idem.fingerprint).await? {
            Lookup::New => {}
            Lookup::Replay(first) => return Ok(Answer::Replay(first)),
            Lookup::Mismatch => return Err(Error::IdempotencyKeyReused),
        }
        let expires_at = self.ports.clock.now() + self.settings.idempotency_ttl;
        let keyed =
            |response| IdempotentWrite { scope: scope.clone(), fingerprint: idem.fingerprint, expires_at, response };
        let ran = async {
            let value = prepare().await?;
            let key = keyed((idem.kept)(&value)?);
            Ok((write(&value, Some(&key)).await?, value))
        };
        match ran.await {
            Ok((Keyed::Written, value)) => Ok(Answer::Done(value)),
            Ok((Keyed::KeyTaken, _)) => match store.lookup(&scope, idem.fingerprint).await? {
                Lookup::Replay(first) => Ok(Answer::Replay(first)),
                Lookup::Mismatch => Err(Error::IdempotencyKeyReused),
                Lookup::New => Err(Error::internal("an idempotency key was taken and is gone")),
            },
            Err(e) => {
                if let Some(response) = (idem.refused)(&e) {
                    store.record(&keyed(response)).await?;
                }
                Err(e)
            }
        }
    }
}
