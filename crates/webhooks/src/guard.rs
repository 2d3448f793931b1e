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
        Some("not a unicast address")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address embeds (mapped, compatible, NAT64, 6to4), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified())
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
    {
        Some(tail) // IPv4-compatible (deprecated), or NAT64
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])) // 6to4
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s0 = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else if (s0 & 0xffc0) == 0xfe80 || (s0 & 0xffc0) == 0xfec0 {
        Some("link-local")
    } else if (s0 & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if s0 == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if s0 == 0x2001 && ip.segments()[1] == 0 {
        Some("Teredo tunnel")
    } else {
        embedded_v4(ip).and_then(non_public_v4)
    }
}

impl AddressPolicy {
    /// `Ok` when `ip` may be reached, else why not.
    pub fn check(&self, ip: IpAddr) -> std::result::Result<(), String> {
        if !self.allow_private {
            // Also the IPv4 address an IPv6 form embeds (mapped, NAT64, 6to4…).
            let embedded = match ip {
                IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            if METADATA.contains(&ip) || embedded.is_some_and(|v4| METADATA.contains(&v4)) {
                return Err(format!("{ip} is a cloud metadata address"));
            }
            let why = match ip {
                IpAddr::V4(v4) => non_public_v4(v4),
                IpAddr::V6(v6) => non_public_v6(v6),
            };
            if let Some(why) = why {
                return Err(format!("{ip} is {why}"));
            }
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !self.allowed.is_empty() && !self.allowed.iter().any(|net| net.contains(&canonical)) {
            return Err(format!("{ip} is outside the allowed networks"));
        }
        Ok(())
    }

    /// Every address `host:port` resolves to, when all of them are allowed.
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
            self.check(addr.ip())?;
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
            Some(Host::Ipv4(ip)) => self.check(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check(IpAddr::V6(ip))?,
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
    async fn check(&self, url: &str) -> Result<()> {
        self.policy.check_url(url).await.map(|_| ()).map_err(|why| Error::invalid("url", why))
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
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "192.0.0.8",
            "198.18.0.1",
        ] {
            assert!(refused(&strict(), ip), "{ip} must be refused");
        }
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
