//! A tenant's export (data portability): everything it holds, as NDJSON lines, produced by an
//! adapter into a bounded channel and read by the HTTP answer as it is sent.
//!
//! One JSON object per line, `{"type": "<kind>", "data": {…}}`, in this order: the `tenant`,
//! then every `user`, `project`, `webhook`, `delivery` and `audit` entry (each kind ordered by
//! id, which for UUIDv7 ids is the order they were made in; audit entries by `seq`), and last
//! `{"type": "end", "data": {"counts": {…}}}`, how many lines of each kind came before it. A
//! file without the `end` line is incomplete: the export failed after it began.
//!
//! What each line holds is decided here, once for every adapter ([`ExportRecord`]): never a
//! password hash, a webhook's secret (not even sealed), a token or a key.
//!
//! **Memory.** The adapter writes records into an [`ExportWriter`], which serializes them into
//! chunks of about [`CHUNK_BYTES`] and sends each through a channel that holds at most
//! [`CHANNEL_CHUNKS`]. When the reader (the HTTP body, as fast as the client reads) falls
//! behind, the channel is full and the writer's next send waits, and with it the adapter's next
//! read from its store: an export holds a few chunks and one batch of rows whatever the
//! tenant's size. When the reader goes away (the client disconnected), the send fails, the
//! writer answers [`Stopped::Gone`] and the adapter stops reading.
//!
//! The channel is tokio's (`sync`), so this module does no I/O and needs no `futures`: the
//! reader's side is [`TenantExport`], whose [`TenantExport::next`] the web layer turns into a
//! response body.

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::audit::AuditRecord;
use crate::entities::{Delivery, DeliveryState, Project, Tenant, User, Webhook};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::{DeliveryId, EventId, UserId, WebhookId};
use crate::usecases::AuditView;
use crate::values::{Email, Role};

/// A chunk is sent once the lines written hold at least this many bytes.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// Chunks the channel holds before the writer waits for the reader.
pub const CHANNEL_CHUNKS: usize = 4;

/// The kinds of lines, in the order an export writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// The tenant itself: one line, first.
    Tenant,
    /// Its users.
    User,
    /// Its projects.
    Project,
    /// Its webhooks.
    Webhook,
    /// Its webhooks' deliveries.
    Delivery,
    /// Its audit log's entries.
    Audit,
}

impl RecordKind {
    /// The kind's `type` on its lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::User => "user",
            Self::Project => "project",
            Self::Webhook => "webhook",
            Self::Delivery => "delivery",
            Self::Audit => "audit",
        }
    }
}

/// A row an export holds, and what its line's `data` shows of it.
pub trait ExportRecord {
    /// Its kind.
    const KIND: RecordKind;

    /// Its line's `data`.
    fn into_data(self) -> impl Serialize;
}

impl ExportRecord for Tenant {
    const KIND: RecordKind = RecordKind::Tenant;

    /// As the API shows it.
    fn into_data(self) -> impl Serialize {
        self
    }
}

/// A user as an export shows it: the API's fields and when the user was made; never the
/// password's hash.
#[derive(Serialize)]
struct UserData {
    id: UserId,
    email: Email,
    role: Role,
    email_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl ExportRecord for User {
    const KIND: RecordKind = RecordKind::User;

    fn into_data(self) -> impl Serialize {
        UserData {
            id: self.id,
            email: self.email,
            role: self.role,
            email_verified: self.email_verified,
            created_at: self.created_at,
        }
    }
}

impl ExportRecord for Project {
    const KIND: RecordKind = RecordKind::Project;

    /// As the API shows it.
    fn into_data(self) -> impl Serialize {
        self
    }
}

impl ExportRecord for Webhook {
    const KIND: RecordKind = RecordKind::Webhook;

