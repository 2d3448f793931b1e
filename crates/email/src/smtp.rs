//! [`SmtpSender`]: each message handed to an SMTP server over a connection of its own, with
//! STARTTLS or implicit TLS (rustls on ring) as the URL says.
//!
//! No connection pool: transactional mail is a few messages at a time, and a connection per
//! message holds nothing open between them, so no dead connection can ever be reused (a server
//! that went away and came back is simply reached anew by the next send). The cost is one TCP
//! and TLS handshake (and a login) per message.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use plinth_domain::ports::{EmailSender, MailFailure, OutboundEmail};

use crate::settings::{Security, SmtpConfigError, SmtpUrl};

/// How long one send may take by default, from connecting to the server's last answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest failure reason kept (the server's own words can be long).
const MAX_REASON: usize = 200;

/// Sends messages through one SMTP server.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    endpoint: String,
    timeout: Duration,
}

impl SmtpSender {
    /// A sender through the server of `url` (`smtp://[user:pass@]host[:port][?tls=none]` or
    /// `smtps://[user:pass@]host[:port]`, user and password percent-encoded), with `from`
    /// (`Name <a@b>` or `a@b`) as the sender, trusting the PEM certificates of `ca_file` beside
    /// Mozilla's roots. Connects to nothing yet.
    ///
    /// With credentials, `smtp://` sends only after STARTTLS: a server that does not offer it
    /// gets no message (a permanent failure, see [`EmailSender::send`]).
    ///
    /// # Errors
    /// A bad URL, sender or CA file; the error never shows the password.
    pub fn new(url: &str, from: &str, ca_file: Option<&Path>) -> Result<Self, SmtpConfigError> {
        let url = SmtpUrl::parse(url)?;
        let from: Mailbox = from.parse().map_err(|e: lettre::address::AddressError| SmtpConfigError::From {
            from: from.to_owned(),
            reason: e.to_string(),
        })?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)
            .port(url.port)
            .tls(tls(&url, ca_file)?)
            .timeout(Some(TIMEOUT))
            .hello_name(ClientId::Domain(from.email.domain().to_owned()));
        if let Some(login) = url.login {
            builder = builder.credentials(Credentials::new(login.user, login.password));
        }
        Ok(Self { transport: builder.build(), from, endpoint: url.endpoint, timeout: TIMEOUT })
    }

    /// The same sender, with `timeout` (instead of 10 s) for each whole send. lettre bounds
    /// only the connect, so the whole exchange is bounded here: a server that stops answering
    /// mid-way costs one timeout, and its connection is dropped.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The MIME message for `email`: its Message-ID, From, To, Subject, and a
    /// `multipart/alternative` of the text then the HTML body.
    fn message(&self, email: &OutboundEmail) -> Result<Message, MailFailure> {
        let to: Mailbox =
            email.to.parse().map_err(|_| self.permanent("the recipient address is not a valid mailbox"))?;
        if !is_message_id(&email.message_id) {
            return Err(self.permanent("the Message-ID is not of the form left@right"));
        }
        Message::builder()
            .message_id(Some(format!("<{}>", email.message_id)))
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|e| self.permanent(&format!("the message could not be built: {e}")))
    }

    /// A failure no retry can help.
    fn permanent(&self, what: &str) -> MailFailure {
        MailFailure { permanent: true, reason: self.reason(what) }
    }

    /// lettre's error as a failure: permanent for a 5xx answer, and for a refusal on our side
    /// that the same server will always get (it offers no STARTTLS while credentials require
    /// it, no login mechanism we speak, no SMTPUTF8 for an address that needs it); otherwise
    /// (connection, timeout, TLS, 4xx) worth retrying.
    fn failure(&self, error: &lettre::transport::smtp::Error) -> MailFailure {
        MailFailure { permanent: error.is_permanent() || error.is_client(), reason: self.reason(&error.to_string()) }
    }

    /// `endpoint: what`, on one line and at most [`MAX_REASON`] characters of `what`.
    fn reason(&self, what: &str) -> String {
        let what: String = what.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(MAX_REASON).collect();
        format!("{}: {what}", self.endpoint)
    }
}

