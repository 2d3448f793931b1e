//! A tenant's life after signup: suspension and resumption, deletion with a grace period and
//! restoration, and the purge once the grace has run out. The operator's CLI and HTTP API and the
//! owner's `DELETE /v1/tenant` all come through here.
//!
//! Each change is one write of the tenant's row (with its audit entry and events), then the
//! directory's generation moves, so every instance's cached record of the tenant, and with it
//! whether its hosts answer, changes at once.

use std::time::Duration;

use serde::Serialize;

use super::{Plinth, Principal, TenantView};
use crate::audit::Target;
use crate::entities::{Lifecycle, Tenant};
use crate::error::{Conflict, Error, Result};
use crate::events::{DomainEvent, EventKind};
use crate::ids::TenantId;
use crate::ports::TenantState;
use crate::values::{Role, Slug};

/// How deleted tenants are kept, then erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// How long a deleted tenant's data is kept (and `restore` can undo the deletion).
    pub delete_grace: Duration,
    /// Rows erased per statement by the purge.
    pub purge_batch: usize,
    /// Exports one instance runs at once (each holds a database connection while it is read);
    /// one more answers 429 `rate_limited`.
    pub exports_per_instance: usize,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self { delete_grace: Duration::from_secs(30 * 86_400), purge_batch: 1000, exports_per_instance: 4 }
    }
}

/// One page of the operator's list of tenants.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantList {
    /// The tenants, by slug.
    pub items: Vec<TenantView>,
    /// The slug to pass as `after` for the next page; `null` on the last.
    #[cfg_attr(feature = "openapi", schema(example = "acme"))]
    pub next_cursor: Option<String>,
}

/// What one run of the purge erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Tenants erased whole.
    pub tenants: u64,
    /// Rows erased, theirs included.
    pub rows: u64,
}

/// What a lifecycle change does to the tenant's row, its log and its webhooks.
struct Change {
    lifecycle: Lifecycle,
    action: &'static str,
    event: Option<EventKind>,
    changes: serde_json::Value,
}

impl Plinth {
    /// Up to `limit` tenants (1–1,000) in `state` (all when `None`), by slug, after `after`:
    /// the operator's list.
    pub async fn list_tenants(
        &self,
        after: Option<&Slug>,
        limit: usize,
        state: Option<TenantState>,
    ) -> Result<TenantList> {
        if !(1..=1000).contains(&limit) {
            return Err(Error::BadRequest("limit must be between 1 and 1000"));
        }
        let tenants = self.ports.tenants.list(after, limit, state).await?;
        let next_cursor =
            (tenants.len() == limit).then(|| tenants.last().map(|t| t.slug.as_str().to_owned())).flatten();
        let items = tenants.into_iter().map(|t| self.view_of(t, None)).collect();
        Ok(TenantList { items, next_cursor })
    }

    /// Suspends the tenant `slug` (an operator's act): its hosts answer 403 `tenant_suspended`
    /// on every instance at once, its deliveries and emails wait. Suspending a suspended tenant
    /// changes nothing. Errors: `TenantNotFound`.
    ///
    /// `reason` (for the audit log, which the tenant reads) is trimmed, and must then hold 1–500
    /// characters, none of them a control, a bidirectional or zero-width format character or a
    /// line or paragraph separator. Errors: `TenantNotFound`; `Validation` (`reason`).
    pub async fn suspend(&self, slug: &Slug, reason: Option<&str>) -> Result<TenantView> {
        let reason = reason.map(suspension_reason).transpose()?;
        self.change_lifecycle(slug, None, |t, now| {
            Ok((t.lifecycle.suspended_at.is_none()).then(|| Change {
                lifecycle: Lifecycle { suspended_at: Some(now), ..t.lifecycle },
                action: "tenant.suspended",
                event: Some(EventKind::TenantSuspended),
                changes: serde_json::json!({ "reason": reason }),
            }))
        })
        .await
    }

