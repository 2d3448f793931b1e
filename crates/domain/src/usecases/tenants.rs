//! Resolving the tenant a request's host names: on every request, so cached.

use foldhash::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::Deserialize;

use super::Plinth;
use crate::entities::Tenant;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::values::{Plan, Slug, TenantName};

/// The cached form of a tenant.
#[derive(Deserialize)]
struct CachedTenant<'a> {
    id: TenantId,
    slug: &'a str,
    name: &'a str,
    plan: Plan,
    #[serde(default, with = "time::serde::rfc3339::option")]
    suspended_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    deleted_at: Option<time::OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    purge_after: Option<time::OffsetDateTime>,
}

/// Tenants decoded from their cached form, by slug, each with the bytes it was decoded from: a
/// cached value equal to those bytes decodes to the same tenant, so the JSON is parsed and its
/// fields checked once per change, not once per request. Holds at most [`Decoded::MAX`]
/// tenants (then starts again empty).
#[derive(Debug, Default)]
pub(super) struct Decoded(RwLock<HashMap<Slug, (Bytes, Arc<Tenant>)>>);

impl Decoded {
    const MAX: usize = 16_384;

    fn get(&self, slug: &Slug, bytes: &Bytes) -> Option<Arc<Tenant>> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let (from, tenant) = map.get(slug)?;
        (from == bytes).then(|| tenant.clone())
    }

    fn keep(&self, bytes: Bytes, tenant: Arc<Tenant>) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(tenant.slug.clone(), (bytes, tenant));
    }
}

impl Plinth {
    /// The tenant served at this slug's hosts. Errors: `TenantNotFound` (none, or deleted);
    /// `TenantSuspended`.
    pub async fn resolve_tenant(&self, slug: &Slug) -> Result<Arc<Tenant>> {
        let tenant = self.find_tenant(slug).await?;
        tenant.lifecycle.admits()?;
        Ok(tenant)
    }

    /// The tenant with this slug, whatever its lifecycle, from the cache. Errors:
    /// `TenantNotFound`.
    #[tracing::instrument(level = "debug", skip(self), fields(slug = %slug))]
    async fn find_tenant(&self, slug: &Slug) -> Result<Arc<Tenant>> {
        let ttls = self.settings.ttls;
        // "No such tenant" is kept briefly (a signup may take the slug any moment) and dropped
        // on every instance by the signup itself.
        let found = self
            .cache
            .lookup(&tenant_key(slug), ttls.tenant, ttls.missing_tenant, || async {
                match self.ports.tenants.find_by_slug(slug).await? {
                    Some(t) => Ok(Some(Bytes::from(serde_json::to_vec(&t).map_err(Error::internal)?))),
                    None => Ok(None),
                }
            })
            .await?;
        let Some(bytes) = found else {
            return Err(Error::TenantNotFound);
        };
        if let Some(tenant) = self.tenants.get(slug, &bytes) {
            return Ok(tenant);
        }
        let c: CachedTenant<'_> = serde_json::from_slice(&bytes).map_err(Error::internal)?;
        let tenant = Arc::new(Tenant {
            id: c.id,
            slug: Slug::parse(c.slug).map_err(Error::internal)?,
            name: TenantName::parse(c.name).map_err(Error::internal)?,
            plan: c.plan,
            lifecycle: crate::entities::Lifecycle {
                suspended_at: c.suspended_at,
                deleted_at: c.deleted_at,
                purge_after: c.purge_after,
            },
        });
        if tenant.slug == *slug {
            self.tenants.keep(bytes, tenant.clone());
        }
        Ok(tenant)
    }
}

fn tenant_key(slug: &Slug) -> String {
    ["tenant:", slug.as_str()].concat()
}

/// A tenant as `GET /v1/tenant` shows it: with its plan's limits, and (to its own members and
/// keys) how much of each it uses.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantView {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// What its plan allows (`null`: unlimited).
    pub limits: crate::plans::PlanLimits,
    /// How much it uses; only for a caller authenticated on this tenant, and operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::ports::Usage>,
    /// `active`, `suspended` or `deleted`; only for operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "active"))]
    pub state: Option<&'static str>,
}

impl Plinth {
    /// The operator's view of the tenant `slug`: as `GET /v1/tenant` shows it to its members,
    /// usage included. Errors: `TenantNotFound`.
    pub async fn operator_show(&self, slug: &Slug) -> Result<TenantView> {
        let tenant = self.ports.tenants.find_by_slug(slug).await?.ok_or(Error::TenantNotFound)?;
        let usage = Some(self.ports.tenants.usage(tenant.id).await?);
        Ok(self.view_of(tenant, usage))
    }

    /// Moves the tenant `slug` to the catalog's plan `plan` (an operator's act, audited as
    /// `tenant.plan_changed`): its quota and limits change on every instance at once (the
    /// platform's generation). Errors: `TenantNotFound`; `Validation` (no such plan).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn set_plan(&self, slug: &Slug, plan: &str) -> Result<TenantView> {
        let plan = Plan::parse(plan).map_err(|e| Error::invalid("plan", e.to_string()))?;
        if !self.settings.plans.has(&plan) {
            return Err(Error::invalid("plan", "no plan of that name is configured"));
        }
        let tenant = self.ports.tenants.find_by_slug(slug).await?.ok_or(Error::TenantNotFound)?;
        let changes = serde_json::json!({ "plan": plan, "from": tenant.plan });
        let trail = self.audit_operator("tenant.plan_changed", crate::audit::Target::new("tenant", tenant.id), changes);
        let changed = Tenant { plan: plan.clone(), ..tenant.clone() };
        let event = crate::events::DomainEvent::tenant(
            crate::events::EventKind::TenantPlanChanged,
            &changed,
            self.ports.clock.now(),
        );
        if !self.ports.tenants.set_plan(tenant.id, &plan, &[event], &trail).await? {
            return Err(Error::TenantNotFound);
        }
        // Every instance's cached tenant (its plan, so its quota and limits) goes at once.
        self.cache.invalidate_directory().await;
        self.operator_show(slug).await
    }

    /// `tenant` with its plan's limits, and its usage when `who` (if anyone) acts on it.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn tenant_view(&self, tenant: &Tenant, who: Option<&super::Principal>) -> Result<TenantView> {
        let usage = match who {
            Some(p) if p.tenant == tenant.id => Some(self.ports.tenants.usage(tenant.id).await?),
            _ => None,
        };
        // As the operator's view, but without the state (only an active tenant is served).
        Ok(TenantView { state: None, ..self.view_of(tenant.clone(), usage) })
    }
}