    /// As the API lists it: no secret (the entity holds none).
    fn into_data(self) -> impl Serialize {
        self
    }
}

/// A delivery as an export shows it: the API's fields and the webhook it goes to.
#[derive(Serialize)]
struct DeliveryData {
    id: DeliveryId,
    webhook_id: WebhookId,
    event_id: EventId,
    event: EventKind,
    state: DeliveryState,
    attempts: u32,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl ExportRecord for Delivery {
    const KIND: RecordKind = RecordKind::Delivery;

    fn into_data(self) -> impl Serialize {
        DeliveryData {
            id: self.id,
            webhook_id: self.webhook_id,
            event_id: self.event_id,
            event: self.event,
            state: self.state,
            attempts: self.attempts,
            last_error: self.last_error,
            created_at: self.created_at,
        }
    }
}

impl ExportRecord for AuditRecord {
    const KIND: RecordKind = RecordKind::Audit;

    /// As `GET /v1/audit-log` shows it.
    fn into_data(self) -> impl Serialize {
        AuditView::of(self)
    }
}

/// How many lines of each kind an export wrote: the `end` line's `counts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportCounts {
    /// Always 1 in a complete export.
    pub tenant: u64,
    /// Users.
    pub user: u64,
    /// Projects.
    pub project: u64,
    /// Webhooks.
    pub webhook: u64,
    /// Deliveries.
    pub delivery: u64,
    /// Audit entries.
    pub audit: u64,
}

impl ExportCounts {
    fn count(&mut self, kind: RecordKind) {
        let n = match kind {
            RecordKind::Tenant => &mut self.tenant,
            RecordKind::User => &mut self.user,
            RecordKind::Project => &mut self.project,
            RecordKind::Webhook => &mut self.webhook,
            RecordKind::Delivery => &mut self.delivery,
            RecordKind::Audit => &mut self.audit,
        };
        *n += 1;
    }
}

/// One line: `{"type": …, "data": …}`.
#[derive(Serialize)]
struct Line<D> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: D,
}

/// The `end` line's `data`.
#[derive(Serialize)]
struct End {
    counts: ExportCounts,
}

/// Why an export stopped before its `end` line.
#[derive(Debug)]
pub enum Stopped {
    /// The reader went away (the client disconnected): there is no one to tell.
    Gone,
    /// Reading or writing failed: the reader gets this error where the `end` line would be.
    Failed(Error),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// The adapter's end of an export: it writes the records in [`RecordKind`]'s order, then calls
/// [`ExportWriter::finish`].
#[derive(Debug)]
pub struct ExportWriter {
    chunks: mpsc::Sender<Result<Bytes>>,
    buf: Vec<u8>,
    last: Option<RecordKind>,
    counts: ExportCounts,
    /// The instance's leave to run one more export, held for as long as the writer (and the
    /// database connection of the task that writes) lives.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ExportWriter {
    /// Holds `permit` until this writer is dropped (its export ends).
    pub(crate) fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    /// Writes `record`'s line. A full chunk is sent first, waiting while the channel is full (the
    /// reader's backpressure). Errors: `Gone` when the reader went away; `Failed` for a record
    /// of a kind that comes before one already written (an adapter's bug), or one that can't be
    /// serialized.
    pub async fn write<R: ExportRecord>(&mut self, record: R) -> Result<(), Stopped> {
        if self.last.is_some_and(|last| R::KIND < last) {
            return Err(Error::internal(format!("an export's {} line came late", R::KIND.as_str())).into());
        }
        self.last = Some(R::KIND);
        serde_json::to_writer(&mut self.buf, &Line { kind: R::KIND.as_str(), data: record.into_data() })
            .map_err(Error::internal)?;
        self.buf.push(b'\n');
        self.counts.count(R::KIND);
        if self.buf.len() >= CHUNK_BYTES {
            self.send().await?;
        }
        Ok(())
    }

    /// Whether the reader went away: an adapter may stop before its next read.
    pub fn is_closed(&self) -> bool {
        self.chunks.is_closed()
    }

    /// Ends the export as `outcome` says: after everything written, the `end` line (a complete
    /// export has exactly one tenant line, else this is a failure); or, after a failure, the
    /// error instead of it (lines written but not yet sent are dropped), logged; or nothing
    /// when the reader is gone.
    pub async fn finish(mut self, outcome: Result<(), Stopped>) {
        match outcome.and_then(|()| self.end_line()) {
            Ok(()) => {
                let _ = self.send().await;
            }
            Err(Stopped::Gone) => {}
            Err(Stopped::Failed(error)) => {
                tracing::warn!(error = %error.chain(), "a tenant export failed after it began: no end line");
                let _ = self.chunks.send(Err(error)).await;
            }
        }
    }

