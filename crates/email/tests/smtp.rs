//! `SmtpSender` against a real SMTP server (aiosmtpd, from plinth-testkit's `Mailbox`): what
//! arrives, STARTTLS and implicit TLS with a login, credentials never sent in clear, and how
//! each failure is classed (a server down is worth retrying, a 5xx is not).

use std::net::TcpListener;
use std::time::Duration;

use plinth_domain::ports::{EmailSender, MailFailure, OutboundEmail};
use plinth_email::{SmtpConfigError, SmtpSender};
use plinth_testkit::{Mailbox, MailboxSecurity, ReceivedMail};

const FROM: &str = "Plinth <no-reply@plinth.test>";
/// Long enough for the slowest machine; the wait ends as soon as the message is there.
const ARRIVAL: Duration = Duration::from_secs(10);

fn email(n: u32, to: &str) -> OutboundEmail {
    let link = format!(
        "https://acme.plinth.test/v1/invitations/accept?token=tok_{n}_aZ09-_~x%2By&next=%2Fprojects%3Fpage%3D2&x=1"
    );
    OutboundEmail {
        message_id: format!("0193a1b2-c3d4-7e5f-8a9b-{n:012}@plinth.test"),
        to: to.to_owned(),
        subject: format!("Rejoignez l’équipe « Acme » — invitation {n}"),
        text: format!("Bonjour,\n\nAcceptez l’invitation : {link}\n\nCe lien expire dans 7 jours.\n"),
        html: format!("<p>Bonjour,</p>\n<p><a href=\"{link}\">Accepter l’invitation</a></p>\n"),
        link,
    }
}

/// Asserts that `received` is `sent`, headers, bodies and link intact.
fn assert_arrived(received: &ReceivedMail, sent: &OutboundEmail) {
    assert_eq!(received.message_id, sent.message_id);
    assert_eq!(received.to, sent.to);
    assert_eq!(received.subject, sent.subject);
    assert_eq!(received.text, sent.text);
    assert_eq!(received.html, sent.html);
    assert!(received.text.contains(&sent.link) && received.html.contains(&sent.link), "the link is intact");
}

async fn send(sender: &SmtpSender, email: &OutboundEmail) -> Result<(), String> {
    sender.send(email).await.map_err(|e| format!("send failed: {e:?}"))
}

async fn refused(sender: &SmtpSender, email: &OutboundEmail) -> Result<MailFailure, String> {
    match sender.send(email).await {
        Ok(()) => Err("the send succeeded".to_owned()),
        Err(failure) => Ok(failure),
    }
}

fn config(error: SmtpConfigError) -> String {
    format!("config: {error}")
}

#[tokio::test]
async fn a_message_arrives_with_its_message_id_headers_bodies_and_link() -> Result<(), String> {
    let mailbox = Mailbox::start()?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, None).map_err(config)?;
    let sent = email(1, "ann@example.com");
    send(&sender, &sent).await?;
    let received = mailbox.wait_for(1, ARRIVAL)?;
    assert_eq!(received.len(), 1);
    assert_arrived(&received[0], &sent);
    Ok(())
}

#[tokio::test]
async fn starttls_with_a_login_delivers_when_the_ca_file_is_trusted() -> Result<(), String> {
    let mailbox = Mailbox::start_with(MailboxSecurity::StartTls)?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, mailbox.ca_file().as_deref()).map_err(config)?;
    let sent = email(2, "bob@example.com");
    send(&sender, &sent).await?;
    assert_arrived(&mailbox.wait_for(1, ARRIVAL)?[0], &sent);
    Ok(())
}

