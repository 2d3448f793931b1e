//! The audit log and API keys in memory: each tenant's chain lives with its rows, and every
//! write appends its trail under the same lock as its change.

use async_trait::async_trait;
use plinth_domain::audit::{AuditRecord, AuditTrail, ChainLink};
use plinth_domain::entities::ApiKey;
use plinth_domain::events::EventData;
use plinth_domain::ids::{ApiKeyId, TenantId};
use plinth_domain::ports::{ApiKeyRepository, AuditLog, AuditQuery, CountCheck, KeyRecord};
use plinth_domain::values::{Role, TokenHash};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;

use super::{MemoryStore, TenantData};

/// One tenant's chain: where it starts, its newest entry, and the entries between.
#[derive(Debug, Default)]
pub(super) struct Chain {
    checkpoint: ChainLink,
    head: ChainLink,
    records: Vec<AuditRecord>,
}

impl Chain {
    /// The entries kept, oldest first.
    pub(super) fn records(&self) -> &[AuditRecord] {
        &self.records
    }
}

/// One tenant's keys, with the hash of each secret and when it was revoked.
#[derive(Debug, Default)]
pub(super) struct Keys {
    rows: Vec<(ApiKey, TokenHash, Option<OffsetDateTime>)>,
}

impl TenantData {
    /// Appends `trail` to the tenant's chain: call it last, once the change can't fail.
    pub(super) fn append(&mut self, trail: &AuditTrail) {
        if trail.is_empty() {
            return;
        }
        let tenant = self.tenant.id;
        let chain = &mut self.audit;
        for record in trail.seal(tenant, chain.head) {
            chain.head = ChainLink { seq: record.seq, hash: record.hash };
            chain.records.push(record);
        }
    }
}

impl TenantData {
    /// How many unrevoked keys the tenant has.
    pub(super) fn live_keys(&self) -> usize {
        self.keys.rows.iter().filter(|(_, _, revoked)| revoked.is_none()).count()
    }

    /// Forgets that `creator`, now removed, made their keys: the keys stay the tenant's.
    pub(super) fn forget_creator(&mut self, creator: plinth_domain::ids::UserId) {
        for (key, _, _) in &mut self.keys.rows {
            if key.created_by == Some(creator) {
                key.created_by = None;
            }
        }
    }

    /// Lowers the ceiling of the keys `creator` made to `role`, never raising one.
    pub(super) fn lower_keys_of(&mut self, creator: plinth_domain::ids::UserId, role: Role) {
        for (key, _, _) in &mut self.keys.rows {
            let above =
                matches!((key.role, role), (Role::Owner, Role::Admin | Role::Member) | (Role::Admin, Role::Member));
            if key.created_by == Some(creator) && above {
                key.role = role;
            }
        }
    }
}

fn selected(query: &AuditQuery, r: &AuditRecord) -> bool {
    let e = &r.entry;
    query.actor.is_none_or(|a| e.actor.id == Some(a))
        && query.action.as_ref().is_none_or(|a| &e.action == a)
        && query.target.as_ref().is_none_or(|t| e.target.as_ref().is_some_and(|x| &x.id == t))
        && query.since.is_none_or(|t| e.at >= t)
        && query.until.is_none_or(|t| e.at < t)
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append(&self, tenant: TenantId, trail: &AuditTrail) -> Result<()> {
        let mut data = self.write();
        data.tenant_mut(tenant).ok_or(Error::NotFound)?.append(trail);
        Ok(())
    }

    async fn page(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        Ok(rows
            .audit
            .records
            .iter()
            .rev()
            .filter(|r| before.is_none_or(|b| r.seq < b) && selected(query, r))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn ends(&self, tenant: TenantId) -> Result<(ChainLink, ChainLink)> {
        let data = self.read();
        Ok(data.tenant(tenant).map_or_else(Default::default, |t| (t.audit.checkpoint, t.audit.head)))
    }

    async fn chain(&self, tenant: TenantId, after: u64, upto: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        Ok(rows.audit.records.iter().filter(|r| r.seq > after && r.seq <= upto).take(limit).cloned().collect())
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64> {
        let mut data = self.write();
        let mut pruned = 0;
        for rows in data.tenants.values_mut() {
            let chain = &mut rows.audit;
            // Through the last entry older than `before`: a chain is pruned from its start.
            let n = chain.records.iter().rposition(|r| r.entry.at < before).map_or(0, |i| i + 1);
            if let Some(last) = n.checked_sub(1).and_then(|i| chain.records.get(i)) {
                chain.checkpoint = ChainLink { seq: last.seq, hash: last.hash };
            }
            chain.records.drain(..n);
            pruned += u64::try_from(n).unwrap_or(u64::MAX);
        }
        Ok(pruned)
    }
}

#[async_trait]
impl ApiKeyRepository for MemoryStore {
    async fn create(&self, key: &ApiKey, hash: &TokenHash, check: CountCheck<'_>, trail: &AuditTrail) -> Result<()> {
        let events = trail.events(key.tenant_id, &[EventData::ApiKey(key.clone())])?;
        let now = self.clock.now();
        let mut data = self.write();
        data.check_room_for(key.tenant_id, &events)?;
        let rows = data.owner_of_new_row(key.tenant_id)?;
        check(rows.keys.rows.iter().filter(|(_, _, revoked)| revoked.is_none()).count())?;
        rows.keys.rows.push((key.clone(), *hash, None));
        data.settle(key.tenant_id, &events, trail, now);
        drop(data);
        self.wake();
        Ok(())
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        let mut keys: Vec<ApiKey> =
            rows.keys.rows.iter().filter(|(_, _, revoked)| revoked.is_none()).map(|(k, _, _)| k.clone()).collect();
        keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
        Ok(keys)
    }

    async fn lookup(&self, tenant: TenantId, id: ApiKeyId) -> Result<Option<KeyRecord>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        Ok(rows.keys.rows.iter().find(|(k, _, revoked)| k.id == id && revoked.is_none()).map(|(k, hash, _)| {
            KeyRecord {
                key: k.clone(),
                hash: *hash,
                creator_role: k.created_by.and_then(|u| rows.users.get(*u.as_uuid())).map(|u| u.role),
            }
        }))
    }

    async fn revoke(&self, tenant: TenantId, id: ApiKeyId, now: OffsetDateTime, trail: &AuditTrail) -> Result<bool> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        let Some(row) = rows.keys.rows.iter_mut().find(|(k, _, revoked)| k.id == id && revoked.is_none()) else {
            return Ok(false);
        };
        let events = trail.events(tenant, &[EventData::ApiKey(row.0.clone())])?;
        row.2 = Some(now);
        data.settle(tenant, &events, trail, self.clock.now());
        drop(data);
        self.wake();
        Ok(true)
    }

    async fn touch(&self, used: &[(TenantId, ApiKeyId, OffsetDateTime)]) -> Result<()> {
        let mut data = self.write();
        for (tenant, id, at) in used {
            let Some(rows) = data.tenant_mut(*tenant) else { continue };
            if let Some((key, _, _)) = rows.keys.rows.iter_mut().find(|(k, _, _)| k.id == *id) {
                key.last_used_at = Some(key.last_used_at.map_or(*at, |t| t.max(*at)));
            }
        }
        Ok(())
    }
}
