//! Read replicas: the reads that tolerate a little staleness go to a streaming standby whose
//! lag the adapter measures every second, with read-your-writes kept on this instance.
//!
//! **Read-your-writes** is kept by a window: once this instance has written for a tenant, that
//! tenant's reads on this instance go to the primary for [`Replicas::window`], counted by the
//! injected clock from the end of the write's call. A replica is read only while its last
//! check (at most [`CHECK_EVERY`] + [`CHECK_TIMEOUT`] ago) measured a lag of at most the
//! configured maximum; a lag grows at most as fast as time passes, so when a read starts the
//! replica lags by at most `max_lag + CHECK_EVERY + CHECK_TIMEOUT`, and that is the window: a
//! write older than it has been replayed. No statement is added to a write (waiting on an LSN
//! would cost a round trip on every write and a wait on every read after one).
//!
//! **Lag** is measured from both ends: the primary's `pg_current_wal_lsn()`, then the
//! standby's `pg_last_wal_replay_lsn()`. A standby that has replayed past the primary's
//! position lags by nothing, however old its last replayed transaction is (an idle primary
//! writes no commits, and `now() - pg_last_xact_replay_timestamp()` grows though nothing is
//! missing). Otherwise its lag is the smaller of two upper bounds: the age of the last
//! transaction it replayed (it has every commit up to that one) and the time since the most
//! recent check whose primary position it has passed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use plinth_domain::ids::TenantId;
use plinth_domain::metric;
use plinth_domain::ports::Clock;

/// How often each instance measures its replicas' lag.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The longest one replica's check may take; a check that takes longer fails.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How many of the primary's past positions a check keeps, to date a standby's replay by.
const HISTORY: usize = 16;

/// The standby's side of a check.
const REPLICA_CHECK: &str = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::float8, \
     extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8";
/// The primary's side of a check.
pub(crate) const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8";

/// How replicas are used.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// A replica that lags more than this (or can't be measured) is not read.
    pub max_lag: Duration,
}

/// One standby.
pub(crate) struct Replica {
    /// `host:port`, its label in metrics and logs (never its URL: that may hold a password).
    pub(crate) label: String,
    /// One pool per worker thread, as the primary's.
    pub(crate) pools: Arc<[Pool]>,
    /// Whether reads may go to it now: its last check passed and no read failed on it since.
    usable: AtomicBool,
    /// When its last passing check ended (for the check's freshness).
    passed_at: Mutex<Option<Instant>>,
    /// Its last measured lag, in microseconds (`u64::MAX`: unknown).
    lag_micros: AtomicU64,
    /// The primary's recent positions, newest last: when each was read, and the LSN.
    history: Mutex<VecDeque<(Instant, f64)>>,
}

