//! The audit log and API keys: entries appended under a lock on the tenant's chain head as the
//! last statement of the write that causes them, and read back for pages and verification.

use async_trait::async_trait;
use plinth_domain::Result;
use plinth_domain::audit::{Actor, ActorKind, AuditEntry, AuditRecord, AuditTrail, ChainHash, ChainLink, Target};
use plinth_domain::entities::ApiKey;
use plinth_domain::events::EventData;
use plinth_domain::ids::{ApiKeyId, TenantId, UserId};
use plinth_domain::ports::{ApiKeyRepository, AuditLog, AuditQuery, CountCheck, KeyRecord};
use plinth_domain::values::{ApiKeyToken, Role, Scope, Scopes, TokenHash};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{OrDb as _, corrupt};
use crate::op;
use crate::pool::{PgStore, Tx, stale_read, tenant_read, tenant_tx, unscoped};

/// A stored hash; one of another length (written around the chain) reads as a hash no entry
/// has, so verification reports where it is rather than failing.
fn hash_of(row: &Row, column: &str) -> Result<ChainHash> {
    let bytes: Vec<u8> = row.try_get(column).or_db()?;
    Ok(ChainHash(bytes.try_into().unwrap_or([0xff; 32])))
}

fn seq_of(row: &Row, column: &str) -> Result<u64> {
    u64::try_from(row.try_get::<_, i64>(column).or_db()?).map_err(|_| corrupt("audit seq"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Creates `tenant`'s chain head (at no entry), in `tx`: with the tenant, so appends find it.
pub(crate) async fn create_head(tx: &Tx<'_>, tenant: TenantId) -> Result<()> {
    let create =
        tx.prepare_cached("INSERT INTO audit_heads (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING").await.or_db()?;
    tx.execute(&create, &[tenant.as_uuid()]).await.or_db()?;
    Ok(())
}

/// Appends `trail` to `tenant`'s chain in `tx`: locks the chain's head, seals the entries after
/// it and stores them with the new head, in two statements (two round trips). Call it last
/// before committing: the lock is held until the commit. A tenant made before the audit log
/// (or bulk-loaded without a head) gets its head on its first entry.
pub(crate) async fn append(tx: &Tx<'_>, tenant: TenantId, trail: &AuditTrail) -> Result<()> {
    if trail.is_empty() {
        return Ok(());
    }
    let lock = tx.prepare_cached("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE").await.or_db()?;
    let head = match tx.query_opt(&lock, &[tenant.as_uuid()]).await.or_db()? {
        Some(head) => head,
        None => {
            create_head(tx, tenant).await?;
            tx.query_one(&lock, &[tenant.as_uuid()]).await.or_db()?
        }
    };
    let head = ChainLink { seq: seq_of(&head, "seq")?, hash: hash_of(&head, "hash")? };
    let insert = tx
        .prepare_cached(
            "WITH e AS (INSERT INTO audit_log (tenant_id, seq, at, actor_kind, actor_id, actor_ip, actor_user_agent, \
             action, target_type, target_id, request_id, changes, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::json, $13, $14)) \
             UPDATE audit_heads SET seq = $2, hash = $14 WHERE tenant_id = $1",
        )
        .await
        .or_db()?;
    for r in trail.seal(tenant, head) {
        let e = &r.entry;
        tx.execute(
            &insert,
            &[
                tenant.as_uuid(),
                &to_i64(r.seq),
                &e.at,
                &e.actor.kind.as_str(),
                &e.actor.id,
                &e.actor.ip,
                &e.actor.user_agent,
                &e.action,
                &e.target.as_ref().map(|t| t.kind.as_str()),
                &e.target.as_ref().map(|t| t.id.as_str()),
                &e.request_id,
                &e.changes,
                &&r.prev_hash.0[..],
                &&r.hash.0[..],
            ],
        )
        .await
        .or_db()?;
    }
    Ok(())
}

macro_rules! record_columns {
    () => {
        "seq, at, actor_kind, actor_id, actor_ip, actor_user_agent, action, target_type, target_id, request_id, \
         changes::text AS changes, prev_hash, hash"
    };
}

/// The tenant's entries, for its export (by seq).
pub(crate) const EXPORT: &str =
    concat!("SELECT ", record_columns!(), " FROM audit_log WHERE tenant_id = $1 ORDER BY seq");

pub(crate) fn record_from_row(row: &Row) -> Result<AuditRecord> {
    let kind: String = row.try_get("actor_kind").or_db()?;
    let target_type: Option<String> = row.try_get("target_type").or_db()?;
    let target_id: Option<String> = row.try_get("target_id").or_db()?;
    Ok(AuditRecord {
        seq: seq_of(row, "seq")?,
        entry: AuditEntry {
            at: row.try_get("at").or_db()?,
            actor: Actor {
                kind: ActorKind::parse(&kind).ok_or_else(|| corrupt("audit actor"))?,
                id: row.try_get("actor_id").or_db()?,
                ip: row.try_get("actor_ip").or_db()?,
                user_agent: row.try_get("actor_user_agent").or_db()?,
            },
            action: row.try_get("action").or_db()?,
            target: target_type.zip(target_id).map(|(kind, id)| Target { kind, id }),
            request_id: row.try_get("request_id").or_db()?,
            changes: row.try_get("changes").or_db()?,
        },
        prev_hash: hash_of(row, "prev_hash")?,
        hash: hash_of(row, "hash")?,
    })
}

fn records(rows: &[Row]) -> Result<Vec<AuditRecord>> {
    rows.iter().map(record_from_row).collect()
}

#[async_trait]
impl AuditLog for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn append(&self, tenant: TenantId, trail: &AuditTrail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::AUDIT_APPEND).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn page(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        self.bounded(stale_read!(self, op::AUDIT_PAGE, tenant, |client| {
            let sql = concat!(
                "SELECT ",
                record_columns!(),
                " FROM audit_log WHERE tenant_id = $1 AND ($2::bigint IS NULL OR seq < $2) \
                 AND ($3::uuid IS NULL OR actor_id = $3) AND ($4::text IS NULL OR action = $4) \
                 AND ($5::text IS NULL OR target_id = $5) AND ($6::timestamptz IS NULL OR at >= $6) \
                 AND ($7::timestamptz IS NULL OR at < $7) ORDER BY seq DESC LIMIT $8"
            );
            let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = tenant_read(
                &client,
                tenant,
                sql,
                &[
                    tenant.as_uuid(),
                    &before.map(to_i64),
                    &query.actor,
                    &query.action,
                    &query.target,
                    &query.since,
                    &query.until,
                    &limit_param,
                ],
                limit,
            )
            .await?;
            records(&rows)
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn ends(&self, tenant: TenantId) -> Result<(ChainLink, ChainLink)> {
        self.bounded(async {
            let client = self.conn(op::AUDIT_VERIFY).await?;
            let sql = "SELECT seq, hash, checkpoint_seq, checkpoint_hash FROM audit_heads WHERE tenant_id = $1";
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid()], 1).await?;
            let Some(row) = rows.first() else { return Ok((ChainLink::default(), ChainLink::default())) };
            Ok((
                ChainLink { seq: seq_of(row, "checkpoint_seq")?, hash: hash_of(row, "checkpoint_hash")? },
                ChainLink { seq: seq_of(row, "seq")?, hash: hash_of(row, "hash")? },
            ))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn chain(&self, tenant: TenantId, after: u64, upto: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.bounded(async {
            let client = self.conn(op::AUDIT_VERIFY).await?;
            let sql = concat!(
                "SELECT ",
                record_columns!(),
                " FROM audit_log WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"
            );
            let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = tenant_read(
                &client,
                tenant,
                sql,
                &[tenant.as_uuid(), &to_i64(after), &to_i64(upto), &limit_param],
                limit,
            )
            .await?;
            records(&rows)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn prune(&self, before: OffsetDateTime) -> Result<u64> {
        self.bounded(async {
            let client = self.conn(op::AUDIT_PRUNE).await?;
            let rows = unscoped(&client, "SELECT plinth_prune_audit($1)", &[&before], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("prune"))?;
            Ok(u64::try_from(row.try_get::<_, i64>(0).or_db()?).unwrap_or(0))
        })
        .await
    }
}

macro_rules! key_columns {
    () => {
        "k.tenant_id, k.id, k.name, k.scopes, k.role, k.created_by, k.rate_limit_per_minute, k.created_at, \
         k.last_used_at, k.expires_at"
    };
}

fn key_from_row(row: &Row) -> Result<ApiKey> {
    let id = ApiKeyId::from_uuid(row.try_get("id").or_db()?);
    let scopes: Vec<String> = row.try_get("scopes").or_db()?;
    let scopes =
        scopes.iter().map(|s| s.parse::<Scope>()).collect::<Result<Vec<_>, _>>().map_err(|_| corrupt("key scope"))?;
    let role: String = row.try_get("role").or_db()?;
    let rate: Option<i32> = row.try_get("rate_limit_per_minute").or_db()?;
    Ok(ApiKey {
        id,
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        name: row.try_get("name").or_db()?,
        prefix: ApiKeyToken::prefix_of(id),
        scopes: Scopes::of(scopes),
        role: role.parse::<Role>().map_err(|_| corrupt("key role"))?,
        created_by: row.try_get::<_, Option<Uuid>>("created_by").or_db()?.map(UserId::from_uuid),
        rate_limit_per_minute: rate.map(|r| u32::try_from(r).unwrap_or(0)),
        created_at: row.try_get("created_at").or_db()?,
        last_used_at: row.try_get("last_used_at").or_db()?,
        expires_at: row.try_get("expires_at").or_db()?,
    })
}

#[async_trait]
impl ApiKeyRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %key.tenant_id))]
    async fn create(&self, key: &ApiKey, hash: &TokenHash, check: CountCheck<'_>, trail: &AuditTrail) -> Result<()> {
        let scopes: Vec<&str> = key.scopes.iter().map(Scope::as_str).collect();
        let rate = key.rate_limit_per_minute.map(|r| i32::try_from(r).unwrap_or(i32::MAX));
        let events = trail.events(key.tenant_id, &[EventData::ApiKey(key.clone())])?;
        self.bounded(async {
            let mut client = self.conn(op::KEYS_CREATE).await?;
            let tx = tenant_tx(&mut client, key.tenant_id).await?;
            // Creations of one tenant take turns from here to their commit, so the count they
            // check can't be overtaken by another's insert.
            let lock = tx
                .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('plinth.api_keys:' || $1::text, 0))")
                .await
                .or_db()?;
            tx.execute(&lock, &[&key.tenant_id.to_string()]).await.or_db()?;
            let count = tx
                .prepare_cached("SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL")
                .await
                .or_db()?;
            let existing: i64 = tx.query_one(&count, &[key.tenant_id.as_uuid()]).await.or_db()?.try_get(0).or_db()?;
            check(usize::try_from(existing).unwrap_or(usize::MAX))?;
            let q = tx
                .prepare_cached(
                    "INSERT INTO api_keys (tenant_id, id, name, scopes, role, created_by, secret_hash, \
                     rate_limit_per_minute, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await
                .or_db()?;
            tx.execute(
                &q,
                &[
                    key.tenant_id.as_uuid(),
                    key.id.as_uuid(),
                    &key.name,
                    &scopes,
                    &key.role.as_str(),
                    &key.created_by.map(|u| *u.as_uuid()),
                    &&hash.as_bytes()[..],
                    &rate,
                    &key.created_at,
                    &key.expires_at,
                ],
            )
            .await
            .or_db()?;
            crate::events::settle_within(&tx, key.tenant_id, &events, trail, self.max_pending_jobs).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>> {
        self.bounded(stale_read!(self, op::KEYS_LIST, tenant, |client| {
            let sql = concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys k WHERE k.tenant_id = $1 AND k.revoked_at IS NULL \
                 ORDER BY k.created_at DESC, k.id DESC"
            );
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid()], 100).await?;
            rows.iter().map(key_from_row).collect()
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn lookup(&self, tenant: TenantId, id: ApiKeyId) -> Result<Option<KeyRecord>> {
        self.bounded(async {
            let client = self.conn(op::KEYS_LOOKUP).await?;
            let sql = concat!(
                "SELECT ",
                key_columns!(),
                ", k.secret_hash, u.role AS creator_role FROM api_keys k \
                 LEFT JOIN users u ON u.tenant_id = k.tenant_id AND u.id = k.created_by \
                 WHERE k.tenant_id = $1 AND k.id = $2 AND k.revoked_at IS NULL"
            );
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            let Some(row) = rows.first() else { return Ok(None) };
            let hash: Vec<u8> = row.try_get("secret_hash").or_db()?;
            let creator_role: Option<String> = row.try_get("creator_role").or_db()?;
            Ok(Some(KeyRecord {
                key: key_from_row(row)?,
                hash: TokenHash::from_bytes(hash.try_into().map_err(|_| corrupt("key hash"))?),
                creator_role: creator_role.map(|r| r.parse::<Role>().map_err(|_| corrupt("user role"))).transpose()?,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn revoke(&self, tenant: TenantId, id: ApiKeyId, now: OffsetDateTime, trail: &AuditTrail) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op::KEYS_REVOKE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!(
                    "UPDATE api_keys k SET revoked_at = $3 WHERE k.tenant_id = $1 AND k.id = $2 \
                     AND k.revoked_at IS NULL RETURNING ",
                    key_columns!()
                ))
                .await
                .or_db()?;
            let Some(row) = tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid(), &now]).await.or_db()? else {
                return Ok(false);
            };
            let events = trail.events(tenant, &[EventData::ApiKey(key_from_row(&row)?)])?;
            crate::events::settle(&tx, tenant, &events, trail).await?;
            tx.commit().await.or_db()?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(keys = used.len()))]
    async fn touch(&self, used: &[(TenantId, ApiKeyId, OffsetDateTime)]) -> Result<()> {
        // One row per key (an UPDATE applies one of several matching rows, whichever it meets).
        let mut latest = std::collections::BTreeMap::new();
        for (tenant, key, at) in used {
            let slot = latest.entry((*tenant.as_uuid(), *key.as_uuid())).or_insert(*at);
            *slot = (*slot).max(*at);
        }
        let tenants: Vec<Uuid> = latest.keys().map(|(t, _)| *t).collect();
        let ids: Vec<Uuid> = latest.keys().map(|(_, k)| *k).collect();
        let at: Vec<OffsetDateTime> = latest.values().copied().collect();
        self.bounded(async {
            let client = self.conn(op::KEYS_TOUCH).await?;
            unscoped(&client, "SELECT plinth_touch_api_keys($1, $2, $3)", &[&tenants, &ids, &at], 1).await?;
            Ok(())
        })
        .await
    }
}
