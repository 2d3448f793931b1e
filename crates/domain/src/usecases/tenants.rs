//! Resolving the tenant a request's host names: on every request, so cached.

use bytes::Bytes;
use serde::Deserialize;

use super::Plinth;
use crate::cache::Scope;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::values::{Plan, Slug, TenantName};

/// The cached form of a tenant; an empty value means "no such tenant".
#[derive(Deserialize)]
struct CachedTenant<'a> {
    id: TenantId,
    slug: &'a str,
    name: &'a str,
    plan: Plan,
}

impl Plinth {
    /// The tenant with this slug. Errors: `TenantNotFound`.
    #[tracing::instrument(level = "debug", skip(self), fields(slug = %slug))]
    pub async fn resolve_tenant(&self, slug: &Slug) -> Result<Tenant> {
        let ttls = self.settings.ttls;
        let bytes = self
            .cache
            .cached(Scope::Global, &tenant_key(slug), ttls.tenant, || async {
                Ok(match self.ports.tenants.find_by_slug(slug).await? {
                    Some(t) => Bytes::from(serde_json::to_vec(&t).map_err(Error::internal)?),
                    None => Bytes::new(),
                })
            })
            .await?;
        if bytes.is_empty() {
            return Err(Error::TenantNotFound);
        }
        let c: CachedTenant<'_> = serde_json::from_slice(&bytes).map_err(Error::internal)?;
        Ok(Tenant {
            id: c.id,
            slug: Slug::parse(c.slug).map_err(Error::internal)?,
            name: TenantName::parse(c.name).map_err(Error::internal)?,
            plan: c.plan,
        })
    }
}

pub(super) fn tenant_key(slug: &Slug) -> String {
    format!("tenant:{slug}")
}
