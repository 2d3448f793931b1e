//! The audit log: who did what to a tenant, in entries that commit with the change they
//! record and are chained so that editing, deleting or reordering one shows.
//!
//! Each entry is linked to its predecessor: its `hash` is HMAC-SHA256, under the server's
//! [`AuditKey`], of the tenant, the predecessor's hash and the entry's content. An entry whose
//! content was edited no longer matches its own hash; one that was deleted or moved breaks the
//! link of the entry after it. The key keeps a database owner (who can rewrite rows, but not
//! read the server's key) from forging a consistent chain after an edit. A tenant's chain
//! starts at its checkpoint: all zeroes at first, and the last pruned entry's seq and hash once
//! retention has pruned some, so pruning never breaks the chain.
//!
//! Writers append entries under a lock on the tenant's chain head, as the last statement of
//! the write's transaction: a tenant's audited writes queue for that lock only for the moment
//! between taking it and committing.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use hmac::Mac as _;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{DomainEvent, EventData, EventKind};
use crate::ids::{TenantId, UserId};
use crate::values::derive_key;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person, signed in (or signing in).
    User,
    /// A tenant API key.
    ApiKey,
    /// Nobody known: a failed sign-in.
    Anonymous,
    /// The operator of the deployment (`plinth tenant …`).
    Operator,
    /// plinth itself: the worker disabling a webhook that kept failing.
    System,
}

impl ActorKind {
    /// The kind's stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::Anonymous => "anonymous",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::ApiKey, Self::Anonymous, Self::Operator, Self::System].into_iter().find(|k| k.as_str() == s)
    }
}

/// Who made a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// A user, a key, or nobody known.
    pub kind: ActorKind,
    /// The user's or key's id.
    #[cfg_attr(feature = "openapi", schema(example = "0193a7c4-5e2f-7b1d-8c3a-6f4e2d1b9a07"))]
    pub id: Option<Uuid>,
    /// The client's address.
    #[cfg_attr(feature = "openapi", schema(example = "203.0.113.7"))]
    pub ip: Option<String>,
    /// The client's `User-Agent`, cut to 256 characters.
    #[cfg_attr(feature = "openapi", schema(example = "Mozilla/5.0 (X11; Linux x86_64)"))]
    pub user_agent: Option<String>,
}

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    /// `user`, `project`, `webhook`, `api_key`, `invitation`, `session` or `tenant`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "project"))]
    pub kind: String,
    /// Its id.
    #[cfg_attr(feature = "openapi", schema(example = "0193a7c4-5e2f-7b1d-8c3a-6f4e2d1b9a07"))]
    pub id: String,
}

impl Target {
    /// The target `kind` with id `id`.
    pub fn new(kind: &str, id: impl fmt::Display) -> Self {
        Self { kind: kind.to_owned(), id: id.to_string() }
    }
}

/// One change, as recorded. Never holds a password, token, secret or key: `changes` names the
/// fields a change set and their new values, and the use cases put only safe fields in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (to the microsecond, as stored).
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// What: `project.created`, `user.role_changed`, ….
    pub action: String,
    /// To what.
    pub target: Option<Target>,
    /// The request that made the change.
    pub request_id: Option<String>,
    /// The fields changed, as the text of a JSON object (kept as text: the chain covers its
    /// exact bytes).
    pub changes: String,
}

/// A chain hash: an entry's, its predecessor's, or a checkpoint's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

/// A position in a tenant's chain: the last entry's seq and hash (0 and zeroes before the
/// first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainLink {
    /// The entry's number: 1 for the tenant's first.
    pub seq: u64,
    /// Its hash.
    pub hash: ChainHash,
}

/// An entry as stored: its place in the chain and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its number in the tenant's chain.
    pub seq: u64,
    /// What it records.
    pub entry: AuditEntry,
    /// Its predecessor's hash (or the checkpoint's).
    pub prev_hash: ChainHash,
    /// Its own.
    pub hash: ChainHash,
}

