//! The SMTP URL, parsed and checked before anything connects:
//! `smtp://[user:pass@]host[:port][?tls=none]` or `smtps://[user:pass@]host[:port]`.
//!
//! `smtp://` (port 587 by default) upgrades with STARTTLS whenever the server offers it, and
//! requires it when credentials are given; `?tls=none` never upgrades and is accepted only for
//! a loopback host without credentials. `smtps://` (port 465) is TLS from the first byte.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

/// The default port of `smtp://`: message submission, upgraded with STARTTLS.
const SUBMISSION_PORT: u16 = 587;
/// The default port of `smtps://`: message submission over implicit TLS.
const SUBMISSIONS_PORT: u16 = 465;

/// Why an SMTP sender could not be configured. No variant holds the URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpConfigError {
    /// The URL does not parse (the parser's reason; the URL itself is not repeated).
    #[error("the SMTP URL is not a valid URL: {0}")]
    Url(url::ParseError),
    /// A scheme other than `smtp` or `smtps`.
    #[error("the SMTP URL's scheme must be smtp or smtps, not {0:?}")]
    Scheme(String),
    /// No host.
    #[error("the SMTP URL has no host")]
    NoHost,
    /// A path or a fragment, which an SMTP URL has no use for.
    #[error("the SMTP URL has a path or a fragment: it takes only [user:pass@]host[:port][?tls=none]")]
    PathOrFragment,
    /// A query parameter other than `tls=none`.
    #[error("the SMTP URL's query may only be `tls=none`, not a parameter named {0:?}")]
    Option(String),
    /// `tls=none` for a host that is not loopback.
    #[error("`tls=none` sends in clear, so it is accepted only for a loopback host, not {0}")]
    PlaintextNotLoopback(String),
    /// `tls=none` with credentials.
    #[error("`tls=none` is refused with credentials: they would cross the wire in clear")]
    PlaintextWithCredentials,
    /// `tls=none` on `smtps://`.
    #[error("`tls=none` applies to smtp:// only: smtps:// is TLS from the first byte")]
    PlaintextImplicit,
    /// A user without a password, or a password without a user.
    #[error("the SMTP URL must give both a user and a password, or neither")]
    IncompleteCredentials,
    /// The user or the password is not UTF-8 once percent-decoded.
    #[error("the SMTP URL's user or password is not UTF-8 once percent-decoded")]
    CredentialsNotUtf8,
    /// The sender address is not a mailbox.
    #[error("the sender {from:?} is not a mailbox (`Name <a@b>` or `a@b`): {reason}")]
    From {
        /// The address as given.
        from: String,
        /// Why it was refused.
        reason: String,
    },
    /// The file of extra CA certificates could not be used.
    #[error("the CA file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The TLS client could not be set up.
    #[error("TLS for the SMTP server could not be set up: {0}")]
    Tls(String),
}

/// How the connection to the server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// `smtp://` without credentials: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://` with credentials: STARTTLS or nothing is sent.
    StartTlsRequired,
    /// `smtp://…?tls=none` (loopback only): never upgraded.
    Plaintext,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// The user and password the server is logged in to with; `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Login(..)")
    }
}

/// A parsed, checked SMTP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmtpUrl {
    /// The host to connect to and to verify the certificate for (an IPv6 address unbracketed).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: Security,
    pub(crate) login: Option<Login>,
    /// `smtp://host:port` or `smtps://host:port`: what the sender is, for logs.
    pub(crate) endpoint: String,
}

impl SmtpUrl {
    /// Parses and checks `url`.
    pub(crate) fn parse(url: &str) -> Result<Self, SmtpConfigError> {
        let url = Url::parse(url).map_err(SmtpConfigError::Url)?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(SmtpConfigError::Scheme(other.to_owned())),
        };
        let host = url.host().ok_or(SmtpConfigError::NoHost)?;
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(SmtpConfigError::PathOrFragment);
        }
        let login = login(&url)?;
        let security = security(implicit, plaintext_requested(&url)?, login.is_some(), &host)?;
        let port = url.port().unwrap_or(if implicit { SUBMISSIONS_PORT } else { SUBMISSION_PORT });
        let shown = url.host_str().unwrap_or_default();
        Ok(Self {
            endpoint: format!("{}://{shown}:{port}", url.scheme()),
            host: connect_host(&host),
            port,
            security,
            login,
        })
    }
}

