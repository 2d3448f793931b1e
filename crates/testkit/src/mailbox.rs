//! A real SMTP server for tests: aiosmtpd (`mailbox.py` beside this file) as a child process on
//! a free loopback port, writing each message it accepts to a directory of this mailbox's own.
//! Plain, STARTTLS or implicit TLS, with one accepted login ([`Mailbox::USER`],
//! [`Mailbox::PASSWORD`]) when secured; a recipient `refuse@…` is refused with a 550.
//!
//! The Python is `PLINTH_TEST_PYTHON` when set, else `<workspace>/target/venv/bin/python`, with
//! aiosmtpd at the version of `mailbox-requirements.txt` (`cargo xtask test` installs it). When
//! it is missing, starting a mailbox fails with a message saying how to get it.

use std::fs::{self, OpenOptions};
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailparse::{MailAddr, MailHeaderMap as _, ParsedMail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The server script.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/mailbox.py");
/// The pinned aiosmtpd, as pip takes it (`cargo xtask test` installs the same file).
const REQUIREMENTS: &str = include_str!("../mailbox-requirements.txt");
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often [`Mailbox::wait_for`] looks at the directory.
const POLL: Duration = Duration::from_millis(20);
/// The exit code of `mailbox.py` when aiosmtpd is not installed.
const NO_AIOSMTPD: i32 = 3;

/// How a [`Mailbox`]'s server secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxSecurity {
    /// No TLS, no login: any client may send.
    Plain,
    /// STARTTLS offered and required before anything else, then a login.
    StartTls,
    /// TLS from the first byte (SMTPS), then a login.
    ImplicitTls,
}

impl MailboxSecurity {
    fn flag(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::StartTls => "starttls",
            Self::ImplicitTls => "implicit",
        }
    }
}

/// One message the server accepted, decoded (MIME, quoted-printable, base64, encoded words;
/// line endings as `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `Message-ID` without its angle brackets.
    pub message_id: String,
    /// The `To` header's address (without a display name).
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The `text/plain` part ("" when there is none).
    pub text: String,
    /// The `text/html` part ("" when there is none).
    pub html: String,
}

/// A running SMTP server of this test's own; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct Mailbox {
    port: u16,
    dir: PathBuf,
    security: MailboxSecurity,
    child: Option<Child>,
}

impl Mailbox {
    /// The one login a secured mailbox accepts.
    pub const USER: &str = "plinth-test";
    /// Its password.
    pub const PASSWORD: &str = "mailbox-password";

    /// Starts a plain server: no TLS, no login.
    ///
    /// # Errors
    /// Python or aiosmtpd missing (the message says how to install them), or the server not
    /// listening within 20 s.
    pub fn start() -> Result<Self, String> {
        Self::start_with(MailboxSecurity::Plain)
    }

    /// Starts a server secured as `security`; a secured one has a certificate for 127.0.0.1
    /// and localhost from a CA of its own ([`Mailbox::ca_file`]).
    ///
    /// # Errors
    /// As [`Mailbox::start`].
    pub fn start_with(security: MailboxSecurity) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("plinth-mailbox-{}", uuid::Uuid::now_v7().simple()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut mailbox = Self { port: free_port()?, dir, security, child: None };
        if security != MailboxSecurity::Plain {
            write_certificates(&mailbox.dir)?;
        }
        mailbox.start_again()?;
        Ok(mailbox)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to configure plinth's SMTP sender with: `smtp://127.0.0.1:PORT` when plain,
    /// with the login when STARTTLS, `smtps://` with the login when implicit TLS.
    pub fn url(&self) -> String {
        let login = format!("{}:{}@", Self::USER, Self::PASSWORD);
        match self.security {
            MailboxSecurity::Plain => format!("smtp://127.0.0.1:{}", self.port),
            MailboxSecurity::StartTls => format!("smtp://{login}127.0.0.1:{}", self.port),
            MailboxSecurity::ImplicitTls => format!("smtps://{login}127.0.0.1:{}", self.port),
        }
    }

    /// The PEM file of the CA that signed a secured server's certificate (None when plain).
    pub fn ca_file(&self) -> Option<PathBuf> {
        (self.security != MailboxSecurity::Plain).then(|| self.dir.join("ca.pem"))
    }

    /// Every message accepted so far, in the order they arrived (across restarts).
    ///
    /// # Errors
    /// A message file that can't be read or parsed.
    pub fn messages(&self) -> Result<Vec<ReceivedMail>, String> {
        let new = self.dir.join("new");
        let mut files: Vec<PathBuf> = match fs::read_dir(&new) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", new.display())),
        };
        files.sort();
        files.iter().map(|file| read_message(file)).collect()
    }

