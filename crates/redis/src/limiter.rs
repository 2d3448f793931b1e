//! GCRA in one atomic Lua script, on Redis' own clock, so every instance shares one quota.
//!
//! Same semantics as the in-process governor limiter: a burst of the whole quota, then one
//! request per `60 s / quota`; a refused request is not counted.
//!
//! On a single node the checks are batched: a background task takes every check waiting when
//! Redis answers the previous batch and sends them as one script call. Each check is still
//! decided by Redis, exactly and in arrival order (the script runs the checks one after
//! another, so the same key twice in a batch is counted twice), but a busy instance pays one
//! round trip and one script call for many requests instead of one each. The batch size
//! follows the load by itself: one check alone goes out at once. A cluster cannot run one
//! script over keys in different slots, so there every check is its own call.
//!
//! Optionally ([`RedisLimiter::leasing`]) an instance also takes quota in advance: when a
//! subject's requests come faster than one per lease period, one call takes several requests'
//! worth (a lease) and the next requests spend it here without asking Redis. A lease is at
//! most `share` percent of the quota (at least one request, so small quotas stay exact), and
//! lasts [`LEASE_TTL`]. The error is bounded: a lease is counted in Redis when it is taken, so
//! the fleet never admits more than the quota over a window plus one lease per instance (spent
//! after its window moved on), and an instance that leaves a lease unspent refuses at most
//! that much too early. The `RateLimit` headers count what Redis had left when the lease was
//! taken plus what remains of it here: exact with one instance, an estimate with several.

use foldhash::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plinth_domain::ports::{Decision, Policy, Quota, RateLimiter};
use plinth_domain::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::conn::{REDIS, RedisConn, op};
use plinth_domain::timing::{self, Phase};

/// KEYS: the subjects' keys. ARGV: for each key, its emission interval in µs, its quota, and
/// how many requests to take at most (one, or a lease). Takes as many as are available, up to
/// that. Returns, for each key in turn, {requests taken (0: refused), requests left that could
/// be taken at once, µs until full, µs until the next request is admitted (when refused)}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local n = 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local window = interval * burst
  local available = math.floor((now + window - tat) / interval)
  if available < 1 then
    out[n + 1] = 0; out[n + 2] = 0; out[n + 3] = tat - now; out[n + 4] = tat + interval - window - now
  else
    local take = math.min(want, available)
    local new_tat = tat + take * interval
    redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
    out[n + 1] = take; out[n + 2] = available - take; out[n + 3] = new_tat - now; out[n + 4] = 0
  end
  n = n + 4
end
return out
";

/// The most checks one script call carries.
const MAX_BATCH: usize = 256;

/// Checks waiting for the batcher beyond this are refused to the caller as `Unavailable` (the
/// fallback limiter then counts them) rather than queued without bound.
const QUEUE: usize = 16 * 1024;

/// How long a lease may be spent.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// Leases kept before the expired ones are dropped.
const PRUNE_AT: usize = 64 * 1024;

/// One question for Redis: take up to `want` requests of `quota` under `key`.
#[derive(Debug, Clone, Copy)]
struct Ask<'a> {
    key: &'a str,
    quota: u32,
    want: u32,
}

/// What Redis answered to an [`Ask`].
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// Requests taken; 0 when refused.
    taken: u32,
    quota: u32,
    /// Requests Redis could still give at once.
    left: u32,
    full_in_us: i64,
    retry_in_us: i64,
}

impl Taken {
    /// The decision for the first request of what was taken, `spare` of it still to spend
    /// (which counts as not spent yet).
    fn decision(&self, spare: u32) -> Decision {
        let allowed = self.taken > 0;
        Decision {
            allowed,
            limit: self.quota,
            remaining: if allowed { self.left.saturating_add(spare) } else { 0 },
            reset_secs: whole_secs(self.full_in_us - unspent_us(spare, self.quota)),
            retry_after_secs: if allowed { 0 } else { whole_secs(self.retry_in_us).max(1) },
        }
    }
}

/// One check waiting for its batch.
struct Pending {
    key: String,
    quota: u32,
    want: u32,
    reply: oneshot::Sender<Result<Taken>>,
}

/// Quota taken from Redis in advance, for one subject.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Requests still to spend.
    spare: u32,
    /// How many the last lease took.
    size: u32,
    /// What Redis had left when the lease was taken.
    left: u32,
    taken_at: Instant,
    full_in_us: i64,
    /// Whether a new lease is being asked for.
    asking: bool,
}

