//! `WebhookRepository` in memory: webhooks, their sealed secrets and their deliveries, in the
//! tenant's own rows.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Delivery, Webhook};
use plinth_domain::ids::{TenantId, WebhookId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{CountCheck, IdempotentWrite, Keyed, WebhookRepository};
use plinth_domain::{Error, Result};

use super::MemoryStore;

impl MemoryStore {
    /// The sealed secret of a webhook, for the delivery worker.
    pub fn sealed_secret(&self, tenant: TenantId, id: WebhookId) -> Option<Vec<u8>> {
        self.read().tenant(tenant).and_then(|t| t.secrets.get(&id).cloned())
    }
}

#[async_trait]
impl WebhookRepository for MemoryStore {
    async fn create(
        &self,
        webhook: &Webhook,
        sealed_secret: &[u8],
        check: CountCheck<'_>,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
    ) -> Result<Keyed> {
        self.keyed(key, |data| {
            let rows = data.owner_of_new_row(webhook.tenant_id)?;
            check(rows.webhooks.len())?;
            if !rows.webhooks.insert(webhook.clone()) {
                return Err(Error::internal(format!("webhook {} exists", webhook.id)));
            }
            rows.secrets.insert(webhook.id, sealed_secret.to_vec());
            rows.append(trail);
            Ok(())
        })
    }

    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Webhook>> {
        Ok(self.read().tenant(tenant).map(|t| t.webhooks.page(after, limit)).unwrap_or_default())
    }

    async fn delete(&self, tenant: TenantId, id: WebhookId, trail: &AuditTrail) -> Result<()> {
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        rows.webhooks.remove(*id.as_uuid()).ok_or(Error::NotFound)?;
        rows.secrets.remove(&id);
        rows.append(trail);
        let gone: Vec<_> = rows.deliveries.iter().filter(|d| d.webhook_id == id).map(|d| *d.id.as_uuid()).collect();
        for delivery in gone {
            rows.deliveries.remove(delivery);
        }
        Ok(())
    }

    async fn deliveries(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let data = self.read();
        let rows = data.tenant(tenant).ok_or(Error::NotFound)?;
        rows.webhooks.get(*webhook.as_uuid()).ok_or(Error::NotFound)?;
        // Deliveries of other webhooks are skipped; pages stay keyset-ordered.
        let mut out = Vec::with_capacity(limit);
        let mut cursor = after.copied();
        while out.len() < limit {
            let batch = rows.deliveries.page(cursor.as_ref(), limit);
            let Some(last) = batch.last() else { break };
            cursor = Some(Cursor { created_at: last.created_at, id: *last.id.as_uuid() });
            out.extend(batch.into_iter().filter(|d| d.webhook_id == webhook).take(limit - out.len()));
        }
        Ok(out)
    }
}