    /// Writes the `end` line, with the counts.
    fn end_line(&mut self) -> Result<(), Stopped> {
        if self.counts.tenant != 1 {
            let n = self.counts.tenant;
            return Err(Error::internal(format!("an export wrote {n} tenant lines")).into());
        }
        let end = Line { kind: "end", data: End { counts: self.counts } };
        serde_json::to_writer(&mut self.buf, &end).map_err(Error::internal)?;
        self.buf.push(b'\n');
        Ok(())
    }

    /// Sends the lines written so far as one chunk.
    async fn send(&mut self) -> Result<(), Stopped> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4));
        self.chunks.send(Ok(Bytes::from(chunk))).await.map_err(|_| Stopped::Gone)
    }
}

/// The reader's end of an export: its NDJSON chunks, in order. Dropping it stops the export
/// (the writer's next send fails).
#[derive(Debug)]
pub struct TenantExport {
    first: Option<Bytes>,
    chunks: mpsc::Receiver<Result<Bytes>>,
}

impl TenantExport {
    /// A writer and its reader, joined by a channel of [`CHANNEL_CHUNKS`] chunks.
    pub fn channel() -> (ExportWriter, Self) {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let writer = ExportWriter {
            chunks: tx,
            buf: Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
            last: None,
            counts: ExportCounts::default(),
            permit: None,
        };
        (writer, Self { first: None, chunks: rx })
    }

