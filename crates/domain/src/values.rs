//! Validated values: once constructed, valid. Each `parse` says in its error what is wrong.

// Character classes (their bodies, between `[` and `]`) of the patterns the API's document
// declares. Each pattern uses the common subset of ECMA-262, Python and Rust regular
// expressions, since clients, fuzzers and this crate's tests all read them.

/// What `str::trim` removes: `char::is_whitespace`, the Unicode White_Space property.
macro_rules! trimmed {
    () => {
        "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

/// `char::is_control`: the Cc category, U+0000–U+001F and U+007F–U+009F.
macro_rules! control {
    () => {
        "\\x00-\\x1f\\x7f-\\x9f"
    };
}

/// Both of the above, merged into ranges.
macro_rules! trimmed_or_control {
    () => {
        "\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

mod api_key;
mod email;
mod email_token;
mod name;
mod operator;
mod password;
mod refresh;
mod role;
mod slug;

pub use api_key::{ApiKeyKey, ApiKeyToken, Scope, Scopes};
pub use email::Email;
pub use email_token::{EmailKey, EmailToken, Purpose};
pub use name::{DISPLAY_NAME_PATTERN, ProjectName, TenantName};
pub use operator::{OPERATOR_TOKEN_PREFIX, OperatorTokens};
pub use password::{Password, PasswordHash};
pub(crate) use refresh::derive_key;
pub use refresh::{RefreshKey, RefreshToken, TokenHash};
pub use role::{Plan, Role};
pub use slug::{RESERVED as RESERVED_SLUGS, Slug};

/// Why a value was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub &'static str);
