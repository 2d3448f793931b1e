//! `LogSender`: each message's recipient, subject, link and Message-ID go to the log at info
//! (target `plinth::email`), and nothing else of it (no body).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use plinth_domain::ports::{EmailSender, OutboundEmail};
use plinth_email::LogSender;
use tracing_subscriber::fmt::MakeWriter;

/// What the subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> Result<String, String> {
        let bytes = self.0.lock().map_err(|_| "poisoned".to_owned())?;
        String::from_utf8(bytes.clone()).map_err(|e| e.to_string())
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_link_is_logged_and_no_body() -> Result<(), String> {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let email = OutboundEmail {
        message_id: "0193a1b2-c3d4@plinth.test".to_owned(),
        to: "ann@example.com".to_owned(),
        subject: "Reset your password".to_owned(),
        text: "TEXT-BODY-MARKER https://acme.plinth.test/reset?token=tok_123".to_owned(),
        html: "<p>HTML-BODY-MARKER</p>".to_owned(),
        link: "https://acme.plinth.test/reset?token=tok_123".to_owned(),
    };
    LogSender.send(&email).await.map_err(|e| e.to_string())?;

    let log = captured.text()?;
    assert!(log.contains("INFO") && log.contains("plinth::email"), "{log}");
    assert!(log.contains("email not sent: no SMTP server is configured (PLINTH_SMTP_URL)"), "{log}");
    for field in [&email.link, &email.to, &email.subject, &email.message_id] {
        assert!(log.contains(field.as_str()), "{field} is logged: {log}");
    }
    assert!(!log.contains("TEXT-BODY-MARKER") && !log.contains("HTML-BODY-MARKER"), "no body: {log}");
    assert_eq!(log.lines().count(), 1, "one line per message: {log}");
    assert_eq!(LogSender.describe(), "log");
    Ok(())
}