/// The server's key for the chain. `Debug` hides it.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    /// A key derived from another secret, so that secret is never used for two jobs.
    pub fn derive(secret: &[u8]) -> Self {
        Self(derive_key(secret, b"plinth audit chain v1"))
    }

    /// The hash of `entry` of `tenant` after `prev`.
    pub fn link(&self, tenant: TenantId, prev: &ChainHash, entry: &AuditEntry) -> ChainHash {
        let mut out = [0u8; 32];
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0) else {
            return ChainHash(out);
        };
        let mut field = |bytes: &[u8]| {
            mac.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
            mac.update(bytes);
        };
        let opt = |s: &Option<String>| s.as_deref().map_or(&b"\xff"[..], str::as_bytes).to_vec();
        field(tenant.as_uuid().as_bytes());
        field(&prev.0);
        field(&micros(entry.at).to_be_bytes());
        field(entry.actor.kind.as_str().as_bytes());
        field(entry.actor.id.as_ref().map_or(&[][..], |id| id.as_bytes()));
        field(&opt(&entry.actor.ip));
        field(&opt(&entry.actor.user_agent));
        field(entry.action.as_bytes());
        field(entry.target.as_ref().map_or(&b"\xff"[..], |t| t.kind.as_bytes()));
        field(entry.target.as_ref().map_or(&b"\xff"[..], |t| t.id.as_bytes()));
        field(&opt(&entry.request_id));
        field(entry.changes.as_bytes());
        out.copy_from_slice(&mac.finalize().into_bytes());
        ChainHash(out)
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

/// Microseconds since the epoch: the precision entries are stored and hashed at.
fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// `at`, cut to the microsecond.
pub fn to_micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1000 * 1000).unwrap_or(at)
}

/// What a write records besides its change, as the last statements of its transaction: the
/// entries it appends, with the key that chains them (none when auditing is off), and the
/// kinds of event it causes. Adapters call [`AuditTrail::seal`] under the tenant's chain-head
/// lock and store what it returns, and store the events [`AuditTrail::events`] makes (with
/// their deliveries), in the write's transaction.
///
/// The events travel with the trail because every write port takes one already: a write names
/// the kinds it causes here, and the adapter, which alone has the rows as the write leaves them
/// (a user's new role, a revoked key, an invitation spent by its token), makes the events from
/// those rows, so they describe exactly what committed.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    key: Option<Arc<AuditKey>>,
    entries: Vec<AuditEntry>,
    /// The kinds of event the write causes.
    events: Vec<EventKind>,
    /// When they happened.
    events_at: OffsetDateTime,
}

impl AuditTrail {
    /// A trail that records nothing.
    pub const fn none() -> Self {
        Self { key: None, entries: Vec::new(), events: Vec::new(), events_at: OffsetDateTime::UNIX_EPOCH }
    }

    /// `entries`, chained under `key`.
    pub fn new(key: Arc<AuditKey>, entries: Vec<AuditEntry>) -> Self {
        Self { key: Some(key), entries, ..Self::none() }
    }

    /// This trail, with the write also causing one event of each of `kinds`, happened `at`
    /// (whether or not auditing is on: events are not audit entries).
    #[must_use]
    pub fn with_events(mut self, kinds: &[EventKind], at: OffsetDateTime) -> Self {
        self.events.extend_from_slice(kinds);
        self.events_at = at;
        self
    }

    /// The kinds of event the write causes.
    pub fn event_kinds(&self) -> &[EventKind] {
        &self.events
    }