/// Whether the query asks for `tls=none`; any other parameter is refused.
fn plaintext_requested(url: &Url) -> Result<bool, SmtpConfigError> {
    let mut plaintext = false;
    for (name, value) in url.query_pairs() {
        if name != "tls" || value != "none" {
            return Err(SmtpConfigError::Option(name.into_owned()));
        }
        plaintext = true;
    }
    Ok(plaintext)
}

/// The user and password, percent-decoded: both or neither.
fn login(url: &Url) -> Result<Option<Login>, SmtpConfigError> {
    let decode = |s: &str| {
        percent_decode_str(s).decode_utf8().map(|s| s.into_owned()).map_err(|_| SmtpConfigError::CredentialsNotUtf8)
    };
    match (url.username(), url.password()) {
        ("", None) => Ok(None),
        ("", Some(_)) | (_, None) => Err(SmtpConfigError::IncompleteCredentials),
        (user, Some(password)) => Ok(Some(Login { user: decode(user)?, password: decode(password)? })),
    }
}

/// How to secure the connection, refusing every combination that could send in clear what
/// must not be.
fn security(
    implicit: bool,
    plaintext: bool,
    credentials: bool,
    host: &Host<&str>,
) -> Result<Security, SmtpConfigError> {
    match (implicit, plaintext, credentials) {
        (true, true, _) => Err(SmtpConfigError::PlaintextImplicit),
        (true, false, _) => Ok(Security::Implicit),
        (false, true, true) => Err(SmtpConfigError::PlaintextWithCredentials),
        (false, true, false) if !is_loopback(host) => Err(SmtpConfigError::PlaintextNotLoopback(host.to_string())),
        (false, true, false) => Ok(Security::Plaintext),
        (false, false, true) => Ok(Security::StartTlsRequired),
        (false, false, false) => Ok(Security::Opportunistic),
    }
}

/// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        // An smtp:// URL's host is opaque to the URL parser, so an IPv4 address arrives here.
        Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The host as a socket address and a TLS server name take it: an IPv6 address unbracketed.
