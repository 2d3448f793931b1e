//! Every storage port's conformance suite, on the stores of the test binary that includes
//! this: its `storage()` (a `Storage` on a fresh database) and `queue()` (the same, capped at
//! the job suite's `CAP`, as a `Queue`).

use super::{queue, storage};

plinth_domain::tenant_repository_suite!(storage().await);
plinth_domain::user_repository_suite!(storage().await);
plinth_domain::project_repository_suite!(storage().await);
plinth_domain::idempotency_store_suite!(storage().await);
plinth_domain::webhook_repository_suite!(storage().await);
plinth_domain::session_repository_suite!(storage().await);
plinth_domain::job_queue_suite!(queue().await);
plinth_domain::webhook_operations_suite!(queue().await);
plinth_domain::account_emails_suite!(storage().await);
plinth_domain::audit_suite!(storage().await);
plinth_domain::tenant_exporter_suite!(storage().await);
plinth_domain::event_log_suite!(queue().await);