    /// The events the write causes, of `tenant`: one per kind named, about the item of `about`
    /// that is its kind's [`Subject`](crate::events::Subject), which the adapter gives as the
    /// write left it (as it was, for a removal). An adapter calls this only when the write
    /// changed what the events report (a role set to the one a user has causes none). Errors:
    /// `Internal` when `about` has no item for a kind's subject (a bug in the adapter), before
    /// anything is written.
    pub fn events(&self, tenant: TenantId, about: &[EventData]) -> crate::Result<Vec<DomainEvent>> {
        self.events
            .iter()
            .map(|kind| {
                let data = about.iter().find(|d| d.subject() == kind.subject()).ok_or_else(|| {
                    crate::Error::internal(format!("no {:?} given for a {} event", kind.subject(), kind.as_str()))
                })?;
                Ok(DomainEvent::about(*kind, tenant, data.clone(), self.events_at))
            })
            .collect()
    }

    /// Whether there is nothing to append (the adapter then takes no lock).
    pub fn is_empty(&self) -> bool {
        self.key.is_none() || self.entries.is_empty()
    }

    /// The entries.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    /// This trail with `user` as the actor and (where none is set) the target of every entry:
    /// for the changes whose user is known only once the write has found them (by an emailed
    /// token).
    #[must_use]
    pub fn by_user(&self, user: UserId) -> Self {
        let mut trail = self.clone();
        for entry in &mut trail.entries {
            entry.actor.kind = ActorKind::User;
            entry.actor.id = Some(*user.as_uuid());
            entry.target.get_or_insert_with(|| Target::new("user", user));
        }
        trail
    }

    /// Makes every entry's actor the platform's operator: no id, and neither the address nor the
    /// user agent it acted from (the tenant reads its log; the operator's network is not its
    /// business). The request id stays, to find the platform's own record of the request.
    pub fn by_operator(&mut self) {
        for entry in &mut self.entries {
            entry.actor = Actor { kind: ActorKind::Operator, id: None, ip: None, user_agent: None };
        }
    }

    /// Makes every entry's actor plinth itself (the worker's own decisions).
    pub fn by_system(&mut self) {
        for entry in &mut self.entries {
            entry.actor = Actor { kind: ActorKind::System, id: None, ip: None, user_agent: None };
        }
    }

    /// The records the entries become after `head`, for `tenant`; the new head is the last's.
    pub fn seal(&self, tenant: TenantId, head: ChainLink) -> Vec<AuditRecord> {
        let Some(key) = &self.key else { return Vec::new() };
        let mut prev = head;
        self.entries
            .iter()
            .map(|entry| {
                let hash = key.link(tenant, &prev.hash, entry);
                let record = AuditRecord { seq: prev.seq + 1, entry: entry.clone(), prev_hash: prev.hash, hash };
                prev = ChainLink { seq: record.seq, hash };
                record
            })
            .collect()
    }
}

/// What went wrong with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// Its content no longer matches its hash.
    Edited,
    /// It is missing: the entry after it (or the chain's head) links to a hash no entry has.
    Deleted,
    /// It is out of place: it links to an entry that is elsewhere in the chain.
    Reordered,
    /// It is past the chain's head: the head was moved back, or the entry was written around
    /// the chain.
    Inserted,
}

/// The first entry found tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainProblem {
    /// The seq where the chain first breaks.
    #[cfg_attr(feature = "openapi", schema(example = 41))]
    pub seq: u64,
    /// How.
    pub problem: Tamper,
}

/// The outcome of recomputing a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    /// Whether every entry since the checkpoint is as written, in place.
    #[cfg_attr(feature = "openapi", schema(example = true))]
    pub valid: bool,
    /// Entries checked.
    #[cfg_attr(feature = "openapi", schema(example = 42))]
    pub entries: u64,
    /// The seq of the last entry pruned by retention (0 when none was): the chain starts after it.
    #[cfg_attr(feature = "openapi", schema(example = 0))]
    pub checkpoint_seq: u64,
    /// The chain's head: the seq of the newest entry.
    #[cfg_attr(feature = "openapi", schema(example = 42))]
    pub head_seq: u64,
    /// The head's hash (64 hex digits): keep it to check later that the log only grew.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "9f2c1e7a4b6d8f0a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a")
    )]
    pub head_hash: String,
    /// The first break, if any.
    pub first_problem: Option<ChainProblem>,
}

