//! Tenant API keys: created by an owner or admin, shown once, checked on every request they
//! carry by one cached lookup and one MAC.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use time::OffsetDateTime;

use super::Plinth;
use crate::audit::Target;
use crate::cache::Scope as CacheScope;
use crate::entities::ApiKey;
use crate::error::{Conflict, Error, Result, Validator};
use crate::events::EventKind;
use crate::ids::{ApiKeyId, TenantId};
use crate::ports::{KeyRecord, Quota};
use crate::usecases::{Caller, Principal};
use crate::values::{ApiKeyKey, ApiKeyToken, ProjectName, Role, Scope, Scopes, TokenHash};

/// How many live keys a tenant may have.
const MAX_KEYS: usize = 100;

/// The most a key's own quota may be, requests per minute.
const MAX_KEY_RATE: u32 = 1_000_000;

/// A key to create, unvalidated.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// What its owners call it.
    pub name: String,
    /// The scopes it gets, by name.
    pub scopes: Vec<String>,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// Its own quota, requests per minute, if any.
    pub rate_limit_per_minute: Option<u32>,
}

/// A new key and its text, which is never shown again.
#[derive(Clone)]
pub struct CreatedKey {
    /// The key.
    pub key: ApiKey,
    /// `plk_…`: what its holder presents.
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey").field("key", &self.key).finish_non_exhaustive()
    }
}

/// The settings of API keys.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// Hashes their secrets.
    pub key: ApiKeyKey,
}

/// When each key was last used, since the last flush: a request records its key here, and
/// [`Plinth::flush_key_usage`] writes them all at once.
#[derive(Debug, Default)]
pub(crate) struct KeyUsage(Mutex<HashMap<(TenantId, ApiKeyId), OffsetDateTime>>);

impl KeyUsage {
    fn record(&self, tenant: TenantId, key: ApiKeyId, at: OffsetDateTime) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert((tenant, key), at);
    }

    fn take(&self) -> Vec<(TenantId, ApiKeyId, OffsetDateTime)> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.drain().map(|((t, k), at)| (t, k, at)).collect()
    }
}

/// The lower of two roles.
const fn lower(a: Role, b: Role) -> Role {
    match (a, b) {
        (Role::Member, _) | (_, Role::Member) => Role::Member,
        (Role::Admin, _) | (_, Role::Admin) => Role::Admin,
        _ => Role::Owner,
    }
}

/// The cached form of a live key: `<role>:<scope bits>:<expiry, unix seconds or ->:<quota or
/// ->:<hash, hex>`; a revoked or unknown key is `-`.
fn encode_record(record: &KeyRecord) -> Bytes {
    let key = &record.key;
    let role = record.creator_role.map_or(key.role, |now| lower(key.role, now));
    let expires = key.expires_at.map_or_else(|| "-".to_owned(), |t| t.unix_timestamp().to_string());
    let quota = key.rate_limit_per_minute.map_or_else(|| "-".to_owned(), |q| q.to_string());
    let hash = crate::hex::encode(record.hash.as_bytes());
    Bytes::from(format!("{}:{}:{expires}:{quota}:{hash}", role.as_str(), key.scopes.bits()))
}

/// A cached key: its ceiling, scopes, expiry, quota and hash.
struct Cached {
    role: Role,
    scopes: Scopes,
    expires: Option<i64>,
    quota: Option<Quota>,
    hash: TokenHash,
}

fn decode_record(bytes: &[u8]) -> Option<Cached> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split(':');
    let role = parts.next()?.parse().ok()?;
    let scopes = Scopes::from_bits(parts.next()?.parse().ok()?);
    let expires = match parts.next()? {
        "-" => None,
        t => Some(t.parse().ok()?),
    };
    let quota = match parts.next()? {
        "-" => None,
        q => Some(Quota::per_minute(q.parse().ok()?)?),
    };
    let hex = parts.next()?;
    if hex.len() != 64 || parts.next().is_some() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Cached { role, scopes, expires, quota, hash: TokenHash::from_bytes(hash) })
}

/// `key:<id>`: the key of a key's cached record.
fn record_key(id: ApiKeyId) -> String {
    let mut key = String::with_capacity(4 + 36);
    key.push_str("key:");
    id.push_to(&mut key);
    key
}

