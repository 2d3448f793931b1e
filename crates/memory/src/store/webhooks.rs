//! `WebhookRepository` in memory: webhooks, their sealed secrets and their deliveries, in the
//! tenant's own rows.

use std::collections::HashSet;

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Delivery, DeliveryState, Webhook, WebhookHealth, WebhookState};
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{DeliveryId, EmailId, TenantId, WebhookId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{
    CountCheck, FailingLongEnough, IdempotentWrite, Keyed, NewEmail, Recovered, Recovery, WebhookChange,
    WebhookEventsFor, WebhookRepository, Work,
};
use plinth_domain::values::{Purpose, Role};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;

use super::{MemoryStore, TenantData};

impl TenantData {
    /// Marks the pending ones of `deliveries` skipped; returns them.
    pub(super) fn skip_pending(&mut self, deliveries: &[DeliveryId]) -> HashSet<DeliveryId> {
        let mut skipped = HashSet::new();
        for id in deliveries {
            if let Some(d) = self.deliveries.get(*id.as_uuid()).filter(|d| d.state == DeliveryState::Pending) {
                let mut d = d.clone();
                d.state = DeliveryState::Skipped;
                skipped.insert(d.id);
                self.slots.remove(&d.id);
                self.deliveries.replace(d);
            }
        }
        skipped
    }

    /// The webhook `id` with `change` applied at `at`, and the deliveries a disabling skipped
    /// (whose jobs the caller drops).
    fn changed(
        &mut self,
        id: WebhookId,
        change: &WebhookChange,
        at: OffsetDateTime,
    ) -> Result<(Webhook, HashSet<DeliveryId>)> {
        let mut webhook = self.webhooks.get(*id.as_uuid()).ok_or(Error::NotFound)?.clone();
        let mut skipped = HashSet::new();
        if let Some(url) = &change.url {
            webhook.url.clone_from(url);
        }
        if let Some(events) = &change.events {
            webhook.events.clone_from(events);
        }
        if let Some(rate) = change.rate_limit_per_second {
            webhook.rate_limit_per_second = rate;
            self.next_slots.remove(&id);
        }
        match change.enabled {
            Some(true) if !webhook.is_enabled() => {
                let last_success_at = webhook.health.last_success_at;
                webhook.health = WebhookHealth { last_success_at, ..WebhookHealth::default() };
            }
            Some(false) if webhook.is_enabled() => {
                webhook.health.state = WebhookState::Disabled;
                webhook.health.disabled_reason.clone_from(&change.disabled_reason);
                webhook.health.disabled_at = Some(at);
                let pending: Vec<DeliveryId> = self
                    .deliveries
                    .iter()
                    .filter(|d| d.webhook_id == id && d.state == DeliveryState::Pending)
                    .map(|d| d.id)
                    .collect();
                skipped = self.skip_pending(&pending);
            }
            _ => {}
        }
        self.webhooks.replace(webhook.clone());
        Ok((webhook, skipped))
    }

    /// The webhook's delivery `id`.
    fn delivery_of(&self, webhook: WebhookId, id: DeliveryId) -> Result<Delivery> {
        self.deliveries.get(*id.as_uuid()).filter(|d| d.webhook_id == webhook).cloned().ok_or(Error::NotFound)
    }
}

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
        rows.previous_secrets.remove(&id);
        rows.next_slots.remove(&id);
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

    async fn get(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Webhook>> {
        Ok(self.read().tenant(tenant).and_then(|t| t.webhooks.get(*id.as_uuid()).cloned()))
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: WebhookId,
        change: &WebhookChange,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Webhook> {
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let (webhook, skipped) = rows.changed(id, change, at)?;
        rows.append(trail);
        data.drop_delivery_jobs(tenant, &skipped);
        Ok(webhook)
    }

    async fn disable_failing(
        &self,
        tenant: TenantId,
        id: WebhookId,
        failing: FailingLongEnough,
        reason: &str,
        events: WebhookEventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Option<Webhook>> {
        let at = failing.at;
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(None) };
        let Some(current) = rows.webhooks.get(*id.as_uuid()) else { return Ok(None) };
        let health = &current.health;
        let due = current.is_enabled()
            && health.consecutive_failures >= failing.min_failures
            && health.failing_since.is_some_and(|since| since <= failing.failing_before);
        if !due {
            return Ok(None);
        }
        let recipients: Vec<_> = rows
            .users
            .iter()
            .filter(|u| matches!(u.role, Role::Owner | Role::Admin))
            .map(|u| u.email.clone())
            .collect();
        let change = WebhookChange {
            enabled: Some(false),
            disabled_reason: Some(reason.to_owned()),
            ..WebhookChange::default()
        };
        let (webhook, skipped) = rows.changed(id, &change, at)?;
        let caused = events(&webhook);
        let deliveries = rows.record(&caused);
        let notices: Vec<NewEmail> = recipients
            .into_iter()
            .map(|to| NewEmail { id: EmailId::new(), tenant, purpose: Purpose::WebhookDisabled, to, created_at: at })
            .collect();
        for notice in &notices {
            rows.accounts.queue_about(notice, Some(id));
        }
        rows.append(trail);
        data.drop_delivery_jobs(tenant, &skipped);
        data.enqueue(tenant, deliveries, at);
        for notice in &notices {
            data.enqueue_work(tenant, Work::Email(notice.id), at);
        }
        drop(data);
        self.wake();
        Ok(Some(webhook))
    }

    async fn rotate_secret(
        &self,
        tenant: TenantId,
        id: WebhookId,
        sealed: &[u8],
        keep_previous_until: Option<OffsetDateTime>,
        trail: &AuditTrail,
    ) -> Result<Webhook> {
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let mut webhook = rows.webhooks.get(*id.as_uuid()).ok_or(Error::NotFound)?.clone();
        let old = rows.secrets.insert(id, sealed.to_vec());
        match (keep_previous_until, old) {
            (Some(until), Some(old)) => {
                rows.previous_secrets.insert(id, (old, until));
            }
            _ => {
                rows.previous_secrets.remove(&id);
            }
        }
        webhook.rotation_ends_at = rows.previous_secrets.get(&id).map(|(_, until)| *until);
        rows.webhooks.replace(webhook.clone());
        rows.append(trail);
        Ok(webhook)
    }

    async fn send_event(&self, id: WebhookId, event: &DomainEvent, trail: &AuditTrail) -> Result<Delivery> {
        let tenant = event.tenant_id;
        let mut data = self.write();
        data.jobs.check_room(tenant, 1)?;
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        rows.webhooks.get(*id.as_uuid()).ok_or(Error::NotFound)?;
        let delivery = rows.add_delivery(id, event);
        rows.outbox.insert(event.clone());
        rows.append(trail);
        let created = rows.delivery_of(id, delivery)?;
        data.enqueue(tenant, vec![delivery], self.clock.now());
        drop(data);
        self.wake();
        Ok(created)
    }

    async fn retry_delivery(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        delivery: DeliveryId,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Delivery> {
        let mut data = self.write();
        let rows = data.tenant(tenant).ok_or(Error::NotFound)?;
        rows.delivery_of(webhook, delivery)?;
        if !data.has_job(tenant, delivery) {
            data.jobs.check_room(tenant, 1)?;
        }
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let retried = rows.resend(webhook, delivery)?;
        rows.append(trail);
        data.schedule_delivery(tenant, delivery, at);
        drop(data);
        self.wake();
        Ok(retried)
    }

    async fn recover(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        recovery: &Recovery,
        trail: &AuditTrail,
    ) -> Result<Recovered> {
        let mut data = self.write();
        let rows = data.tenant(tenant).ok_or(Error::NotFound)?;
        rows.webhooks.get(*webhook.as_uuid()).ok_or(Error::NotFound)?;
        let mut failed: Vec<&Delivery> = rows
            .deliveries
            .iter()
            .filter(|d| d.webhook_id == webhook && d.created_at >= recovery.since)
            .filter(|d| match d.state {
                DeliveryState::Dead | DeliveryState::Skipped => true,
                DeliveryState::Pending => d.attempts > 0,
                DeliveryState::Delivered => false,
            })
            .collect();
        failed.sort_by_key(|d| (d.created_at, *d.id.as_uuid()));
        let next_since = failed.get(recovery.limit).map(|d| d.created_at);
        let chosen: Vec<DeliveryId> = failed.iter().take(recovery.limit).map(|d| d.id).collect();
        let new_jobs = chosen.iter().filter(|d| !data.has_job(tenant, **d)).count();
        data.jobs.check_room(tenant, new_jobs)?;
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        for delivery in &chosen {
            rows.resend(webhook, *delivery)?;
        }
        rows.append(trail);
        let mut due = recovery.now;
        for delivery in &chosen {
            data.schedule_delivery(tenant, *delivery, due);
            due += recovery.spacing;
        }
        drop(data);
        self.wake();
        Ok(Recovered { deliveries: chosen.len() as u64, next_since })
    }
}

impl TenantData {
    /// Makes the webhook's delivery pending again (its slot given up); returns it.
    fn resend(&mut self, webhook: WebhookId, delivery: DeliveryId) -> Result<Delivery> {
        let mut d = self.delivery_of(webhook, delivery)?;
        d.state = DeliveryState::Pending;
        self.slots.remove(&delivery);
        self.deliveries.replace(d.clone());
        Ok(d)
    }
}
