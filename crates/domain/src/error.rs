//! The domain's error: what a use case or a port can fail with.
//!
//! Driver errors never cross a port: adapters turn them into `Unavailable` (the dependency
//! did not answer in time, or at all; the API's 503) or `Internal` (anything else; the API's
//! 500, whose cause is logged and never shown to the client).

use std::fmt;

/// A boxed cause, kept for the logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the domain's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a use case or a port can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Well-formed input that breaks a rule; one entry per offending field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Malformed input outside a body: a query parameter or a cursor.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No credentials were presented where they are required.
    #[error("authentication required")]
    Unauthorized,
    /// The presented token is not valid here (signature, expiry, tenant, or a changed user).
    #[error("invalid token")]
    InvalidToken,
    /// Login failed; deliberately says nothing about which part was wrong.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// An emailed token (invitation, password reset, verification) that is malformed, unknown,
    /// used, expired, revoked, of another tenant or of another purpose: deliberately one error.
    #[error("invalid emailed token")]
    InvalidEmailToken,
    /// The deployment requires a verified address for writes, and the caller's is not.
    #[error("email address not verified")]
    EmailUnverified,
    /// The caller's role may not do this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// An API key without the scope the route needs (named, for the client's owner).
    #[error("insufficient scope: {0}")]
    InsufficientScope(crate::values::Scope),
    /// The write would take the tenant past its plan's limit of `resource`; nothing was written.
    #[error("plan limit reached: {resource}")]
    PlanLimitReached {
        /// What is limited: `members`, `projects`, `webhooks` or `api_keys`.
        resource: &'static str,
        /// The plan's limit.
        limit: u32,
        /// How many the tenant has.
        usage: u64,
    },
    /// The host names no tenant.
    #[error("tenant not found")]
    TenantNotFound,
    /// The host's tenant is suspended: every route refuses.
    #[error("tenant suspended")]
    TenantSuspended,
    /// No such resource visible to this tenant.
    #[error("not found")]
    NotFound,
    /// The write conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// An idempotency key was sent again with another request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// A quota the use case counts itself (not the gate's) is spent.
    #[error("rate limited")]
    RateLimited {
        /// Whole seconds until a request is admitted again.
        retry_after_secs: u64,
    },
    /// The write would enqueue jobs past the tenant's cap on pending jobs; nothing was written.
    #[error("the tenant's job queue is full")]
    QueueFull,
    /// A dependency did not answer, or not in time.
    #[error("{dependency} unavailable")]
    Unavailable {
        /// Which dependency: `database`, `redis`, ….
        dependency: &'static str,
        /// The driver's error, for the logs.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else; the cause is for the logs only.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl Error {
    /// A validation failure of one field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// A dependency failure, keeping the cause for the logs.
    pub fn unavailable(dependency: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { dependency, source: Some(source.into()) }
    }

    /// An unexpected failure, keeping the cause for the logs.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }

    /// Whether this is the "dependency unavailable" kind.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// This error and each of its causes, `: `-separated, for the logs (never for a client).
    pub fn chain(&self) -> String {
        let mut chain = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        chain
    }
}

/// One field's validation failure, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The offending field, as named in the request.
    #[cfg_attr(feature = "openapi", schema(example = "name"))]
    pub field: String,
    /// What is wrong with it, for a human.
    #[cfg_attr(feature = "openapi", schema(example = "must not be empty"))]
    pub message: String,
}

impl FieldError {
    /// A failure of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What a write conflicted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Another tenant has this slug.
    SlugTaken,
    /// Another user of this tenant has this email.
    EmailTaken,
    /// The change would leave the tenant without an owner.
    LastOwner,
    /// The tenant has as many pending invitations as it may.
    TooManyInvitations,
    /// The tenant has as many live API keys as it may.
    TooManyKeys,
    /// The deleted tenant's grace has run out: its data is being erased and can't be restored.
    GraceOver,
    /// The tenant changed while the change was being made, again and again.
    ChangedMeanwhile,
    /// An export of the tenant is already running (one at a time per tenant).
    ExportRunning,
    /// The webhook is disabled: nothing is sent to it until it is enabled again.
    WebhookDisabled,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SlugTaken => "this tenant slug is already taken",
            Self::EmailTaken => "a user with this email already exists",
            Self::LastOwner => "the last owner can't be removed or demoted",
            Self::TooManyInvitations => "this tenant has too many pending invitations; revoke some first",
            Self::TooManyKeys => "this tenant has too many API keys; revoke some first",
            Self::GraceOver => "this tenant's grace has run out: its data is being erased and can't be restored",
            Self::ChangedMeanwhile => "the tenant kept changing while this change was made; try again",
            Self::ExportRunning => "an export of this tenant is already running; try again when it ends",
            Self::WebhookDisabled => "this webhook is disabled; enable it (PATCH with enabled: true) first",
        })
    }
}

/// Collects field errors so a request learns all of them at once.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `result`'s value, or records its error against `field`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &'static str, result: std::result::Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(FieldError::new(field, e.to_string()));
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The validation error of everything recorded (call it when a check returned `None`).
    pub fn into_error(self) -> Error {
        Error::Validation(self.errors)
    }
}