impl Replica {
    /// A standby read through `pools`, labelled `label`; unused until its first check passes.
    pub(crate) fn new(label: String, pools: Arc<[Pool]>) -> Self {
        Self {
            label,
            pools,
            usable: AtomicBool::new(false),
            passed_at: Mutex::new(None),
            lag_micros: AtomicU64::new(u64::MAX),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Whether reads may go to it: usable, and its last passing check is recent enough.
    fn in_use(&self) -> bool {
        self.usable.load(Ordering::Acquire)
            && lock(&self.passed_at).is_some_and(|at| at.elapsed() <= CHECK_EVERY + CHECK_TIMEOUT)
    }

    /// Takes it out of use until its next passing check (a read on it failed).
    pub(crate) fn set_aside(&self) {
        if self.usable.swap(false, Ordering::AcqRel) {
            tracing::warn!(replica = %self.label, "a read failed on the replica: reads go to the primary until it passes a check");
        }
    }

    /// Records one check: `primary` is the primary's position read at `asked` (`None` when the
    /// primary did not answer), `standby` the standby's answer (`None` when it did not).
    fn record(&self, asked: Instant, primary: Option<f64>, standby: Option<Standby>, max_lag: Duration) {
        let lag = {
            let mut history = lock(&self.history);
            if let Some(lsn) = primary {
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back((asked, lsn));
            }
            standby.and_then(|s| lag_of(&s, primary, &history))
        };
        let micros = lag.map_or(u64::MAX, |l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX));
        self.lag_micros.store(micros, Ordering::Release);
        let passes = lag.is_some_and(|l| l <= max_lag);
        if passes {
            *lock(&self.passed_at) = Some(Instant::now());
        }
        let was = self.usable.swap(passes, Ordering::AcqRel);
        if was != passes {
            match lag {
                Some(l) if passes => tracing::info!(replica = %self.label, lag_ms = l.as_millis(), "replica in use"),
                Some(l) => {
                    tracing::warn!(replica = %self.label, lag_ms = l.as_millis(), "replica lags too far: not read")
                }
                None => tracing::warn!(replica = %self.label, "replica unreachable or not a standby: not read"),
            }
        }
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("label", &self.label).field("in_use", &self.in_use()).finish_non_exhaustive()
    }
}

/// What a standby answered to a check.
#[derive(Debug, Clone, Copy)]
struct Standby {
    /// Its replay position.
    replay: f64,
    /// How long ago the last transaction it replayed committed (`None`: none since it started).
    replay_age: Option<Duration>,
}

/// The lag of a standby that answered `standby`, given the primary's position now (`primary`)
/// and its recent positions: `None` when it can't be bounded.
fn lag_of(standby: &Standby, primary: Option<f64>, history: &VecDeque<(Instant, f64)>) -> Option<Duration> {
    if primary.is_some_and(|p| standby.replay >= p) {
        return Some(Duration::ZERO);
    }
    let by_history = history.iter().rev().find(|(_, lsn)| *lsn <= standby.replay).map(|(at, _)| at.elapsed());
    match (by_history, standby.replay_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The replicas of one [`crate::PgStore`] and the tenants this instance wrote for lately.
pub(crate) struct Replicas {
    pub(crate) members: Box<[Replica]>,
    /// Round-robin among the replicas in use.
    next: AtomicUsize,
    /// The tenants this instance wrote for within the window: when each write's call ended,
    /// by the clock's monotonic reading.
    recent: Mutex<HashMap<TenantId, Duration>>,
    /// Read-your-writes: how long after a write its tenant's reads stay on the primary.
    pub(crate) window: Duration,
    max_lag: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas").field("members", &self.members).field("window", &self.window).finish_non_exhaustive()
    }
}

impl Replicas {
    /// No replicas: every read goes to the primary.
    pub(crate) fn none(clock: Arc<dyn Clock>) -> Self {
        Self::new(Vec::new(), &ReplicaSettings { max_lag: Duration::ZERO }, clock)
    }

    /// `members`, read while they lag at most `settings.max_lag`.
    pub(crate) fn new(members: Vec<Replica>, settings: &ReplicaSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            members: members.into_boxed_slice(),
            next: AtomicUsize::new(0),
            recent: Mutex::new(HashMap::new()),
            window: settings.max_lag + CHECK_EVERY + CHECK_TIMEOUT,
            max_lag: settings.max_lag,
            clock,
        }
    }

    /// Whether there are any.
    pub(crate) fn any(&self) -> bool {
        !self.members.is_empty()
    }

    /// Notes that this instance just wrote for `tenant` (its call is over).
    pub(crate) fn wrote(&self, tenant: TenantId) {
        if !self.any() {
            return;
        }
        let now = self.clock.elapsed();
        let mut recent = lock(&self.recent);
        // Forget the writes whose window is over, now and then, so the map stays small.
        if recent.len() >= 1024 {
            recent.retain(|_, at| now.saturating_sub(*at) < self.window);
        }
        recent.insert(tenant, now);
    }

    /// The replica `tenant`'s next stale-tolerant read should go to: `None` when there is none
    /// in use or this instance wrote for the tenant within the window.
    pub(crate) fn pick(&self, tenant: TenantId) -> Option<&Replica> {
        if !self.any() {
            return None;
        }
        if let Some(at) = lock(&self.recent).get(&tenant)
            && self.clock.elapsed().saturating_sub(*at) < self.window
        {
            return None;
        }
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| &self.members[(start + i) % n]).find(|r| r.in_use())
    }

