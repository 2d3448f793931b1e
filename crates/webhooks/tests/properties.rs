//! Property tests of the SSRF guard: an address the strict policy accepts is never loopback,
//! private, link-local, unique-local or an IPv6 form of one of those; the allowed networks are
//! always honoured; and `check_url` never panics, whatever the string.
//!
//! No test here resolves a name: a URL whose host is a domain is not checked (a lookup would
//! ask this machine's resolver, off the machine). IP literals are checked without any I/O.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use plinth_webhooks::AddressPolicy;
use proptest::prelude::*;
use url::{Host, Url};

/// Why `ip` must never be a webhook target, written independently of the guard: the ranges
/// the contract names (private, loopback, link-local, unique-local), the other non-unicast and
/// special-purpose ones, and every IPv6 form that embeds such an IPv4 address.
fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    let special = |net: &str| net.parse::<ipnet::Ipv4Net>().unwrap().contains(&ip);
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || special("192.0.0.0/24")
        || special("198.18.0.0/15")
        || [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(168, 63, 129, 16), Ipv4Addr::new(100, 100, 100, 200)]
            .contains(&ip)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let within = |net: &str| net.parse::<ipnet::Ipv6Net>().unwrap().contains(&ip);
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || within("fe80::/10")
        || within("fec0::/10")
        || within("fc00::/7")
        || within("2001:db8::/32")
        || (within("::ffff:0:0/96") && forbidden_v4(tail))
        || (within("::/96") && forbidden_v4(tail))
        || (within("64:ff9b::/96") && forbidden_v4(tail))
        || (within("::ffff:0:0:0/96") && forbidden_v4(tail))
        // The local-use NAT64 prefix: where the IPv4 address sits is the operator's choice.
        || within("64:ff9b:1::/48")
        || (s[0] == 0x2002 && forbidden_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5])))
}

fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

const EDGES_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::BROADCAST,
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::LOCALHOST,
];

/// An IPv4 address, often inside one of the special ranges.
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    let in_net = |net: &'static str| {
        any::<u32>().prop_map(move |r| {
            let net: ipnet::Ipv4Net = net.parse().unwrap();
            let host_bits = u32::from(net.hostmask());
            Ipv4Addr::from((u32::from(net.network()) & !host_bits) | (r & host_bits))
        })
    };
    prop_oneof![
        4 => any::<Ipv4Addr>(),
        1 => in_net("127.0.0.0/8"),
        1 => in_net("10.0.0.0/8"),
        1 => in_net("172.16.0.0/12"),
        1 => in_net("192.168.0.0/16"),
        1 => in_net("169.254.0.0/16"),
        1 => in_net("100.64.0.0/10"),
        1 => in_net("0.0.0.0/8"),
        1 => in_net("224.0.0.0/3"),
        1 => in_net("192.0.0.0/24"),
        1 => in_net("198.18.0.0/15"),
        1 => proptest::sample::select(EDGES_V4),
    ]
}

/// An IPv6 address, often inside a special range or embedding an IPv4 address.
fn v6() -> impl Strategy<Value = Ipv6Addr> {
    let in_net = |net: &'static str| {
        any::<u128>().prop_map(move |r| {
            let net: ipnet::Ipv6Net = net.parse().unwrap();
            let host_bits = u128::from(net.hostmask());
            Ipv6Addr::from((u128::from(net.network()) & !host_bits) | (r & host_bits))
        })
    };
    let embed = |prefix: u128| v4().prop_map(move |v4| Ipv6Addr::from(prefix | u128::from(u32::from(v4))));
    prop_oneof![
        4 => any::<Ipv6Addr>(),
        1 => in_net("fe80::/10"),
        1 => in_net("fec0::/10"),
        1 => in_net("fc00::/7"),
        1 => in_net("ff00::/8"),
        1 => in_net("2001:db8::/32"),
        1 => in_net("2001::/32"),
        1 => in_net("2000::/3"),
        1 => proptest::sample::select(&[Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED][..]),
        2 => embed(0xffff_0000_0000),
        2 => embed(0xffff_0000_0000_0000),
        1 => embed(0),
        1 => embed(0x0064_ff9b_0000_0000_0000_0000_0000_0000),
        1 => (embed(0x0064_ff9b_0001_0000_0000_0000_0000_0000), any::<u64>()).prop_map(|(ip, r)| {
            Ipv6Addr::from(u128::from(ip) | (u128::from(r) << 32) & 0x0000_0000_ffff_ffff_ffff_ffff_0000_0000)
        }),
        2 => (v4(), any::<u128>()).prop_map(|(v4, r)| {
            let bits = (0x2002u128 << 112) | (u128::from(u32::from(v4)) << 80) | (r & ((1 << 80) - 1));
            Ipv6Addr::from(bits)
        }),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)]
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

