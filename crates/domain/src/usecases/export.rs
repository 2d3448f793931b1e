//! Exporting everything a tenant holds (data portability, GDPR art. 20).

use super::{Plinth, Principal};
use crate::audit::Target;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::export::TenantExport;
use crate::values::Role;

impl Plinth {
    /// Starts an export of everything `tenant` holds, as NDJSON chunks (see
    /// [`crate::export`]): one consistent snapshot, read as the returned [`TenantExport`] is
    /// read, one export of a tenant at a time.
    ///
    /// `by` is who asks: a person who is `tenant`'s owner, or `None` for the deployment's
    /// operator. Returns once the first chunk is ready, so that a failure before it is this
    /// call's error (an answer not yet begun), after recording `tenant.exported` in the audit
    /// log (the entry is not in the export: the snapshot was taken before it). Errors:
    /// `Forbidden` (an API key, or not the tenant's owner); `Conflict(ExportRunning)` while
    /// another export of the tenant runs.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn export_tenant(&self, tenant: &Tenant, by: Option<&Principal>) -> Result<TenantExport> {
        self.start_export(tenant, by).await
    }

    /// The operator's export of the tenant `slug`, whatever its lifecycle (a suspended tenant,
    /// or a deleted one within its grace, can be given its data), as
    /// [`export_tenant`](Self::export_tenant). Errors: `TenantNotFound`; `Conflict(ExportRunning)`.
    pub async fn operator_export(&self, slug: &crate::values::Slug) -> Result<(Tenant, TenantExport)> {
        let tenant = self.ports.tenants.find_by_slug(slug).await?.ok_or(Error::TenantNotFound)?;
        let export = self.start_export(&tenant, None).await?;
        Ok((tenant, export))
    }

    async fn start_export(&self, tenant: &Tenant, by: Option<&Principal>) -> Result<TenantExport> {
        if let Some(who) = by {
            who.person()?;
            if who.tenant != tenant.id || who.role != Role::Owner {
                return Err(Error::Forbidden("only an owner may export the tenant's data"));
            }
        }
        // Each export holds a database connection for as long as it is read: an instance runs a
        // few at once, so that exports can't take every connection its requests need.
        let permit =
            self.exports.clone().try_acquire_owned().map_err(|_| Error::RateLimited { retry_after_secs: 30 })?;
        let (mut writer, mut export) = TenantExport::channel();
        writer.hold(permit);
        self.ports.exporter.export(tenant, writer).await?;
        export.first_chunk().await?;
        let target = Target::new("tenant", tenant.id);
        let changes = serde_json::json!({});
        let trail = match by {
            Some(who) => self.audit(who.actor(), "tenant.exported", Some(target), changes),
            None => self.audit_operator("tenant.exported", target, changes),
        };
        if !trail.is_empty() {
            self.ports.audit.append(tenant.id, &trail).await?;
        }
        Ok(export)
    }
}