    /// Waits until at least `count` messages have arrived, for at most `within`; all of them.
    ///
    /// # Errors
    /// Fewer than `count` arrived in time, or one could not be read.
    pub fn wait_for(&self, count: usize, within: Duration) -> Result<Vec<ReceivedMail>, String> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages()?;
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() >= deadline {
                return Err(format!("{} of {count} messages arrived within {within:?}", messages.len()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the server (SIGKILL): connections drop, the port refuses. Messages already
    /// accepted stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same certificate and messages
    /// (stopping it first if it runs).
    ///
    /// # Errors
    /// As [`Mailbox::start`].
    pub fn start_again(&mut self) -> Result<(), String> {
        self.stop();
        let python = python();
        let mut child = self
            .command(&python)?
            .spawn()
            .map_err(|e| format!("cannot run {} ({e}); {}", python.display(), setup_hint()))?;
        match wait_until_ready(&mut child) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok().and_then(|s| s.code());
                let log = fs::read_to_string(self.log()).unwrap_or_default();
                if status == Some(NO_AIOSMTPD) {
                    return Err(format!("{} has no aiosmtpd; {}", python.display(), setup_hint()));
                }
                Err(format!("the test SMTP server did not start ({e}); its log:\n{log}"))
            }
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `python mailbox.py …` for this mailbox, its stderr appended to the log.
    fn command(&self, python: &Path) -> Result<Command, String> {
        let log = OpenOptions::new().create(true).append(true).open(self.log()).map_err(|e| format!("{e}"))?;
        let mut cmd = Command::new(python);
        cmd.arg(SCRIPT)
            .args(["--port", &self.port.to_string(), "--security", self.security.flag(), "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if self.security != MailboxSecurity::Plain {
            cmd.arg("--cert")
                .arg(self.dir.join("server.pem"))
                .arg("--key")
                .arg(self.dir.join("server.key"))
                .env("MAILBOX_USER", Self::USER)
                .env("MAILBOX_PASSWORD", Self::PASSWORD);
        }
        Ok(cmd)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `PLINTH_TEST_PYTHON`, or the workspace's `target/venv/bin/python`.
fn python() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap_or(Path::new("."));
    std::env::var_os("PLINTH_TEST_PYTHON").map_or_else(|| workspace.join("target/venv/bin/python"), PathBuf::from)
}

fn setup_hint() -> String {
    let requirement = REQUIREMENTS.trim();
    format!(
        "the test SMTP server needs Python with {requirement}: `cargo xtask test` installs it into target/venv; \
         or, at the workspace root, `python3 -m venv target/venv && target/venv/bin/pip install {requirement}`; \
         or point PLINTH_TEST_PYTHON at a python that has it"
    )
}

/// Waits for the server's `ready` line on stdout.
fn wait_until_ready(child: &mut Child) -> Result<(), String> {
    let stdout: ChildStdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    // The line is read on a thread of its own so that the wait is bounded; the thread ends
    // with the line or when the server exits.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) if line.trim() == "ready" => Ok(()),
        Ok(Ok(line)) if line.is_empty() => Err("it exited".to_owned()),
        Ok(Ok(line)) => Err(format!("it said {line:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not listening after {START_TIMEOUT:?}")),
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Writes `ca.pem` (a CA of this mailbox's own), and `server.pem` and `server.key` (a
/// certificate it signed for 127.0.0.1 and localhost) into `dir`.
fn write_certificates(dir: &Path) -> Result<(), String> {
    let fail = |e: rcgen::Error| format!("test certificates: {e}");
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "plinth test mailbox CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(fail)?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).map_err(fail)?;
    server.distinguished_name.push(DnType::CommonName, "plinth test mailbox");
    let cert = server.signed_by(&key, &issuer).map_err(fail)?;

    for (name, pem) in [("ca.pem", ca_cert.pem()), ("server.pem", cert.pem()), ("server.key", key.serialize_pem())] {
        fs::write(dir.join(name), pem).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// One message file, decoded.
fn read_message(file: &Path) -> Result<ReceivedMail, String> {
    let raw = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    parse_message(&raw).map_err(|e| format!("{}: {e}", file.display()))
}

fn parse_message(raw: &[u8]) -> Result<ReceivedMail, String> {
    let mail = mailparse::parse_mail(raw).map_err(|e| e.to_string())?;
    let header = |name: &str| mail.headers.get_first_value(name).ok_or_else(|| format!("no {name} header"));
    let message_id = header("Message-ID")?.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
    Ok(ReceivedMail {
        message_id,
        to: recipient(&mail)?,
        subject: header("Subject")?,
        text: body(&mail, "text/plain")?,
        html: body(&mail, "text/html")?,
    })
}

/// The `To` header's one address.
fn recipient(mail: &ParsedMail<'_>) -> Result<String, String> {
    let to = mail.headers.get_first_header("To").ok_or("no To header")?;
    let addresses = mailparse::addrparse_header(to).map_err(|e| format!("To: {e}"))?;
    match addresses.first() {
        Some(MailAddr::Single(single)) => Ok(single.addr.clone()),
        _ => Err(format!("To holds no single address: {addresses}")),
    }
}

/// The first leaf part of type `mimetype`, decoded, or "" when there is none.
fn body(mail: &ParsedMail<'_>, mimetype: &str) -> Result<String, String> {
    match find_part(mail, mimetype) {
        Some(part) => part.get_body().map(|b| b.replace("\r\n", "\n")).map_err(|e| format!("{mimetype}: {e}")),
        None => Ok(String::new()),
    }
}

fn find_part<'a>(part: &'a ParsedMail<'a>, mimetype: &str) -> Option<&'a ParsedMail<'a>> {
    if part.subparts.is_empty() {
        (part.ctype.mimetype == mimetype).then_some(part)
    } else {
        part.subparts.iter().find_map(|p| find_part(p, mimetype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_message_is_decoded() -> Result<(), String> {
        let raw = b"Message-ID: <abc@example.com>\r\nTo: \"Ann\" <ann@example.com>\r\n\
Subject: =?utf-8?q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Caf=C3=A9\r\nline two\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PHA+aGk8L3A+\r\n--b--\r\n";
        let mail = parse_message(raw)?;
        assert_eq!(mail.message_id, "abc@example.com");
        assert_eq!(mail.to, "ann@example.com");
        assert_eq!(mail.subject, "Café");
        assert_eq!(mail.text.trim_end(), "Café\nline two");
        assert_eq!(mail.html, "<p>hi</p>");
        Ok(())
    }

    #[test]
    fn the_requirement_is_one_pinned_aiosmtpd() {
        let requirement = REQUIREMENTS.trim();
        assert!(requirement.starts_with("aiosmtpd==") && !requirement.contains('\n'), "{requirement}");
    }
}