impl Lease {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.taken_at) < LEASE_TTL
    }

    /// The decision for a request just spent from this lease: as Redis would answer if the
    /// lease's spare requests had not been taken yet (what it had left, the spare ones, and
    /// what was earned back since).
    fn decision(&self, quota: u32, now: Instant) -> Decision {
        let elapsed = i64::try_from(now.duration_since(self.taken_at).as_micros()).unwrap_or(i64::MAX);
        let earned = u32::try_from(u64::try_from(elapsed).unwrap_or(0) / interval_us(quota)).unwrap_or(u32::MAX);
        Decision {
            allowed: true,
            limit: quota,
            remaining: self.left.saturating_add(self.spare).saturating_add(earned).min(quota),
            reset_secs: whole_secs(self.full_in_us - elapsed - unspent_us(self.spare, quota)),
            retry_after_secs: 0,
        }
    }
}

/// The leases of every subject, and how big one may be.
#[derive(Debug)]
struct Leases {
    share_percent: u32,
    map: Mutex<HashMap<String, Lease>>,
}

/// What spending from a lease came to.
enum Spent {
    /// The lease had a request left: admitted without asking Redis.
    Admitted(Decision),
    /// Ask Redis for this many requests (1: this request alone; more: a new lease).
    Ask(u32),
}

impl Leases {
    /// The most one lease of `quota` may take: `share_percent` of it, at least one.
    fn cap(&self, quota: u32) -> u32 {
        u32::try_from(u64::from(quota) * u64::from(self.share_percent) / 100).unwrap_or(u32::MAX).max(1)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends one request of `key`'s lease, if it has one left; else says how many to ask
    /// for: twice the last lease when it ran out while live (requests come faster than it
    /// lasts), what was spent of it when it ran out of time (the rate it lasted for). Only one
    /// lease is asked for at a time per subject: while one is on its way, others ask for one
    /// request each, so that concurrent requests don't each take a lease and leave it unspent.
    fn spend(&self, key: &str, quota: u32, now: Instant) -> Spent {
        let mut map = self.map();
        let Some(lease) = map.get_mut(key) else { return Spent::Ask(1) };
        let live = lease.live(now);
        if live && lease.spare > 0 {
            lease.spare -= 1;
            return Spent::Admitted(lease.decision(quota, now));
        }
        if lease.asking {
            return Spent::Ask(1);
        }
        let want = if live { lease.size.saturating_mul(2) } else { lease.size - lease.spare }.clamp(1, self.cap(quota));
        lease.asking = want > 1;
        Spent::Ask(want)
    }

    /// Records Redis' answer to an ask for `want` (`None` when Redis failed): the answer to a
    /// lease's ask is the new lease; a single request's leaves a live lease as it is.
    fn answered(&self, key: String, want: u32, answer: Option<&Taken>, now: Instant) {
        let mut map = self.map();
        if map.len() >= PRUNE_AT {
            map.retain(|_, l| l.live(now));
        }
        let current = map.get_mut(&key);
        let fresh = |t: &Taken| Lease {
            spare: t.taken.saturating_sub(1),
            size: t.taken.max(1),
            left: t.left,
            taken_at: now,
            full_in_us: t.full_in_us,
            asking: false,
        };
        match (current, answer) {
            (Some(lease), Some(t)) if t.taken > 0 && (want > 1 || !lease.live(now)) => *lease = fresh(t),
            (Some(lease), _) if want > 1 => lease.asking = false,
            (None, Some(t)) if t.taken > 0 => {
                map.insert(key, fresh(t));
            }
            _ => {}
        }
    }
}

/// [`RateLimiter`] over Redis.
#[derive(Debug)]
pub struct RedisLimiter {
    conn: RedisConn,
    script: redis::Script,
    /// The batcher's queue (single node only).
    batches: Option<(mpsc::Sender<Pending>, JoinHandle<()>)>,
    leases: Option<Leases>,
}

impl Drop for RedisLimiter {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.batches {
            task.abort();
        }
    }
}

