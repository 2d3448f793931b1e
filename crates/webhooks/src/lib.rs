//! Outbound webhooks: the signature receivers verify, secrets encrypted at rest, the guard
//! that keeps targets off private networks, and the sender that calls them.
//!
//! Architecture invariants: a target's addresses are checked at registration and again at
//! every delivery, and the sender connects to exactly the addresses it checked (no second DNS
//! lookup a rebinding attack could change); redirects are never followed.

mod guard;
mod secrets;
mod sender;
mod signing;

pub use guard::{AddressPolicy, Refusal, UrlGuard};
pub use secrets::{SecretBox, SecretError};
pub use sender::{HttpSender, TraceHeaders};
pub use signing::{EVENT_ID_HEADER, SIGNATURE_HEADER, signature};
