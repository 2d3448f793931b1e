//! [`LogSender`]: the embedded default when no SMTP server is configured. Each message's link
//! goes to the log (the one place a link is logged on purpose), so that an operator trying
//! plinth out can still follow an invitation or a password reset.

use async_trait::async_trait;
use plinth_domain::ports::{EmailSender, MailFailure, OutboundEmail};

/// Logs each message's recipient, subject, link and Message-ID at `info` (target
/// `plinth::email`) instead of sending it; never its bodies.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

#[async_trait]
impl EmailSender for LogSender {
    async fn send(&self, email: &OutboundEmail) -> Result<(), MailFailure> {
        tracing::info!(
            target: "plinth::email",
            to = %email.to,
            subject = %email.subject,
            link = %email.link,
            message_id = %email.message_id,
            "email not sent: no SMTP server is configured (PLINTH_SMTP_URL); its link is logged instead"
        );
        Ok(())
    }

    fn describe(&self) -> String {
        "log".to_owned()
    }
}