/// Recomputes a chain from its checkpoint, one record at a time in seq order.
#[derive(Debug)]
pub struct Verifier {
    key: Arc<AuditKey>,
    tenant: TenantId,
    checkpoint: ChainLink,
    expected: ChainLink,
    entries: u64,
    seen: HashSet<[u8; 32]>,
    /// The first break: where, and how it was found (a link break is classified at the end).
    first: Option<(u64, Break)>,
}

#[derive(Debug, Clone, Copy)]
enum Break {
    Edited,
    /// The record links to `prev`, not to the entry before it; `gap` when seqs are missing.
    Link {
        prev: ChainHash,
        gap: bool,
        expected_seq: u64,
    },
}

impl Verifier {
    /// A verifier for `tenant`'s chain from `checkpoint`.
    pub fn new(key: Arc<AuditKey>, tenant: TenantId, checkpoint: ChainLink) -> Self {
        Self { key, tenant, checkpoint, expected: checkpoint, entries: 0, seen: HashSet::new(), first: None }
    }

    /// The seq of the last record pushed (the checkpoint's before any).
    pub const fn last_seq(&self) -> u64 {
        self.expected.seq
    }

    /// The next record, in seq order.
    pub fn push(&mut self, record: &AuditRecord) {
        self.entries += 1;
        self.seen.insert(record.hash.0);
        if self.first.is_none() {
            let own = self.key.link(self.tenant, &record.prev_hash, &record.entry);
            let expected_seq = self.expected.seq + 1;
            if own != record.hash {
                self.first = Some((record.seq, Break::Edited));
            } else if record.prev_hash != self.expected.hash || record.seq != expected_seq {
                let gap = record.seq > expected_seq;
                self.first = Some((record.seq, Break::Link { prev: record.prev_hash, gap, expected_seq }));
            }
        }
        self.expected = ChainLink { seq: record.seq, hash: record.hash };
    }

    /// The outcome, given the head the store keeps.
    pub fn finish(self, head: ChainLink) -> Verification {
        let problem = match self.first {
            Some((seq, Break::Edited)) => Some(ChainProblem { seq, problem: Tamper::Edited }),
            Some((seq, Break::Link { prev, gap, expected_seq })) => Some(if self.seen.contains(&prev.0) {
                ChainProblem { seq, problem: Tamper::Reordered }
            } else {
                ChainProblem { seq: if gap { expected_seq } else { seq }, problem: Tamper::Deleted }
            }),
            None if head.seq > self.expected.seq => {
                Some(ChainProblem { seq: self.expected.seq + 1, problem: Tamper::Deleted })
            }
            None if head.seq < self.expected.seq => Some(ChainProblem { seq: head.seq + 1, problem: Tamper::Inserted }),
            None if head.hash != self.expected.hash => Some(ChainProblem { seq: head.seq, problem: Tamper::Edited }),
            None => None,
        };
        Verification {
            valid: problem.is_none(),
            entries: self.entries,
            checkpoint_seq: self.checkpoint.seq,
            head_seq: head.seq,
            head_hash: head.hash.to_hex(),
            first_problem: problem,
        }
    }
}

/// Where a request came from, for the entries its changes write: set by the web layer around
/// each handler that may write ([`with_origin`]), read by the use cases ([`origin`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The request's id.
    pub request_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's `User-Agent`, cut to 256 characters.
    pub user_agent: Option<String>,
}

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Runs `f` with `origin` as the origin of the changes it makes.
pub async fn with_origin<F: Future>(origin: Origin, f: F) -> F::Output {
    ORIGIN.scope(origin, f).await
}