    /// Resumes the suspended tenant `slug`: its hosts answer again, its waiting deliveries and
    /// emails go on. Resuming an active tenant changes nothing. Errors: `TenantNotFound`.
    pub async fn resume(&self, slug: &Slug) -> Result<TenantView> {
        self.change_lifecycle(slug, None, |t, _| {
            Ok((t.lifecycle.suspended_at.is_some()).then(|| Change {
                lifecycle: Lifecycle { suspended_at: None, ..t.lifecycle },
                action: "tenant.resumed",
                event: Some(EventKind::TenantResumed),
                changes: serde_json::json!({}),
            }))
        })
        .await
    }

    /// Deletes the tenant `slug` (an operator's act): its hosts answer 404 at once on every
    /// instance, its sessions, keys and jobs stop, and its data is erased once the grace has
    /// run out unless it is restored first. Deleting a deleted tenant changes nothing. Errors:
    /// `TenantNotFound`.
    pub async fn delete_tenant(&self, slug: &Slug) -> Result<TenantView> {
        self.change_lifecycle(slug, None, |t, now| Ok(self.deletion(t, now, "operator"))).await
    }

    /// The owner's deletion of their own tenant, confirmed by its slug: as
    /// [`delete_tenant`](Self::delete_tenant). Errors: `Forbidden` (not an owner, or a key);
    /// `Validation` (`confirm` is not the slug).
    pub async fn delete_own_tenant(&self, who: &Principal, tenant: &Tenant, confirm: &str) -> Result<TenantView> {
        who.person()?;
        if who.role != Role::Owner || who.tenant != tenant.id {
            return Err(Error::Forbidden("only an owner may delete the tenant"));
        }
        if confirm != tenant.slug.as_str() {
            return Err(Error::invalid("confirm", "must be this tenant's slug, to confirm its deletion"));
        }
        self.change_lifecycle(&tenant.slug, who.actor(), |t, now| Ok(self.deletion(t, now, "owner"))).await
    }

    /// Undoes the deletion of the tenant `slug` while its grace lasts: its hosts answer again
    /// (still suspended if it was). Restoring a tenant that is not deleted changes nothing.
    /// Errors: `TenantNotFound` (no such tenant, or already erased); `Conflict(GraceOver)` (its
    /// grace has run out: the purge may have begun, and what it erased can't come back).
    pub async fn restore(&self, slug: &Slug) -> Result<TenantView> {
        self.change_lifecycle(slug, None, |t, now| {
            if t.lifecycle.purge_after.is_some_and(|at| at <= now) {
                return Err(Error::Conflict(Conflict::GraceOver));
            }
            Ok((t.lifecycle.deleted_at.is_some()).then(|| Change {
                lifecycle: Lifecycle { deleted_at: None, purge_after: None, ..t.lifecycle },
                action: "tenant.restored",
                event: None,
                changes: serde_json::json!({}),
            }))
        })
        .await
    }

    /// Erases the deleted tenants whose grace has run out, a batch of rows at a time, with what
    /// they left in shared stores (cache entries, rate limiter state) first. The worker runs it
    /// with the other retention; a tenant it could not finish is taken up again next time.
    pub async fn purge_deleted_tenants(&self) -> Result<Purged> {
        let now = self.ports.clock.now();
        let batch = self.settings.lifecycle.purge_batch;
        let mut purged = Purged::default();
        for (tenant, slug) in self.ports.tenants.due_for_purge(now, 100).await? {
            self.erase_residue(tenant, &slug).await?;
            loop {
                let n = self.ports.tenants.purge_batch(tenant, now, batch).await?;
                if n == 0 {
                    break;
                }
                purged.rows += n;
            }
            purged.tenants += 1;
            tracing::info!(tenant = %tenant, "purged a deleted tenant");
        }
        if purged.tenants > 0 {
            self.cache.invalidate_directory().await;
        }
        Ok(purged)
    }

