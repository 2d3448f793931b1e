//! Recording changes in the audit log, reading it, and checking its chain.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::Plinth;
use crate::audit::{
    Actor, ActorKind, AuditEntry, AuditKey, AuditRecord, AuditTrail, Target, Verification, Verifier, origin, to_micros,
};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::page::{Cursor, Page, PageRequest};
use crate::ports::AuditQuery;
use crate::usecases::Principal;

/// The audit log's settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Whether changes are recorded (`PLINTH_AUDIT`).
    pub enabled: bool,
    /// Chains the entries.
    pub key: Arc<AuditKey>,
    /// How long entries are kept (`PLINTH_AUDIT_RETENTION_DAYS`).
    pub retention: Duration,
}

impl AuditSettings {
    /// Auditing on, keeping entries 365 days, chained under `key`.
    pub fn new(key: AuditKey) -> Self {
        Self { enabled: true, key: Arc::new(key), retention: Duration::from_secs(365 * 24 * 3600) }
    }
}

/// The schema of [`AuditView::changes`]: any object, with an example.
#[cfg(feature = "openapi")]
fn changes_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .description(Some("The fields the change set, with their new values."))
        .examples([serde_json::json!({"name": "Apollo"})])
        .build()
}

/// One entry of the log as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditView {
    /// Its number in the tenant's chain (1 for the first).
    #[cfg_attr(feature = "openapi", schema(example = 42))]
    pub seq: u64,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// What, such as `project.created`.
    #[cfg_attr(feature = "openapi", schema(example = "project.created"))]
    pub action: String,
    /// To what.
    pub target: Option<Target>,
    /// The request that made the change.
    #[cfg_attr(feature = "openapi", schema(example = "0193a7c4-5e2f-7b1d-8c3a-6f4e2d1b9a07"))]
    pub request_id: Option<String>,
    /// The fields the change set, with their new values.
    #[cfg_attr(feature = "openapi", schema(schema_with = changes_schema))]
    pub changes: serde_json::Value,
    /// This entry's chain hash (64 hex digits).
    #[cfg_attr(
        feature = "openapi",
        schema(example = "9f2c1e7a4b6d8f0a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a")
    )]
    pub hash: String,
    /// Its predecessor's.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e2d4f")
    )]
    pub prev_hash: String,
}

impl AuditView {
    /// The entry `r` as the API shows it.
    pub(crate) fn of(r: AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: r.entry.at,
            changes: serde_json::from_str(&r.entry.changes).unwrap_or(serde_json::Value::Null),
            actor: r.entry.actor,
            action: r.entry.action,
            target: r.entry.target,
            request_id: r.entry.request_id,
            hash: r.hash.to_hex(),
            prev_hash: r.prev_hash.to_hex(),
        }
    }
}

/// A cursor names an entry by its seq (and time, for its shape).
fn seq_cursor(v: &AuditView) -> Cursor {
    Cursor { created_at: v.at, id: uuid::Uuid::from_u64_pair(0, v.seq) }
}

/// How many entries a verification reads at a time.
const VERIFY_BATCH: usize = 1000;

impl Plinth {
    /// The trail of one change: `action` on `target` by `by` (a user's or key's id; nobody
    /// known when `None`), from where the current request came, setting `changes` (a JSON
    /// object of safe fields only: never a password, token, secret or key). Empty when
    /// auditing is off.
    pub(crate) fn audit(
        &self,
        by: Option<(ActorKind, uuid::Uuid)>,
        action: &str,
        target: Option<Target>,
        changes: serde_json::Value,
    ) -> AuditTrail {
        let settings = &self.settings.audit;
        if !settings.enabled {
            return AuditTrail::none();
        }
        let origin = origin();
        let (kind, id) = by.map_or((ActorKind::Anonymous, None), |(kind, id)| (kind, Some(id)));
        let entry = AuditEntry {
            at: to_micros(self.ports.clock.now()),
            actor: Actor { kind, id, ip: origin.ip, user_agent: origin.user_agent },
            action: action.to_owned(),
            target,
            request_id: origin.request_id,
            changes: changes.to_string(),
        };
        AuditTrail::new(settings.key.clone(), vec![entry])
    }

    /// The trail of an operator's act on a tenant.
    pub(crate) fn audit_operator(&self, action: &str, target: Target, changes: serde_json::Value) -> AuditTrail {
        let mut trail = self.audit(None, action, Some(target), changes);
        trail.by_operator();
        trail
    }

    /// A page of the tenant's audit log, newest first, as `query` filters it. Errors:
    /// `Forbidden` (a member, or a key whose ceiling is one).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn audit_log(&self, who: &Principal, query: &AuditQuery, page: &PageRequest) -> Result<Page<AuditView>> {
        who.require_manager()?;
        let before = page.after.as_ref().map(|c| c.id.as_u64_pair().1);
        let rows = self.ports.audit.page(who.tenant, query, before, page.fetch_limit()).await?;
        let views = rows.into_iter().map(AuditView::of).collect();
        Ok(Page::from_rows(views, page, seq_cursor, &self.settings.cursor_key))
    }

    /// Recomputes `tenant`'s chain from its checkpoint through every entry stored, and
    /// reports the first entry that was edited, deleted, reordered, or stored past the chain's
    /// head. Entries appended while it reads are read too (it reads until the head it reads
    /// last is one it has reached), so a busy tenant's log is never reported broken.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn verify_audit(&self, tenant: TenantId) -> Result<Verification> {
        let (checkpoint, _) = self.ports.audit.ends(tenant).await?;
        let mut verifier = Verifier::new(self.settings.audit.key.clone(), tenant, checkpoint);
        let mut rounds = 0;
        loop {
            loop {
                let batch = self.ports.audit.chain(tenant, verifier.last_seq(), u64::MAX, VERIFY_BATCH).await?;
                for record in &batch {
                    verifier.push(record);
                }
                if batch.len() < VERIFY_BATCH {
                    break;
                }
            }
            let (_, head) = self.ports.audit.ends(tenant).await?;
            rounds += 1;
            if head.seq <= verifier.last_seq() || rounds == 3 {
                return Ok(verifier.finish(head));
            }
        }
    }

    /// [`Plinth::verify_audit`] for the caller's tenant. Errors: `Forbidden`.
    pub async fn verify_audit_log(&self, who: &Principal) -> Result<Verification> {
        who.require_manager()?;
        self.verify_audit(who.tenant).await
    }

    /// Deletes entries older than the retention, keeping every chain verifiable (each tenant's
    /// checkpoint moves to the last entry deleted); returns how many.
    pub async fn prune_audit(&self) -> Result<u64> {
        let retention = time::Duration::try_from(self.settings.audit.retention).map_err(Error::internal)?;
        self.ports.audit.prune(self.ports.clock.now() - retention).await
    }
}

/// A user as the actor of a change made before they have a principal (signing in, accepting an
/// invitation).
pub(crate) const fn by_user(user: crate::ids::UserId) -> Option<(ActorKind, uuid::Uuid)> {
    Some((ActorKind::User, *user.as_uuid()))
}
