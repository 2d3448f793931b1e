//! The names of the database operations, the `op` label of `db_query_duration_seconds`: one
//! per port call, a small fixed set written here (never a tenant, a key or a statement).

pub(crate) const PING: &str = "ping";
pub(crate) const IDEMPOTENCY_LOOKUP: &str = "idempotency.lookup";
pub(crate) const IDEMPOTENCY_RECORD: &str = "idempotency.record";
pub(crate) const JOBS_CLAIM: &str = "jobs.claim";
pub(crate) const JOBS_RELEASE: &str = "jobs.release";
pub(crate) const JOBS_RESCUE: &str = "jobs.rescue";
pub(crate) const JOBS_STATS: &str = "jobs.stats";
pub(crate) const JOBS_PRUNE: &str = "jobs.prune";
pub(crate) const JOBS_DISCARD: &str = "jobs.discard";
pub(crate) const DELIVERIES_LOAD: &str = "deliveries.load";
pub(crate) const DELIVERIES_RECORD: &str = "deliveries.record";
pub(crate) const TENANTS_CREATE: &str = "tenants.create";
pub(crate) const TENANTS_FIND: &str = "tenants.find";
pub(crate) const USERS_CREATE: &str = "users.create";
pub(crate) const USERS_GET: &str = "users.get";
pub(crate) const USERS_FIND_BY_EMAIL: &str = "users.find_by_email";
pub(crate) const USERS_LIST: &str = "users.list";
pub(crate) const USERS_UPDATE_ROLE: &str = "users.update_role";
pub(crate) const USERS_DELETE: &str = "users.delete";
pub(crate) const WEBHOOKS_CREATE: &str = "webhooks.create";
pub(crate) const WEBHOOKS_LIST: &str = "webhooks.list";
pub(crate) const WEBHOOKS_DELETE: &str = "webhooks.delete";
pub(crate) const WEBHOOKS_DELIVERIES: &str = "webhooks.deliveries";
pub(crate) const PROJECTS_LIST: &str = "projects.list";
pub(crate) const PROJECTS_GET: &str = "projects.get";
pub(crate) const PROJECTS_CREATE: &str = "projects.create";
pub(crate) const PROJECTS_RENAME: &str = "projects.rename";
pub(crate) const PROJECTS_DELETE: &str = "projects.delete";