/// The origin of the current request's changes (empty outside [`with_origin`]).
pub fn origin() -> Origin {
    ORIGIN.try_with(Clone::clone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, at: OffsetDateTime) -> AuditEntry {
        AuditEntry {
            at: to_micros(at),
            actor: Actor {
                kind: ActorKind::User,
                id: Some(Uuid::now_v7()),
                ip: Some("10.0.0.1".into()),
                user_agent: None,
            },
            action: action.into(),
            target: Some(Target::new("project", Uuid::now_v7())),
            request_id: Some("r1".into()),
            changes: r#"{"name":"a"}"#.into(),
        }
    }

    fn chain(n: usize) -> (Arc<AuditKey>, TenantId, Vec<AuditRecord>) {
        let key = Arc::new(AuditKey::derive(b"secret"));
        let tenant = TenantId::new();
        let now = OffsetDateTime::now_utc();
        let trail = AuditTrail::new(key.clone(), (0..n).map(|i| entry(&format!("a.{i}"), now)).collect());
        (key, tenant, trail.seal(tenant, ChainLink::default()))
    }

    fn verify(key: &Arc<AuditKey>, tenant: TenantId, records: &[AuditRecord], head: ChainLink) -> Verification {
        let mut v = Verifier::new(key.clone(), tenant, ChainLink::default());
        for r in records {
            v.push(r);
        }
        v.finish(head)
    }

    fn head(records: &[AuditRecord]) -> ChainLink {
        records.last().map_or_else(ChainLink::default, |r| ChainLink { seq: r.seq, hash: r.hash })
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (key, tenant, records) = chain(5);
        let v = verify(&key, tenant, &records, head(&records));
        assert!(v.valid, "{v:?}");
        assert_eq!((v.entries, v.head_seq), (5, 5));
        assert!(verify(&key, tenant, &[], ChainLink::default()).valid);
    }

    #[test]
    fn an_edit_a_deletion_and_a_swap_are_each_found_where_they_are() {
        let (key, tenant, records) = chain(6);
        let h = head(&records);
        let mut edited = records.clone();
        edited[2].entry.changes = r#"{"name":"b"}"#.into();
        assert_eq!(
            verify(&key, tenant, &edited, h).first_problem,
            Some(ChainProblem { seq: 3, problem: Tamper::Edited })
        );

        let mut deleted = records.clone();
        deleted.remove(3);
        assert_eq!(
            verify(&key, tenant, &deleted, h).first_problem,
            Some(ChainProblem { seq: 4, problem: Tamper::Deleted })
        );

        let mut renumbered = deleted.clone();
        for r in renumbered.iter_mut().skip(3) {
            r.seq -= 1;
        }
        let short = ChainLink { seq: 5, hash: h.hash };
        assert_eq!(
            verify(&key, tenant, &renumbered, short).first_problem,
            Some(ChainProblem { seq: 4, problem: Tamper::Deleted })
        );

        let mut swapped = records.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(
            verify(&key, tenant, &swapped, h).first_problem,
            Some(ChainProblem { seq: 2, problem: Tamper::Reordered })
        );

        let tail_gone = &records[..5];
        assert_eq!(
            verify(&key, tenant, tail_gone, h).first_problem,
            Some(ChainProblem { seq: 6, problem: Tamper::Deleted })
        );
    }

    #[test]
    fn another_key_or_tenant_does_not_verify() {
        let (_, tenant, records) = chain(2);
        let other = Arc::new(AuditKey::derive(b"other"));
        assert!(!verify(&other, tenant, &records, head(&records)).valid);
        let (key, _, _) = chain(0);
        assert!(!verify(&key, TenantId::new(), &records, head(&records)).valid);
    }

    #[test]
    fn by_user_fills_the_actor_and_a_missing_target() {
        let key = Arc::new(AuditKey::derive(b"k"));
        let mut e = entry("user.password_reset", OffsetDateTime::now_utc());
        e.target = None;
        e.actor.kind = ActorKind::Anonymous;
        let user = UserId::new();
        let trail = AuditTrail::new(key, vec![e]).by_user(user);
        assert_eq!(trail.entries()[0].actor.kind, ActorKind::User);
        assert_eq!(trail.entries()[0].target, Some(Target::new("user", user)));
    }
}