#[tokio::test]
async fn implicit_tls_with_a_login_delivers() -> Result<(), String> {
    let mailbox = Mailbox::start_with(MailboxSecurity::ImplicitTls)?;
    assert!(mailbox.url().starts_with("smtps://"));
    let sender = SmtpSender::new(&mailbox.url(), FROM, mailbox.ca_file().as_deref()).map_err(config)?;
    let sent = email(3, "carol@example.com");
    send(&sender, &sent).await?;
    assert_arrived(&mailbox.wait_for(1, ARRIVAL)?[0], &sent);
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_and_retried_later() -> Result<(), String> {
    let mailbox = Mailbox::start_with(MailboxSecurity::StartTls)?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, None).map_err(config)?;
    let failure = refused(&sender, &email(4, "dan@example.com")).await?;
    assert!(!failure.permanent, "{failure:?}");
    assert!(!failure.reason.contains(Mailbox::PASSWORD), "{failure:?}");
    assert!(mailbox.messages()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn credentials_are_never_sent_to_a_server_without_starttls() -> Result<(), String> {
    let mailbox = Mailbox::start()?;
    let url = format!("smtp://{}:{}@127.0.0.1:{}", Mailbox::USER, Mailbox::PASSWORD, mailbox.port());
    let sender = SmtpSender::new(&url, FROM, None).map_err(config)?;
    let failure = refused(&sender, &email(5, "erin@example.com")).await?;
    // The same server will never offer STARTTLS on a retry: permanent.
    assert!(failure.permanent, "{failure:?}");
    assert!(failure.reason.contains("STARTTLS"), "{failure:?}");
    assert!(!failure.reason.contains(Mailbox::PASSWORD), "{failure:?}");
    assert!(mailbox.messages()?.is_empty(), "nothing was sent");
    // And asking for no TLS with credentials is refused before anything connects.
    let plaintext = SmtpSender::new(&format!("{url}?tls=none"), FROM, None);
    assert!(matches!(plaintext, Err(SmtpConfigError::PlaintextWithCredentials)), "{plaintext:?}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_failure() -> Result<(), String> {
    let mailbox = Mailbox::start_with(MailboxSecurity::StartTls)?;
    let url = format!("smtp://{}:not-the-password@127.0.0.1:{}", Mailbox::USER, mailbox.port());
    let sender = SmtpSender::new(&url, FROM, mailbox.ca_file().as_deref()).map_err(config)?;
    let failure = refused(&sender, &email(6, "fay@example.com")).await?;
    assert!(failure.permanent, "{failure:?}");
    assert!(!failure.reason.contains("not-the-password"), "{failure:?}");
    assert!(mailbox.messages()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_server_down_is_worth_retrying_and_the_same_sender_delivers_once_it_is_back() -> Result<(), String> {
    let mut mailbox = Mailbox::start()?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, None).map_err(config)?;
    let first = email(7, "gus@example.com");
    send(&sender, &first).await?;
    mailbox.wait_for(1, ARRIVAL)?;

    mailbox.stop();
    let failure = refused(&sender, &email(8, "gus@example.com")).await?;
    assert!(!failure.permanent, "{failure:?}");
    assert!(failure.reason.starts_with(&sender.describe()), "{failure:?}");

    mailbox.start_again()?;
    let third = email(9, "gus@example.com");
    send(&sender, &third).await?;
    let received = mailbox.wait_for(2, ARRIVAL)?;
    assert_eq!(received.len(), 2);
    assert_arrived(&received[0], &first);
    assert_arrived(&received[1], &third);
    Ok(())
}

#[tokio::test]
async fn a_refused_recipient_is_a_permanent_failure() -> Result<(), String> {
    let mailbox = Mailbox::start()?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, None).map_err(config)?;
    let failure = refused(&sender, &email(10, "refuse@example.com")).await?;
    assert!(failure.permanent, "{failure:?}");
    assert!(failure.reason.contains("550"), "{failure:?}");
    assert!(!failure.reason.contains("Bonjour"), "no body in the reason: {failure:?}");
    // The sender is still good for the next message.
    let next = email(11, "hal@example.com");
    send(&sender, &next).await?;
    assert_arrived(&mailbox.wait_for(1, ARRIVAL)?[0], &next);
    Ok(())
}

#[tokio::test]
async fn an_invalid_recipient_is_refused_before_anything_is_sent() -> Result<(), String> {
    let mailbox = Mailbox::start()?;
    let sender = SmtpSender::new(&mailbox.url(), FROM, None).map_err(config)?;
    let failure = refused(&sender, &email(12, "not an address")).await?;
    assert!(failure.permanent, "{failure:?}");
    assert!(mailbox.messages()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_costs_one_timeout_and_is_worth_retrying() -> Result<(), String> {
    // Connections complete in the kernel's backlog, and nothing ever answers them.
    let silent = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = silent.local_addr().map_err(|e| e.to_string())?.port();
    let timeout = Duration::from_millis(300);
    let sender =
        SmtpSender::new(&format!("smtp://127.0.0.1:{port}"), FROM, None).map_err(config)?.with_timeout(timeout);
    let failure = refused(&sender, &email(13, "ivy@example.com")).await?;
    assert!(!failure.permanent, "{failure:?}");
    assert!(failure.reason.contains("no answer within 300ms"), "{failure:?}");
    Ok(())
}