impl RedisLimiter {
    /// A limiter over `conn` that asks Redis for every request; on a single node it starts its
    /// batcher (needs a Tokio runtime).
    pub fn new(conn: RedisConn) -> Self {
        let script = redis::Script::new(GCRA);
        let batches = (!conn.is_cluster()).then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            (tx, tokio::spawn(batcher(conn.clone(), script.clone(), rx)))
        });
        Self { conn, script, batches, leases: None }
    }

    /// A limiter that takes up to `share_percent` of a quota at once as a lease (see the
    /// module's documentation); 0 is [`RedisLimiter::new`].
    pub fn leasing(conn: RedisConn, share_percent: u32) -> Self {
        let mut limiter = Self::new(conn);
        limiter.leases =
            (share_percent > 0).then(|| Leases { share_percent: share_percent.min(100), map: Mutex::default() });
        limiter
    }

    fn key(&self, policy: Policy, subject: &str, quota: u32) -> String {
        // The quota is part of the key: a plan change starts a fresh bucket, as governor does.
        // The braces are a Redis Cluster hash tag. Built without `format!`: once per request.
        let mut n = itoa::Buffer::new();
        self.conn.key(&["rl:", policy.as_str(), ":", n.format(quota), ":{", subject, "}"].concat())
    }

    /// Asks Redis, through the batcher when there is one.
    async fn ask(&self, key: String, quota: u32, want: u32) -> Result<Taken> {
        let Some((queue, _)) = &self.batches else {
            let mut taken = run(&self.conn, &self.script, &[Ask { key: &key, quota, want }]).await?;
            return taken.pop().ok_or_else(gone);
        };
        // The batch's script call runs in the batcher's task: the request's `redis` phase is
        // its wait for the answer.
        let _waiting = timing::measure(Phase::Redis);
        let (reply, answer) = oneshot::channel();
        queue.try_send(Pending { key, quota, want, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn interval_us(quota: u32) -> u64 {
    60_000_000 / u64::from(quota)
}

/// The time `spare` requests of `quota` take to earn back, in µs.
fn unspent_us(spare: u32, quota: u32) -> i64 {
    i64::try_from(u64::from(spare) * interval_us(quota)).unwrap_or(i64::MAX)
}

/// Asks every question of `asks` in one script call, answering each in order.
async fn run(conn: &RedisConn, script: &redis::Script, asks: &[Ask<'_>]) -> Result<Vec<Taken>> {
    let mut invocation = script.prepare_invoke();
    for a in asks {
        invocation.key(a.key).arg(interval_us(a.quota)).arg(a.quota).arg(a.want);
    }
    let raw: Vec<i64> = conn.script(op::LIMITER_CHECK, invocation).await?;
    if raw.len() != asks.len() * 4 {
        return Err(Error::unavailable(REDIS, format!("rate limit script answered {} values", raw.len())));
    }
    let count = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    Ok(asks
        .iter()
        .zip(raw.chunks_exact(4))
        .map(|(a, r)| Taken {
            taken: count(r[0]),
            quota: a.quota,
            left: count(r[1]),
            full_in_us: r[2],
            retry_in_us: r[3],
        })
        .collect())
}

/// Takes every check waiting, runs them as one call, answers each; repeats.
async fn batcher(conn: RedisConn, script: redis::Script, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let asks: Vec<Ask<'_>> =
            batch.iter().map(|p: &Pending| Ask { key: p.key.as_str(), quota: p.quota, want: p.want }).collect();
        match run(&conn, &script, &asks).await {
            Ok(answers) => {
                for (p, t) in batch.drain(..).zip(answers) {
                    let _ = p.reply.send(Ok(t));
                }
            }
            Err(e) => {
                let cause = e.to_string();
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(Error::unavailable(REDIS, cause.clone())));
                }
            }
        }
    }
}

fn whole_secs(micros: i64) -> u64 {
    u64::try_from(micros.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

fn gone() -> Error {
    Error::Unavailable { dependency: REDIS, source: None }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    #[tracing::instrument(name = "redis_rate_limit", level = "debug", skip(self, subject), fields(policy = policy.as_str()))]
    async fn check(&self, policy: Policy, subject: &str, quota: Quota) -> Result<Decision> {
        let q = quota.per_minute.get();
        let key = self.key(policy, subject, q);
        let Some(leases) = &self.leases else {
            return Ok(self.ask(key, q, 1).await?.decision(0));
        };
        let want = match leases.spend(&key, q, Instant::now()) {
            Spent::Admitted(decision) => return Ok(decision),
            Spent::Ask(want) => want,
        };
        let answer = self.ask(key.clone(), q, want).await;
        leases.answered(key, want, answer.as_ref().ok(), Instant::now());
        let taken = answer?;
        // A single request's answer takes exactly one: nothing spare to count.
        Ok(taken.decision(if want > 1 { taken.taken.saturating_sub(1) } else { 0 }))
    }
}
