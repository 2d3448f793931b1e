//! Validated values: once constructed, valid. Each `parse` says in its error what is wrong.

mod email;
mod name;
mod password;
mod role;
mod slug;

pub use email::Email;
pub use name::{ProjectName, TenantName};
pub use password::{Password, PasswordHash};
pub use role::{Plan, Role};
pub use slug::Slug;

/// Why a value was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub &'static str);
