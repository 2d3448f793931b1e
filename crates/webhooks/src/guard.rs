//! The SSRF guard: which addresses a webhook may reach, and the URL check at registration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use plinth_domain::ports::WebhookUrlGuard;
use plinth_domain::{Error, Result};
use url::{Host, Url};

/// How long a target's name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Cloud metadata services, refused like private addresses even where they are public.
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Which addresses webhooks may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow private, loopback, link-local and unique-local targets (`PLINTH_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// When non-empty, every target address must lie inside one of these (`PLINTH_WEBHOOK_ALLOWED_CIDRS`).
    pub allowed: Vec<IpNet>,
}

/// Why an address may not be reached: the kind of address, never the address itself, so a
/// refusal tells a tenant nothing about what a name of theirs resolves to inside our network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Loopback, private, link-local… (what kind, as an adjective).
    #[error("a {0} address")]
    NonPublic(&'static str),
    /// A cloud metadata service.
    #[error("a cloud metadata address")]
    Metadata,
    /// Outside `PLINTH_WEBHOOK_ALLOWED_CIDRS`.
    #[error("an address outside the allowed networks")]
    OutsideAllowed,
}

/// Why an address is not public, if it isn't.
fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("non-unicast")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address embeds at a known place, if any: IPv4-mapped
/// (`::ffff:0:0/96`), SIIT IPv4-translated (`::ffff:0:0:0/96`), IPv4-compatible (`::/96`),
/// the well-known NAT64 prefix (`64:ff9b::/96`, always a /96 by RFC 6052) and 6to4
/// (`2002::/16`).
///
/// The local-use NAT64 prefix `64:ff9b:1::/48` is not here: its operator chooses the prefix
/// length (RFC 8215, /48 to /96), which moves the IPv4 address inside it, so which address it
/// reaches can't be known from outside; [`non_public_v6`] refuses the whole prefix instead.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified())
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        Some(tail) // IPv4-compatible (deprecated), SIIT, or well-known NAT64
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])) // 6to4
    } else {
        None
    }
}

/// Whether `ip` lies in the local-use NAT64 prefix `64:ff9b:1::/48`.
fn is_local_nat64(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s0 = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("non-unicast")
    } else if (s0 & 0xffc0) == 0xfe80 || (s0 & 0xffc0) == 0xfec0 {
        Some("link-local")
    } else if (s0 & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if s0 == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if s0 == 0x2001 && ip.segments()[1] == 0 {
        Some("Teredo tunnel")
    } else if is_local_nat64(ip) {
        Some("local-use NAT64")
    } else {
        embedded_v4(ip).and_then(non_public_v4)
    }
}

impl AddressPolicy {
    /// `Ok` when `ip` may be reached, else what kind of address it is.
    pub fn check(&self, ip: IpAddr) -> std::result::Result<(), Refusal> {
        if !self.allow_private {
            // Also the IPv4 address an IPv6 form embeds (mapped, NAT64, 6to4…).
            let embedded = match ip {
                IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            if METADATA.contains(&ip) || embedded.is_some_and(|v4| METADATA.contains(&v4)) {
                return Err(Refusal::Metadata);
            }
            let why = match ip {
                IpAddr::V4(v4) => non_public_v4(v4),
                IpAddr::V6(v6) => non_public_v6(v6),
            };
            if let Some(why) = why {
                return Err(Refusal::NonPublic(why));
            }
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !self.allowed.is_empty() && !self.allowed.iter().any(|net| net.contains(&canonical)) {
            return Err(Refusal::OutsideAllowed);
        }
        Ok(())
    }

    /// Every address `host:port` resolves to, when all of them are allowed. A refusal names
    /// the kind of address the host resolves to, never the address.
    pub async fn resolve(&self, host: &str, port: u16) -> std::result::Result<Vec<SocketAddr>, String> {
        let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
        let addrs: Vec<SocketAddr> = match lookup {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) | Err(_) => return Err("the host does not resolve".into()),
        };
        if addrs.is_empty() {
            return Err("the host does not resolve".into());
        }
        for addr in &addrs {
            self.check(addr.ip()).map_err(|why| format!("the host resolves to {why}"))?;
        }
        Ok(addrs)
    }

    /// Checks a whole URL: http(s), no credentials, and every address of its host.
    pub async fn check_url(&self, raw: &str) -> std::result::Result<Url, String> {
        if raw.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let url = Url::parse(raw).map_err(|_| "must be an absolute http(s) URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must use http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        let port = url.port_or_known_default().ok_or_else(|| "must have a port".to_owned())?;
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)).map_err(|why| format!("must not be {why}"))?,
            Some(Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)).map_err(|why| format!("must not be {why}"))?,
            Some(Host::Domain(name)) => {
                self.resolve(name, port).await?;
            }
            None => return Err("must name a host".into()),
        }
        Ok(url)
    }
}

/// [`WebhookUrlGuard`] over an [`AddressPolicy`].
#[derive(Debug, Clone)]
pub struct UrlGuard {
    policy: AddressPolicy,
}

impl UrlGuard {
    /// A guard enforcing `policy`.
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

#[async_trait]
impl WebhookUrlGuard for UrlGuard {
    async fn check(&self, url: &str) -> Result<String> {
        self.policy.check_url(url).await.map(String::from).map_err(|why| Error::invalid("url", why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    fn refused(policy: &AddressPolicy, ip: &str) -> bool {
        policy.check(ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))).is_err()
    }

    #[test]
    fn every_private_address_trick_is_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "::ffff:0:7f00:1",
            "64:ff9b:1::7f00:1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "192.0.0.8",
            "198.18.0.1",
        ] {
            assert!(refused(&strict(), ip), "{ip} must be refused");
        }
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
    }

    #[test]
    fn the_ipv4_address_every_fixed_ipv6_form_embeds_is_extracted() {
        let cases = [
            ("::ffff:127.0.0.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
            ("::ffff:0:7f00:1", Some(Ipv4Addr::new(127, 0, 0, 1))), // SIIT
            ("::ffff:0:5db8:d822", Some(Ipv4Addr::new(93, 184, 216, 34))),
            ("::a00:1", Some(Ipv4Addr::new(10, 0, 0, 1))),
            ("64:ff9b::a9fe:a9fe", Some(Ipv4Addr::new(169, 254, 169, 254))),
            ("2002:c0a8:101::1", Some(Ipv4Addr::new(192, 168, 1, 1))),
            // The local-use NAT64 prefix has no fixed place for it.
            ("64:ff9b:1::7f00:1", None),
            ("::ffff:1:7f00:1", None),
            ("2606:4700:4700::1111", None),
        ];
        for (ip, embedded) in cases {
            assert_eq!(embedded_v4(v6(ip)), embedded, "{ip}");
        }
    }

    #[test]
    fn siit_and_local_use_nat64_forms_are_refused() {
        for ip in ["::ffff:0:7f00:1", "::ffff:0:a00:1", "::ffff:0:a9fe:a9fe", "64:ff9b:1::a00:1"] {
            assert!(refused(&strict(), ip), "{ip} must be refused");
        }
        // Even what would embed a public address: where it sits depends on the operator.
        for ip in ["64:ff9b:1:5db8:d8:2200::", "64:ff9b:1::5db8:d822", "64:ff9b:1:ffff::1"] {
            assert!(refused(&strict(), ip), "{ip} must be refused");
        }
        assert!(!refused(&strict(), "::ffff:0:5db8:d822"), "SIIT of a public address is public");
    }

    #[tokio::test]
    async fn a_refusal_says_what_kind_of_address_without_naming_it() {
        let p = strict();
        for (ip, kind) in [
            ("10.1.2.3", "a private address"),
            ("::ffff:0:7f00:1", "a loopback address"),
            ("169.254.169.254", "a cloud metadata address"),
            ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
        ] {
            let why = p.check(ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))).err().map(|r| r.to_string());
            assert_eq!(why.as_deref(), Some(kind), "{ip}");
        }
        let why = p.check_url("http://localhost:8080/hook").await.err().unwrap_or_default();
        assert_eq!(why, "the host resolves to a loopback address");
        let only = AddressPolicy {
            allow_private: true,
            allowed: vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
        };
        let why = only.check_url("http://localhost/").await.err().unwrap_or_default();
        assert_eq!(why, "the host resolves to an address outside the allowed networks");
        let why = p.check_url("http://[::ffff:0:7f00:1]/").await.err().unwrap_or_default();
        assert_eq!(why, "must not be a loopback address");
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1"] {
            assert!(!refused(&strict(), ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn allowing_private_still_honours_the_allowed_networks() {
        let tests = AddressPolicy {
            allow_private: true,
            allowed: vec!["127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
        };
        assert!(!refused(&tests, "127.0.0.1"));
        assert!(!refused(&tests, "::ffff:127.0.0.1"));
        assert!(refused(&tests, "10.0.0.1"));
        assert!(refused(&tests, "93.184.216.34"));
        let public_only = AddressPolicy { allow_private: false, allowed: tests.allowed.clone() };
        assert!(refused(&public_only, "127.0.0.1"), "both rules apply");
    }

    #[tokio::test]
    async fn urls_must_be_http_without_credentials_and_resolve_to_allowed_addresses() {
        let p = strict();
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "not a url",
            "http://user:pass@93.184.216.34/",
            "http://127.0.0.1/hook",
            "http://[::1]:8080/",
            "http://localhost/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://does-not-exist.invalid/",
        ] {
            assert!(p.check_url(bad).await.is_err(), "{bad} must be refused");
        }
        assert!(p.check_url("https://93.184.216.34/hook").await.is_ok());
        let local = AddressPolicy {
            allow_private: true,
            allowed: vec!["127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
        };
        assert!(local.check_url("http://127.0.0.1:9/hook").await.is_ok());
    }
}