fn validate(input: &NewApiKey, now: OffsetDateTime) -> Result<(String, Scopes)> {
    let mut v = Validator::new();
    let name = v.check("name", ProjectName::parse(&input.name));
    let mut scopes = Vec::new();
    for name in &input.scopes {
        if let Some(scope) = v.check("scopes", name.parse::<Scope>()) {
            scopes.push(scope);
        }
    }
    if input.scopes.is_empty() {
        v.check::<(), _>("scopes", Err("must name at least one scope"));
    }
    if input.expires_at.is_some_and(|t| t <= now) {
        v.check::<(), _>("expires_at", Err("must be in the future"));
    }
    // Far enough for any key, and every such time is one the database can hold.
    if input
        .expires_at
        .is_some_and(|t| t.checked_to_offset(time::UtcOffset::UTC).is_none() || t > after_years(now, 100))
    {
        v.check::<(), _>("expires_at", Err("must be within 100 years"));
    }
    if input.rate_limit_per_minute.is_some_and(|q| !(1..=MAX_KEY_RATE).contains(&q)) {
        v.check::<(), _>("rate_limit_per_minute", Err("must be 1 to 1000000"));
    }
    match name {
        Some(name) if v.is_empty() => Ok((name.as_str().to_owned(), Scopes::of(scopes))),
        _ => Err(v.into_error()),
    }
}

/// `now` plus `years` years (of 366 days: a bound, not a date).
fn after_years(now: OffsetDateTime, years: i64) -> OffsetDateTime {
    now.saturating_add(time::Duration::days(366 * years))
}

fn within_limit(existing: usize) -> Result<()> {
    if existing >= MAX_KEYS { Err(Error::Conflict(Conflict::TooManyKeys)) } else { Ok(()) }
}

impl Plinth {
    /// Creates an API key for the caller's tenant with the caller's role as its ceiling, and
    /// answers its text once. Errors: `Forbidden` (a member, or a key); `Validation`;
    /// `Conflict(TooManyKeys)`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %who.tenant))]
    pub async fn create_api_key(&self, who: &Principal, input: &NewApiKey) -> Result<CreatedKey> {
        let (creator, _) = who.person()?;
        who.require_manager()?;
        let now = self.ports.clock.now();
        let (name, scopes) = validate(input, now)?;
        let id = ApiKeyId::new();
        let token = ApiKeyToken::generate(id)?;
        let key = ApiKey {
            id,
            tenant_id: who.tenant,
            name,
            prefix: ApiKeyToken::prefix_of(id),
            scopes,
            role: who.role,
            created_by: Some(creator),
            rate_limit_per_minute: input.rate_limit_per_minute,
            created_at: now,
            last_used_at: None,
            expires_at: input.expires_at,
        };
        let changes = serde_json::json!({
            "name": key.name,
            "scopes": key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            "role": key.role,
            "expires_at": key.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            "rate_limit_per_minute": key.rate_limit_per_minute,
        });
        let trail = self
            .audit(who.actor(), "api_key.created", Some(Target::new("api_key", id)), changes)
            .with_events(&[EventKind::ApiKeyCreated], now);
        let cap = who.limits.cap(crate::plans::Resource::ApiKeys);
        let check = |n: usize| {
            within_limit(n)?;
            crate::plans::Cap::check_if(cap, n)
        };
        self.ports.api_keys.create(&key, &token.hash(&self.settings.keys.key), &check, &trail).await?;
        Ok(CreatedKey { key, secret: token.expose(&self.settings.keys.key) })
    }