    /// Measures every replica once, against the primary connection `primary` (`None` when the
    /// primary could not be reached).
    pub(crate) async fn check(&self, primary: Option<&Object>) {
        for replica in &self.members {
            let asked = Instant::now();
            let position = match primary {
                Some(client) => {
                    match tokio::time::timeout(CHECK_TIMEOUT, client.query_one(PRIMARY_POSITION, &[])).await {
                        Ok(Ok(row)) => row.try_get::<_, f64>(0).ok(),
                        _ => None,
                    }
                }
                None => None,
            };
            let standby = tokio::time::timeout(CHECK_TIMEOUT, standby_position(replica)).await.ok().flatten();
            replica.record(asked, position, standby, self.max_lag);
        }
    }

    /// Sets each replica's gauges: `db_replica_lag_seconds` and `db_replica_in_use`.
    pub(crate) fn record_gauges(&self) {
        for replica in &self.members {
            let labels = [("replica", replica.label.clone())];
            let micros = replica.lag_micros.load(Ordering::Acquire);
            if micros != u64::MAX {
                #[allow(clippy::cast_precision_loss)] // microseconds of lag: far below 2^52
                metrics::gauge!(metric::DB_REPLICA_LAG, &labels).set(micros as f64 / 1e6);
            }
            metrics::gauge!(metric::DB_REPLICA_IN_USE, &labels).set(if replica.in_use() { 1.0 } else { 0.0 });
        }
    }
}

/// The standby's answer to a check, or `None` when it did not answer or is not a standby.
async fn standby_position(replica: &Replica) -> Option<Standby> {
    let pool = &replica.pools[plinth_affinity::slot(replica.pools.len())];
    let client = pool.get().await.ok()?;
    let row = client.query_one(REPLICA_CHECK, &[]).await.ok()?;
    let in_recovery: bool = row.try_get(0).ok()?;
    if !in_recovery {
        return None;
    }
    let replay: f64 = row.try_get::<_, Option<f64>>(1).ok()??;
    let replay_age = row.try_get::<_, Option<f64>>(2).ok()?.map(|s| Duration::from_secs_f64(s.max(0.0)));
    Some(Standby { replay, replay_age })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `host:port` of `config`'s first host, for labels (a socket directory's path for a Unix one).
pub(crate) fn label(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(replay: f64, age_ms: Option<u64>) -> Standby {
        Standby { replay, replay_age: age_ms.map(Duration::from_millis) }
    }

    #[test]
    fn a_standby_past_the_primary_lags_by_nothing_however_old_its_last_commit() {
        let history = VecDeque::new();
        assert_eq!(lag_of(&standby(100.0, Some(60_000)), Some(100.0), &history), Some(Duration::ZERO));
        assert_eq!(lag_of(&standby(100.0, None), Some(90.0), &history), Some(Duration::ZERO));
    }

    #[test]
    fn a_standby_behind_lags_by_the_smaller_bound() {
        let mut history = VecDeque::new();
        history.push_back((Instant::now().checked_sub(Duration::from_secs(30)).unwrap_or_else(Instant::now), 50.0));
        // Its last commit is 2 s old, its replay passed a position 30 s old: 2 s.
        let lag = lag_of(&standby(60.0, Some(2000)), Some(100.0), &history).unwrap_or(Duration::MAX);
        assert!(lag >= Duration::from_secs(2) && lag < Duration::from_secs(3), "{lag:?}");
        // No commit replayed since it started: the history alone bounds it.
        let lag = lag_of(&standby(60.0, None), Some(100.0), &history).unwrap_or(Duration::MAX);
        assert!(lag >= Duration::from_secs(30) && lag < Duration::from_secs(31), "{lag:?}");
        // Nothing bounds it: unknown.
        assert_eq!(lag_of(&standby(10.0, None), Some(100.0), &history), None);
        assert_eq!(lag_of(&standby(10.0, None), None, &VecDeque::new()), None);
    }
}