fn connect_host(host: &Host<&str>) -> String {
    match host {
        Host::Domain(name) => (*name).to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr%2Ft p@ss";
    const ENCODED: &str = "s3cr%252Ft%20p%40ss";

    fn parse(url: &str) -> Result<SmtpUrl, SmtpConfigError> {
        SmtpUrl::parse(url)
    }

    #[test]
    fn smtp_defaults_to_port_587_and_opportunistic_starttls() -> Result<(), SmtpConfigError> {
        let url = parse("smtp://mail.example.com")?;
        assert_eq!((url.host.as_str(), url.port, url.security), ("mail.example.com", 587, Security::Opportunistic));
        assert_eq!(url.endpoint, "smtp://mail.example.com:587");
        assert_eq!(url.login, None);
        Ok(())
    }

    #[test]
    fn smtps_defaults_to_port_465_and_implicit_tls() -> Result<(), SmtpConfigError> {
        let url = parse("smtps://mail.example.com")?;
        assert_eq!((url.port, url.security), (465, Security::Implicit));
        assert_eq!(url.endpoint, "smtps://mail.example.com:465");
        Ok(())
    }

    #[test]
    fn an_explicit_port_wins() -> Result<(), SmtpConfigError> {
        assert_eq!(parse("smtp://mail.example.com:2525")?.port, 2525);
        assert_eq!(parse("smtps://mail.example.com:10465/")?.port, 10465);
        Ok(())
    }

    #[test]
    fn credentials_are_percent_decoded_and_require_starttls() -> Result<(), SmtpConfigError> {
        let url = parse(&format!("smtp://app%40example.com:{ENCODED}@mail.example.com"))?;
        let Some(login) = url.login else { panic!("no login parsed") };
        assert_eq!((login.user.as_str(), login.password.as_str()), ("app@example.com", PASSWORD));
        assert_eq!(url.security, Security::StartTlsRequired);
        assert_eq!(url.endpoint, "smtp://mail.example.com:587", "no user or password in the endpoint");
        Ok(())
    }

    #[test]
    fn credentials_come_both_or_not_at_all() {
        for url in ["smtp://user@mail.example.com", "smtp://:pass@mail.example.com"] {
            assert!(matches!(parse(url), Err(SmtpConfigError::IncompleteCredentials)), "{url}");
        }
    }

    #[test]
    fn tls_none_is_accepted_for_loopback_hosts_only() -> Result<(), SmtpConfigError> {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "[::1]"] {
            let url = parse(&format!("smtp://{host}:2525?tls=none"))?;
            assert_eq!(url.security, Security::Plaintext, "{host}");
        }
        assert_eq!(parse("smtp://[::1]:2525?tls=none")?.host, "::1");
        assert_eq!(parse("smtp://[::1]:2525?tls=none")?.endpoint, "smtp://[::1]:2525");
        for host in ["mail.example.com", "10.0.0.1", "192.168.1.1", "[2001:db8::1]", "localhost.example.com"] {
            let refused = parse(&format!("smtp://{host}?tls=none"));
            assert!(matches!(refused, Err(SmtpConfigError::PlaintextNotLoopback(_))), "{host}: {refused:?}");
        }
        Ok(())
    }

    #[test]
    fn tls_none_is_refused_with_credentials_and_on_smtps() {
        let refused = parse("smtp://user:pass@127.0.0.1?tls=none");
        assert!(matches!(refused, Err(SmtpConfigError::PlaintextWithCredentials)), "{refused:?}");
        assert!(matches!(parse("smtps://127.0.0.1?tls=none"), Err(SmtpConfigError::PlaintextImplicit)));
    }

    #[test]
    fn anything_else_in_the_url_is_refused() {
        assert!(matches!(parse("http://mail.example.com"), Err(SmtpConfigError::Scheme(s)) if s == "http"));
        assert!(matches!(parse("smtp://mail.example.com/inbox"), Err(SmtpConfigError::PathOrFragment)));
        assert!(matches!(parse("smtp://mail.example.com#x"), Err(SmtpConfigError::PathOrFragment)));
        assert!(matches!(parse("smtp://mail.example.com?tls=required"), Err(SmtpConfigError::Option(_))));
        assert!(matches!(parse("smtp://mail.example.com?timeout=5"), Err(SmtpConfigError::Option(_))));
        assert!(matches!(parse("smtp:mail.example.com"), Err(SmtpConfigError::NoHost)));
        assert!(matches!(parse("not a url"), Err(SmtpConfigError::Url(_))));
        assert!(matches!(parse("smtp://mail.example.com:99999"), Err(SmtpConfigError::Url(_))));
    }

    #[test]
    fn no_error_and_no_parsed_url_shows_the_password() {
        let urls = [
            format!("smtp://user:{ENCODED}@mail.example.com"),
            format!("smtp://user:{ENCODED}@mail.example.com?tls=none"),
            format!("smtp://user:{ENCODED}@127.0.0.1?tls=none"),
            format!("smtps://user:{ENCODED}@127.0.0.1?tls=none"),
            format!("smtp://user:{ENCODED}@mail.example.com/path"),
            format!("smtp://user:{ENCODED}@mail.example.com?x=1"),
            format!("smtp://user:{ENCODED}@mail.example.com:99999"),
            format!("smtp://user:{ENCODED}@"),
            format!("imap://user:{ENCODED}@mail.example.com"),
            "smtp://user:hunter2secret@mail.example.com:port".to_owned(),
            "smtp://:hunter2secret@mail.example.com".to_owned(),
            "smtp://user:hunter2secret%FF@mail.example.com".to_owned(),
        ];
        for url in &urls {
            let shown = match parse(url) {
                Ok(parsed) => format!("{parsed:?}"),
                Err(e) => format!("{e} {e:?}"),
            };
            for secret in [PASSWORD, ENCODED, "s3cr", "hunter2"] {
                assert!(!shown.contains(secret), "{url} shows {secret}: {shown}");
            }
        }
    }
}