#[async_trait]
impl EmailSender for SmtpSender {
    async fn send(&self, email: &OutboundEmail) -> Result<(), MailFailure> {
        let message = self.message(email)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.failure(&e)),
            Err(_) => Err(MailFailure {
                permanent: false,
                reason: self.reason(&format!("no answer within {:?}", self.timeout)),
            }),
        }
    }

    fn describe(&self) -> String {
        self.endpoint.clone()
    }
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// lettre's TLS mode for the URL's security.
fn tls(url: &SmtpUrl, ca_file: Option<&Path>) -> Result<Tls, SmtpConfigError> {
    let mode: fn(TlsParameters) -> Tls = match url.security {
        Security::Plaintext => return Ok(Tls::None),
        Security::Opportunistic => Tls::Opportunistic,
        Security::StartTlsRequired => Tls::Required,
        Security::Implicit => Tls::Wrapper,
    };
    let mut parameters = TlsParameters::builder(url.host.clone());
    if let Some(path) = ca_file {
        parameters = parameters.add_root_certificate(ca_certificates(path)?);
    }
    parameters.build_rustls().map(mode).map_err(|e| SmtpConfigError::Tls(e.to_string()))
}

/// The PEM certificates of `path`, at least one.
fn ca_certificates(path: &Path) -> Result<Certificate, SmtpConfigError> {
    let refused = |reason: String| SmtpConfigError::CaFile { path: path.to_path_buf(), reason };
    let pem = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
    if !pem.windows(CERTIFICATE_PEM.len()).any(|w| w == CERTIFICATE_PEM) {
        return Err(refused("it holds no PEM certificate".to_owned()));
    }
    Certificate::from_pem(&pem).map_err(|e| refused(e.to_string()))
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Whether `id` can stand between a Message-ID's angle brackets: `left@right`, printable ASCII
/// without spaces or brackets.
fn is_message_id(id: &str) -> bool {
    id.contains('@') && id.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_sender_is_a_config_error() {
        for from in ["", "not an address", "Name <no-at-sign>", "a@b, c@d"] {
            let refused = SmtpSender::new("smtp://mail.example.com", from, None);
            assert!(matches!(refused, Err(SmtpConfigError::From { .. })), "{from:?}");
        }
    }

    #[test]
    fn describe_and_debug_show_the_endpoint_and_never_the_credentials() -> Result<(), SmtpConfigError> {
        let sender =
            SmtpSender::new("smtp://app:hunter2secret@mail.example.com", "Plinth <no-reply@example.com>", None)?;
        assert_eq!(sender.describe(), "smtp://mail.example.com:587");
        let debug = format!("{sender:?}");
        assert!(debug.contains("smtp://mail.example.com:587"), "{debug}");
        assert!(!debug.contains("hunter2") && !debug.contains("app"), "{debug}");
        let sender = SmtpSender::new("smtps://app:hunter2secret@[::1]:4650", "no-reply@example.com", None)?;
        assert_eq!(sender.describe(), "smtps://[::1]:4650");
        Ok(())
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let missing =
            SmtpSender::new("smtp://mail.example.com", "a@example.com", Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(SmtpConfigError::CaFile { .. })), "{missing:?}");
        let not_pem = SmtpSender::new("smtp://mail.example.com", "a@example.com", Some(Path::new("Cargo.toml")));
        assert!(matches!(not_pem, Err(SmtpConfigError::CaFile { .. })), "{not_pem:?}");
    }

    #[test]
    fn message_ids_are_checked_before_they_become_a_header() {
        assert!(is_message_id("0192f1c2-7a3b@plinth.example.com"));
        for id in ["", "no-at-sign", "a@b>", "<a@b", "a b@c", "a@b\r\nBcc: x@y"] {
            assert!(!is_message_id(id), "{id:?}");
        }
    }
}
