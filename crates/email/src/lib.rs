//! Outbound email adapters: implementations of the domain's [`EmailSender`] port.
//!
//! - [`SmtpSender`] hands each message to an SMTP server (lettre, rustls on ring), configured
//!   by one `smtp://` or `smtps://` URL; credentials only ever cross the wire inside TLS.
//! - [`LogSender`] is the embedded default when no SMTP server is configured: it writes each
//!   message's link to the log instead of sending it.
//!
//! [`EmailSender`]: plinth_domain::ports::EmailSender

mod log;
mod settings;
mod smtp;

pub use log::LogSender;
pub use settings::SmtpConfigError;
pub use smtp::SmtpSender;