    async fn erase_residue(&self, tenant: TenantId, slug: &Slug) -> Result<()> {
        for residue in &self.ports.residue {
            residue.erase(tenant, slug).await?;
        }
        Ok(())
    }

    fn deletion(&self, t: &Tenant, now: time::OffsetDateTime, by: &str) -> Option<Change> {
        let grace = time::Duration::try_from(self.settings.lifecycle.delete_grace).unwrap_or(time::Duration::ZERO);
        let purge_after = now + grace;
        (t.lifecycle.deleted_at.is_none()).then(|| Change {
            lifecycle: Lifecycle { deleted_at: Some(now), purge_after: Some(purge_after), ..t.lifecycle },
            action: "tenant.deleted",
            event: None,
            changes: serde_json::json!({ "by": by, "purge_after": purge_after.format(&time::format_description::well_known::Rfc3339).ok() }),
        })
    }

    /// Applies `change` to the tenant `slug`, as the operator or as `by` when given; nothing
    /// when it answers `None` (the tenant is in that state already). A concurrent change of the
    /// tenant makes the write find it changed: it is read again and `change` asked again.
    async fn change_lifecycle(
        &self,
        slug: &Slug,
        by: Option<(crate::audit::ActorKind, uuid::Uuid)>,
        change: impl Fn(&Tenant, time::OffsetDateTime) -> Result<Option<Change>>,
    ) -> Result<TenantView> {
        for _ in 0..5 {
            let mut tenant = self.ports.tenants.find_by_slug(slug).await?.ok_or(Error::TenantNotFound)?;
            let now = self.ports.clock.now();
            let Some(c) = change(&tenant, now)? else { return Ok(self.view_of(tenant, None)) };
            let from = tenant.lifecycle;
            tenant.lifecycle = c.lifecycle;
            let target = Target::new("tenant", tenant.id);
            let trail = match by {
                Some(_) => self.audit(by, c.action, Some(target), c.changes),
                None => self.audit_operator(c.action, target, c.changes),
            };
            let events: Vec<DomainEvent> = c.event.map(|k| DomainEvent::tenant(k, &tenant, now)).into_iter().collect();
            if self.ports.tenants.set_lifecycle(tenant.id, &from, &tenant.lifecycle, &events, &trail).await? {
                self.cache.invalidate_directory().await;
                return Ok(self.view_of(tenant, None));
            }
        }
        Err(Error::Conflict(Conflict::ChangedMeanwhile))
    }

    /// `tenant` as the operator sees it: with its plan's limits, its state, and `usage` if
    /// given.
    pub(super) fn view_of(&self, tenant: Tenant, usage: Option<crate::ports::Usage>) -> TenantView {
        let limits = self.settings.plans.get(&tenant.plan).limits;
        let state = Some(tenant.lifecycle.state());
        TenantView { tenant, limits, usage, state }
    }
}

/// A suspension's reason as the audit log keeps it, trimmed: at most 500 characters, not all
/// white space, none of them a
/// control, a bidirectional or zero-width format character, or a line or paragraph separator (each
/// could disguise what the tenant reads in its log).
fn suspension_reason(raw: &str) -> Result<String> {
    let disguising = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    let reason = raw.trim();
    if reason.is_empty() || raw.chars().count() > 500 || raw.chars().any(disguising) {
        return Err(Error::invalid(
            "reason",
            "must be 1 to 500 characters, none of them a control, format or separator character",
        ));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_may_not_disguise_itself() {
        assert_eq!(suspension_reason("  payment overdue ").ok().as_deref(), Some("payment overdue"));
        assert!(suspension_reason(&"r".repeat(500)).is_ok());
        for bad in ["", "   ", "a\nb", "x\u{1b}[31m", "x\u{202e}y", "x\u{2028}y", "x\u{200b}y", "x\u{feff}", "a\u{85}b"]
        {
            assert!(suspension_reason(bad).is_err(), "{bad:?}");
        }
        assert!(suspension_reason(&"r".repeat(501)).is_err());
    }
}
