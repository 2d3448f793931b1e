//! Outbound email: one rendered message handed to a mail server (or, with none configured, to
//! the log).

use std::fmt;

use async_trait::async_trait;

/// One rendered message, ready to send. Its bodies hold a link with a one-time token, so
/// `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundEmail {
    /// `Message-ID` without its angle brackets (`<id>@<domain>`'s inside), the same on every
    /// attempt at this message: the key a receiver dedupes a resend by.
    pub message_id: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// The link the message carries, for the log adapter (it is in both bodies too).
    pub link: String,
}

impl fmt::Debug for OutboundEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundEmail").field("message_id", &self.message_id).finish_non_exhaustive()
    }
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MailFailure {
    /// Whether trying again can't help (the server refused the message or the recipient for
    /// good: an SMTP 5xx); otherwise the attempt is retried with backoff.
    pub permanent: bool,
    /// What happened, for the message's record and the log: never a credential or a body.
    pub reason: String,
}

/// Hands messages to whoever delivers them.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Makes one attempt: `Ok` once the server has accepted the message.
    async fn send(&self, email: &OutboundEmail) -> Result<(), MailFailure>;

    /// What this sender is, for start-up's log line (`smtp://host:port`, never a password).
    fn describe(&self) -> String;
}
