//! From a `Host` header to the tenant it addresses.

use crate::values::Slug;

/// What a request's host addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// The bare base domain: the platform itself (signup).
    Platform,
    /// `{slug}.{base_domain}`: a tenant, if one has this slug.
    Tenant(Slug),
    /// Anything else: an IP literal, another domain, extra labels, no host at all.
    Unknown,
}

/// The platform's base domain, normalised once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDomain(String);

impl BaseDomain {
    /// Lowercases `domain` and drops one trailing dot.
    pub fn new(domain: &str) -> Self {
        let d = domain.trim().to_ascii_lowercase();
        Self(d.strip_suffix('.').unwrap_or(&d).to_owned())
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Classifies a `Host` header value: the port is ignored, matching is case-insensitive,
    /// and one trailing dot is ignored.
    pub fn classify(&self, host: Option<&str>) -> HostTarget {
        let Some(host) = host else { return HostTarget::Unknown };
        if host.len() > 300 || host.starts_with('[') {
            return HostTarget::Unknown; // IPv6 literals, and nothing sane is that long
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return HostTarget::Unknown,
            None => host,
        };
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        if name == self.0 {
            return HostTarget::Platform;
        }
        let Some(label) = name.strip_suffix(self.0.as_str()).and_then(|l| l.strip_suffix('.')) else {
            return HostTarget::Unknown;
        };
        match Slug::parse(label) {
            Ok(slug) => HostTarget::Tenant(slug),
            Err(_) => HostTarget::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(host: &str) -> HostTarget {
        BaseDomain::new("localhost").classify(Some(host))
    }

    fn tenant(slug: &str) -> HostTarget {
        HostTarget::Tenant(Slug::parse(slug).unwrap_or_else(|e| panic!("{slug}: {e}")))
    }

    #[test]
    fn a_tenant_host_names_its_slug_whatever_the_port_case_or_trailing_dot() {
        assert_eq!(classify("acme.localhost"), tenant("acme"));
        assert_eq!(classify("acme.localhost:8080"), tenant("acme"));
        assert_eq!(classify("ACME.LocalHost"), tenant("acme"));
        assert_eq!(classify("acme.localhost."), tenant("acme"));
        assert_eq!(classify("acme.localhost.:8080"), tenant("acme"));
    }

    #[test]
    fn the_bare_base_domain_is_the_platform() {
        assert_eq!(classify("localhost"), HostTarget::Platform);
        assert_eq!(classify("LOCALHOST:8080"), HostTarget::Platform);
        assert_eq!(classify("localhost."), HostTarget::Platform);
    }

    #[test]
    fn anything_else_is_unknown() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:8080",
            "a.acme.localhost",
            "acme.example.com",
            "acmelocalhost",
            "www.localhost",
            "ac.localhost",
            "acme.localhost..",
            "acme.localhost:80a",
            "",
            ":8080",
        ] {
            assert_eq!(classify(h), HostTarget::Unknown, "{h}");
        }
        assert_eq!(BaseDomain::new("localhost").classify(None), HostTarget::Unknown);
        let long = format!("{}.localhost", "a".repeat(64));
        assert_eq!(classify(&long), HostTarget::Unknown);
    }

    #[test]
    fn a_multi_label_base_domain_works() {
        let base = BaseDomain::new("Example.COM.");
        assert_eq!(base.classify(Some("acme.example.com")), tenant("acme"));
        assert_eq!(base.classify(Some("example.com")), HostTarget::Platform);
        assert_eq!(base.classify(Some("acme.com")), HostTarget::Unknown);
    }
}