proptest! {
    #[test]
    fn the_strict_policy_accepts_no_private_address(ip in ip()) {
        if AddressPolicy::default().check(ip).is_ok() {
            prop_assert!(!forbidden(ip), "{} was accepted", ip);
        }
    }

    #[test]
    fn ordinary_public_addresses_are_accepted(a in 1u8..100, rest in any::<[u8; 3]>(), v6 in any::<u128>()) {
        prop_assume!(a != 10);
        let v4 = Ipv4Addr::new(a, rest[0], rest[1], rest[2]);
        prop_assert!(AddressPolicy::default().check(IpAddr::V4(v4)).is_ok(), "{}", v4);
        // 2400::/6 is global unicast, far from every special range.
        let v6 = Ipv6Addr::from((0x2400u128 << 112) | (v6 & ((1u128 << 122) - 1)));
        prop_assert!(AddressPolicy::default().check(IpAddr::V6(v6)).is_ok(), "{}", v6);
    }

    /// Each IPv6 form that embeds an IPv4 address at a fixed place (mapped, SIIT, compatible,
    /// well-known NAT64) is refused exactly when that IPv4 address is, and every address of
    /// the local-use NAT64 prefix is refused whatever it seems to embed.
    #[test]
    fn an_embedded_ipv4_address_is_judged_as_itself(v4 in v4(), rest in any::<u64>()) {
        let strict = AddressPolicy::default();
        let refused = strict.check(IpAddr::V4(v4)).is_err();
        let bits = u128::from(u32::from(v4));
        for prefix in [0xffff_0000_0000u128, 0xffff_0000_0000_0000, 0x0064_ff9b_0000_0000_0000_0000_0000_0000] {
            let v6 = Ipv6Addr::from(prefix | bits);
            prop_assert_eq!(strict.check(IpAddr::V6(v6)).is_err(), refused, "{} embeds {}", v6, v4);
        }
        if u32::from(v4) > 0xffff {
            // `::a.b.c.d` with a.b nonzero (below that it is `::1`, `::` or not IPv4-compatible).
            prop_assert_eq!(strict.check(IpAddr::V6(Ipv6Addr::from(bits))).is_err(), refused, "::{}", v4);
        }
        let local = (0x0064_ff9b_0001u128 << 80) | (u128::from(rest) << 16) | (bits & 0xffff);
        prop_assert!(strict.check(IpAddr::V6(Ipv6Addr::from(local))).is_err(), "{}", Ipv6Addr::from(local));
    }

    /// The configuration schemathesis and the attack tests run with: loopback networks
    /// allowed, private addresses not. Both rules apply, so nothing is reachable at all.
    #[test]
    fn loopback_networks_without_allow_private_reach_nothing(ip in ip()) {
        let policy = AddressPolicy { allow_private: false, allowed: vec![net("127.0.0.0/8"), net("::1/128")] };
        prop_assert!(policy.check(ip).is_err(), "{}", ip);
    }

    #[test]
    fn the_allowed_networks_are_always_honoured(ip in ip(), allow_private in any::<bool>(),
                                               nets in proptest::collection::vec(ip(), 1..4), len in 0u8..=32) {
        let allowed: Vec<IpNet> = nets
            .into_iter()
            .map(|n| match n {
                IpAddr::V4(v4) => IpNet::V4(ipnet::Ipv4Net::new(v4, len).unwrap().trunc()),
                IpAddr::V6(v6) => IpNet::V6(ipnet::Ipv6Net::new(v6, len * 4).unwrap().trunc()),
            })
            .collect();
        let policy = AddressPolicy { allow_private, allowed: allowed.clone() };
        if policy.check(ip).is_ok() {
            let canonical = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            prop_assert!(allowed.iter().any(|n| n.contains(&canonical)), "{} outside {:?}", ip, allowed);
            prop_assert!(allow_private || !forbidden(ip), "{}", ip);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// URLs

/// Any text: every `char`, up to `max` of them.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// The spellings of an address that URL parsers disagree on.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        v4().prop_map(|ip| ip.to_string()),
        v4().prop_map(|ip| u32::from(ip).to_string()),
        v4().prop_map(|ip| format!("{:#x}", u32::from(ip))),
        v4().prop_map(|ip| ip.octets().iter().map(|o| format!("0{o:o}")).collect::<Vec<_>>().join(".")),
        v4().prop_map(|ip| {
            let o = ip.octets();
            format!("{}.{}", o[0], u32::from_be_bytes([0, o[1], o[2], o[3]]))
        }),
        v6().prop_map(|ip| format!("[{ip}]")),
        v6().prop_map(|ip| format!("[{ip}%25eth0]")),
        "[0-9a-fA-FxX.:\\[\\]%]{0,40}",
        text(20),
    ]
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        6 => proptest::sample::select(&["http", "https"][..]),
        1 => proptest::sample::select(&["HTTP", "hTTps", "ftp", "file", "javascript", "gopher", "ws", ""][..]),
    ];
    let separator = prop_oneof![6 => Just("://"), 1 => proptest::sample::select(&[":", ":/", ":\\\\", "", ":///"][..])];
    let userinfo = prop_oneof![5 => Just(String::new()), 1 => "[a-z:%]{0,8}@"];
    let port = prop_oneof![3 => Just(String::new()), 3 => "[0-9]{1,5}".prop_map(|p| format!(":{p}")), 1 => text(4).prop_map(|p| format!(":{p}"))];
    let path = prop_oneof![4 => "(/[a-zA-Z0-9%._~?#&=@:-]{0,20}){0,3}", 1 => text(30)];
    let composed = (scheme, separator, userinfo, host(), port, path)
        .prop_map(|(scheme, sep, userinfo, host, port, path)| format!("{scheme}{sep}{userinfo}{host}{port}{path}"));
    prop_oneof![
        8 => composed,
        1 => text(120),
        1 => "http://[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[a-z]{2040,2060}",
    ]
}

/// Whether checking `raw` could look a name up: skipped, so that no query leaves the machine.
fn needs_resolver(raw: &str) -> bool {
    Url::parse(raw).is_ok_and(|u| matches!(u.host(), Some(Host::Domain(_))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn check_url_never_panics_and_accepts_only_allowed_addresses(raw in url(), allow_private in any::<bool>()) {
        prop_assume!(!needs_resolver(&raw));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for policy in [
            AddressPolicy::default(),
            AddressPolicy { allow_private, allowed: vec![net("127.0.0.0/8"), net("::1/128")] },
        ] {
            if let Ok(url) = runtime.block_on(policy.check_url(&raw)) {
                prop_assert!(raw.len() <= 2048);
                prop_assert!(matches!(url.scheme(), "http" | "https"), "{:?}", raw);
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{:?}", raw);
                let ip = match url.host() {
                    Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
                    Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
                    other => return Err(TestCaseError::fail(format!("{raw:?} accepted with host {other:?}"))),
                };
                prop_assert!(policy.check(ip).is_ok(), "{:?}", raw);
                prop_assert!(policy.allow_private || !forbidden(ip), "{:?} reaches {}", raw, ip);
            }
        }
    }
}