    /// The tenant's live keys (never their secrets). Errors: `Forbidden`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_api_keys(&self, who: &Principal) -> Result<Vec<ApiKey>> {
        who.person()?;
        who.require_manager()?;
        self.ports.api_keys.list(who.tenant).await
    }

    /// Revokes a key: it stops working on every instance at once (the tenant's generation).
    /// An admin can't revoke a key whose ceiling is an owner's, as they can't remove an owner.
    /// Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn revoke_api_key(&self, who: &Principal, id: ApiKeyId) -> Result<()> {
        who.person()?;
        who.require_manager()?;
        if who.role == Role::Admin
            && let Some(record) = self.ports.api_keys.lookup(who.tenant, id).await?
            && record.key.role == Role::Owner
        {
            return Err(Error::Forbidden("an admin can't revoke an owner's key"));
        }
        let now = self.ports.clock.now();
        let trail = self
            .audit(who.actor(), "api_key.revoked", Some(Target::new("api_key", id)), serde_json::json!({}))
            .with_events(&[EventKind::ApiKeyRevoked], now);
        if !self.ports.api_keys.revoke(who.tenant, id, now, &trail).await? {
            return Err(Error::NotFound);
        }
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }

    /// `token` as an API key this server issued (its check holds), or `InvalidToken`: the
    /// first half of [`Plinth::authenticate_key`], which looks nothing up, so that a made-up
    /// key is counted (by the client's address) before anything is.
    pub fn parse_key(&self, token: &str) -> Result<ApiKeyToken> {
        ApiKeyToken::parse(token, &self.settings.keys.key).map_err(|_| Error::InvalidToken)
    }

    /// The principal an API key establishes on `tenant`'s host: refused when it is another
    /// tenant's, unknown, revoked, expired, or its secret does not match. One cached lookup
    /// (revocation and any role change invalidate it on every instance) and one MAC. Errors:
    /// `InvalidToken`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %on.slug))]
    pub async fn authenticate_key(&self, on: &crate::entities::Tenant, token: &ApiKeyToken) -> Result<Principal> {
        let tenant = on.id;
        let id = token.id();
        let stored = self
            .cache
            .cached(CacheScope::Tenant(tenant), &record_key(id), self.settings.ttls.api_key, || async {
                Ok(match self.ports.api_keys.lookup(tenant, id).await? {
                    Some(record) => encode_record(&record),
                    None => Bytes::from_static(b"-"),
                })
            })
            .await?;
        let cached = decode_record(&stored).ok_or(Error::InvalidToken)?;
        let now = self.ports.clock.now();
        if cached.expires.is_some_and(|t| now.unix_timestamp() >= t) {
            return Err(Error::InvalidToken);
        }
        if !token.hash(&self.settings.keys.key).constant_time_eq(&cached.hash) {
            return Err(Error::InvalidToken);
        }
        self.key_usage.record(tenant, id, now);
        Ok(Principal {
            tenant,
            caller: Caller::Key { key: id, quota: cached.quota },
            role: cached.role,
            email_verified: true,
            scopes: cached.scopes,
            limits: self.settings.plans.get(&on.plan).limits,
        })
    }

    /// Writes when keys were last used, coalesced since the last call; the server calls this
    /// every few seconds. A failed write is logged and dropped (the next use records again).
    pub async fn flush_key_usage(&self) {
        let used = self.key_usage.take();
        if used.is_empty() {
            return;
        }
        if let Err(e) = self.ports.api_keys.touch(&used).await {
            tracing::warn!(error = %e, keys = used.len(), "could not record when API keys were last used");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_record_round_trips_with_the_lower_role() {
        let id = ApiKeyId::new();
        let record = KeyRecord {
            key: ApiKey {
                id,
                tenant_id: TenantId::new(),
                name: "ci".into(),
                prefix: ApiKeyToken::prefix_of(id),
                scopes: Scopes::of([Scope::ProjectsRead]),
                role: Role::Admin,
                created_by: None,
                rate_limit_per_minute: Some(30),
                created_at: OffsetDateTime::UNIX_EPOCH,
                last_used_at: None,
                expires_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)),
            },
            hash: TokenHash::from_bytes([7; 32]),
            creator_role: Some(Role::Member),
        };
        let cached = decode_record(&encode_record(&record)).unwrap_or_else(|| panic!("no record"));
        assert_eq!(cached.role, Role::Member);
        assert_eq!(cached.scopes, Scopes::of([Scope::ProjectsRead]));
        assert_eq!(cached.expires, Some(86_400));
        assert_eq!(cached.quota.map(|q| q.per_minute.get()), Some(30));
        assert!(cached.hash.constant_time_eq(&TokenHash::from_bytes([7; 32])));
        assert!(decode_record(b"-").is_none());
        assert_eq!(lower(Role::Owner, Role::Admin), Role::Admin);
        assert_eq!(lower(Role::Owner, Role::Owner), Role::Owner);
    }

    #[test]
    fn a_new_key_is_validated_field_by_field() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(10);
        let input = NewApiKey {
            name: " ".into(),
            scopes: vec!["projects:read".into(), "root".into()],
            expires_at: Some(now),
            rate_limit_per_minute: Some(0),
        };
        match validate(&input, now) {
            Err(Error::Validation(errors)) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["name", "scopes", "expires_at", "rate_limit_per_minute"]);
            }
            other => panic!("{other:?}"),
        }
        let far = NewApiKey {
            name: "far".into(),
            scopes: vec!["audit:read".into()],
            expires_at: Some(now + time::Duration::days(366 * 101)),
            rate_limit_per_minute: None,
        };
        assert!(matches!(validate(&far, now), Err(Error::Validation(e)) if e[0].field == "expires_at"));
        let ok = NewApiKey {
            name: "ci".into(),
            scopes: vec!["audit:read".into()],
            expires_at: None,
            rate_limit_per_minute: None,
        };
        assert_eq!(validate(&ok, now).ok().map(|(_, s)| s), Some(Scopes::of([Scope::AuditRead])));
    }
}
