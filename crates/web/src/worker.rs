//! The job worker: `concurrency` tasks working the queue, and one that rescues jobs of dead
//! workers and prunes old data. It runs inside the API process (`PLINTH_WORKER=true`) or
//! alone (`plinth worker`), and stops claiming as soon as it is told to stop.

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::usecases::Plinth;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Jobs worked at once.
    pub concurrency: usize,
    /// A job claimed longer than this is taken to belong to a dead worker and freed.
    pub rescue_after: Duration,
    /// Finished deliveries and their events are kept this long.
    pub retention: Duration,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long an idle worker waits before looking again without a notification.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often jobs are rescued.
const RESCUE_EVERY: Duration = Duration::from_secs(5);
/// How often old data is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl WorkerHandle {
    /// Starts the worker.
    pub fn spawn(plinth: Arc<Plinth>, settings: WorkerSettings) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = (0..settings.concurrency.max(1))
            .map(|n| {
                let name = format!("{}-{}-{n}", hostname(), std::process::id());
                tokio::spawn(work(plinth.clone(), name, stopped.clone()))
            })
            .collect();
        tasks.push(tokio::spawn(maintain(plinth, settings, stopped)));
        Self { stop, tasks }
    }

    /// Stops claiming; returns once every job in hand is finished.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "plinth".into())
}

async fn work(plinth: Arc<Plinth>, name: String, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        match plinth.work_one(&name).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    () = plinth.wait_for_work(IDLE_POLL) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, worker = %name, "worker: job failed");
                tokio::select! {
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }
}

async fn maintain(plinth: Arc<Plinth>, settings: WorkerSettings, mut stopped: watch::Receiver<bool>) {
    let mut rescue = tokio::time::interval(RESCUE_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = rescue.tick() => match plinth.rescue_jobs(settings.rescue_after).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(jobs = n, "rescued jobs of a worker that stopped answering"),
                Err(e) => tracing::warn!(error = %e, "job rescue failed"),
            },
            _ = prune.tick() => {
                match plinth.prune(settings.retention).await {
                    Ok(p) => tracing::info!(deliveries = p.deliveries, events = p.events, idempotency_keys = p.idempotency_keys, sessions = p.sessions, emails = p.emails, audit_entries = p.audit_entries, "pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
                match plinth.purge_deleted_tenants().await {
                    Ok(p) if p.tenants > 0 => tracing::info!(tenants = p.tenants, rows = p.rows, "purged deleted tenants"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purging deleted tenants failed; trying again next time"),
                }
            }
        }
    }
}