    /// Waits for the first chunk, so that a failure before it is an error here (an answer
    /// not yet begun) rather than a cut-off body. Errors: whatever the export failed with;
    /// `Internal` when it ended without a chunk.
    pub async fn first_chunk(&mut self) -> Result<()> {
        if self.first.is_some() {
            return Ok(());
        }
        match self.chunks.recv().await {
            Some(Ok(chunk)) => {
                self.first = Some(chunk);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(Error::internal("the export ended before its first line")),
        }
    }

    /// The next chunk, waiting for it; `None` after the last. An `Err` is the export's last
    /// item: it failed, and the `end` line will not come.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        match self.first.take() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.chunks.recv().await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::{ProjectId, TenantId};
    use crate::values::{Plan, ProjectName, Slug, TenantName};

    fn tenant() -> Tenant {
        Tenant::new(TenantId::new(), Slug::parse("acme").unwrap(), TenantName::parse("Acme").unwrap(), Plan::free())
    }

    fn project(t: &Tenant, name: &str) -> Project {
        let now = OffsetDateTime::now_utc();
        Project {
            id: ProjectId::new(),
            tenant_id: t.id,
            name: ProjectName::parse(name).unwrap(),
            created_at: now,
            updated_at: now,
        }
    }

    async fn read_all(export: &mut TenantExport) -> (Vec<serde_json::Value>, Option<Error>) {
        let mut text = Vec::new();
        let mut error = None;
        while let Some(chunk) = export.next().await {
            match chunk {
                Ok(c) => text.extend_from_slice(&c),
                Err(e) => error = Some(e),
            }
        }
        let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        (lines.map(|l| serde_json::from_slice(l).unwrap()).collect(), error)
    }

    #[tokio::test]
    async fn lines_come_in_order_and_end_with_the_counts() {
        let (mut w, mut export) = TenantExport::channel();
        let t = tenant();
        let writing = async move {
            w.write(t.clone()).await.unwrap();
            for i in 0..3 {
                w.write(project(&t, &format!("p{i}"))).await.unwrap();
            }
            w.finish(Ok(())).await;
        };
        let ((), (lines, error)) = tokio::join!(writing, read_all(&mut export));
        assert!(error.is_none());
        let kinds: Vec<_> = lines.iter().map(|l| l["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["tenant", "project", "project", "project", "end"]);
        assert_eq!(lines[1]["data"]["name"], "p0");
        assert_eq!(lines[4]["data"]["counts"]["project"], 3);
        assert_eq!(lines[4]["data"]["counts"]["user"], 0);
    }

    #[tokio::test]
    async fn a_late_kind_or_a_missing_tenant_fails_the_export_without_an_end_line() {
        let t = tenant();
        let (mut w, mut export) = TenantExport::channel();
        w.write(project(&t, "p")).await.unwrap();
        let late = w.write(t.clone()).await;
        assert!(matches!(late, Err(Stopped::Failed(Error::Internal(_)))), "{late:?}");
        w.finish(late.map(|_| ())).await;
        let (lines, error) = read_all(&mut export).await;
        assert!(lines.is_empty() && matches!(error, Some(Error::Internal(_))));

        let (mut w, mut export) = TenantExport::channel();
        w.write(project(&t, "p")).await.unwrap();
        w.finish(Ok(())).await;
        let (lines, error) = read_all(&mut export).await;
        assert!(lines.is_empty() && error.is_some(), "no end line without a tenant line");
    }

    #[tokio::test]
    async fn a_slow_reader_holds_the_writer_back_and_a_gone_one_stops_it() {
        let t = tenant();
        let (mut w, export) = TenantExport::channel();
        w.write(t.clone()).await.unwrap();
        let long = "x".repeat(200);
        // Until the channel is full, writes go through; then the next send waits.
        let mut written = 0;
        loop {
            let write = w.write(project(&t, &long));
            match tokio::time::timeout(std::time::Duration::from_millis(50), write).await {
                Ok(r) => r.unwrap(),
                Err(_) => break,
            }
            written += 1;
            assert!(written < 10_000, "the writer never waited");
        }
        let line = 260;
        assert!(written * line <= (CHANNEL_CHUNKS + 1) * (CHUNK_BYTES + line), "{written} lines in flight");
        drop(export);
        assert!(w.is_closed());
        // The next send, at most a chunk later, finds the reader gone.
        let gone = loop {
            match w.write(project(&t, &long)).await {
                Ok(()) if w.buf.len() < 2 * CHUNK_BYTES => {}
                other => break other,
            }
        };
        assert!(matches!(gone, Err(Stopped::Gone)), "{gone:?}");
    }

    #[tokio::test]
    async fn the_first_chunk_is_awaited_and_kept_and_a_failure_before_it_is_an_error() {
        let t = tenant();
        let (mut w, mut export) = TenantExport::channel();
        w.write(t.clone()).await.unwrap();
        w.finish(Ok(())).await;
        export.first_chunk().await.unwrap();
        let (lines, _) = read_all(&mut export).await;
        assert_eq!(lines.len(), 2, "the first chunk is not lost: {lines:?}");

        let (w, mut export) = TenantExport::channel();
        w.finish(Err(Stopped::Failed(Error::NotFound))).await;
        assert!(matches!(export.first_chunk().await, Err(Error::NotFound)));

        let (w, mut export) = TenantExport::channel();
        drop(w);
        assert!(matches!(export.first_chunk().await, Err(Error::Internal(_))));
    }

    #[test]
    fn a_user_line_has_no_hash_and_a_delivery_line_names_its_webhook() {
        let user = User {
            id: UserId::new(),
            tenant_id: TenantId::new(),
            email: Email::parse("ada@acme.test").unwrap(),
            role: Role::Owner,
            password_hash: crate::values::PasswordHash::new("$argon2id$v=19$secret".into()),
            created_at: OffsetDateTime::now_utc(),
            token_version: 3,
            email_verified: true,
        };
        let json = serde_json::to_value(user.into_data()).unwrap();
        let text = json.to_string();
        assert!(!text.contains("argon2") && !text.contains("password") && !text.contains("token_version"), "{text}");
        assert_eq!(json["role"], "owner");
        assert!(json["created_at"].is_string());

        let webhook = WebhookId::new();
        let delivery = Delivery {
            id: DeliveryId::new(),
            tenant_id: TenantId::new(),
            webhook_id: webhook,
            event_id: EventId::new(),
            event: EventKind::ProjectCreated,
            state: DeliveryState::Dead,
            attempts: 8,
            last_error: Some("timeout".into()),
            created_at: OffsetDateTime::now_utc(),
        };
        let json = serde_json::to_value(delivery.into_data()).unwrap();
        assert_eq!(json["webhook_id"], webhook.to_string());
        assert_eq!((json["state"].as_str(), json["attempts"].as_u64()), (Some("dead"), Some(8)));
    }
}
