//! The client's address: the socket's peer, or what a trusted proxy says it forwarded; and the
//! bucket the per-address limits count it in.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderValue, USER_AGENT};
use plinth_domain::usecases::ClientInfo;

use ipnet::IpNet;

/// The client address of a request from `peer` carrying these `X-Forwarded-For` values (raw
/// header bytes, in the order the header lines came).
///
/// Only a peer inside `trusted` is believed; then the list is read from the right, skipping
/// trusted proxies, and the first address that is not one is the client. An entry that is not
/// an address (malformed, non-ASCII, a port or brackets added) ends the walk: the client is
/// then the last address believed, the peer of the hop that wrote that entry, so garbage can't
/// choose the answer. The header is read as bytes, entry by entry: a client that puts
/// non-ASCII bytes in front of what its proxy appends can't get the whole line ignored (and be
/// counted as the proxy). Empty list elements (`a, , b`, a trailing comma, an empty header)
/// are no entries: RFC 9110 §5.6.1 has recipients ignore them.
pub fn client_ip<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a [u8]>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&[u8]> =
        forwarded_for.flat_map(|v| v.split(|b| *b == b',')).map(<[u8]>::trim_ascii).filter(|h| !h.is_empty()).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match std::str::from_utf8(hop).ok().and_then(|h| h.parse::<IpAddr>().ok()) {
            Some(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The address `req` comes from, as the rate limits find it: its peer, or the address its
/// trusted proxies forwarded (see [`client_ip`]).
pub fn client_of(req: &HttpRequest, trusted: &[IpNet]) -> IpAddr {
    let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| canonical(a.ip()));
    let forwarded = req.headers().get_all("x-forwarded-for").map(HeaderValue::as_bytes);
    client_ip(peer, forwarded, trusted)
}

/// Where `req` comes from, for a session or an audit entry: [`client_of`], whole, and its
/// `User-Agent` (cut as a session's is).
pub fn client_info(req: &HttpRequest, trusted: &[IpNet]) -> ClientInfo {
    let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
    ClientInfo::new(Some(client_of(req, trusted).to_string()), user_agent)
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they map.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the per-address limits count `ip` as: an IPv4 address (IPv4-mapped ones included) as
/// itself, an IPv6 address as its network of `v6_prefix` bits (a subscriber usually gets a
/// whole /64, and may use any address in it).
pub fn bucket(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn hops<'a>(values: &'a [&'a str]) -> impl Iterator<Item = &'a [u8]> {
        values.iter().map(|v| v.as_bytes())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let got = client_ip(ip("203.0.113.9"), hops(&["1.2.3.4"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let got = client_ip(ip("10.0.0.2"), hops(&["198.51.100.7"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), hops(&["6.6.6.6, 198.51.100.7, 10.0.0.5"]), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.2"), hops(&["6.6.6.6, nonsense"]), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), std::iter::empty(), &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), hops(&["198.51.100.7, ,10.0.0.5,", ""]), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_form() {
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn a_non_ascii_entry_ends_the_walk_without_hiding_what_the_proxy_appended() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client sent `é`; its proxy appended the client's address to the same line.
        let line: &[u8] = b"\xc3\xa9, 198.51.100.7";
        assert_eq!(client_ip(ip("10.0.0.2"), [line].into_iter(), &trusted), ip("198.51.100.7"));
        let latin1: &[u8] = b"\xe9\xff, 198.51.100.7, 10.0.0.5";
        assert_eq!(client_ip(ip("10.0.0.2"), [latin1].into_iter(), &trusted), ip("198.51.100.7"));
        // On separate lines, in order.
        let lines: [&[u8]; 2] = [b"\xc3\xa9", b"198.51.100.7"];
        assert_eq!(client_ip(ip("10.0.0.2"), lines.into_iter(), &trusted), ip("198.51.100.7"));
        // Garbage written in a trusted hop's place: the last address believed is the client,
        // here the trusted proxy 10.0.0.5.
        let garbage: &[u8] = b"198.51.100.7, \xff, 10.0.0.5";
        assert_eq!(client_ip(ip("10.0.0.2"), [garbage].into_iter(), &trusted), ip("10.0.0.5"));
    }

    #[test]
    fn an_entry_with_a_port_or_brackets_is_not_an_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        for entry in ["198.51.100.7:4711", "[2001:db8::1]", "[2001:db8::1]:443", "unknown", "_hidden"] {
            let got = client_ip(ip("10.0.0.2"), hops(&["203.0.113.1", entry]), &trusted);
            assert_eq!(got, ip("10.0.0.2"), "{entry}");
        }
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_prefix_and_an_ipv4_one_by_its_address() {
        let b = |s: &str, prefix: u8| bucket(ip(s), prefix);
        assert_eq!(b("2001:db8:1:2::1", 64), ip("2001:db8:1:2::"));
        assert_eq!(b("2001:db8:1:2:ffff:ffff:ffff:ffff", 64), b("2001:db8:1:2::1", 64));
        assert_ne!(b("2001:db8:1:3::1", 64), b("2001:db8:1:2::1", 64));
        assert_eq!(b("2001:db8:1:3::1", 48), b("2001:db8:1:2::1", 48));
        assert_eq!(b("2001:db8:ffff:ffff::1", 32), ip("2001:db8::"));
        assert_eq!(b("2001:db8:1:2::1", 128), ip("2001:db8:1:2::1"));
        assert_ne!(b("2001:db8:1:2::1", 128), b("2001:db8:1:2::2", 128));
        assert_eq!(b("2001:db8:1:2:3:4:5:6", 60), ip("2001:db8:1::"));
        // IPv4, mapped or not, is never grouped.
        assert_eq!(b("192.0.2.1", 32), ip("192.0.2.1"));
        assert_eq!(b("::ffff:192.0.2.1", 64), ip("192.0.2.1"));
        assert_ne!(b("192.0.2.1", 64), b("192.0.2.2", 64));
    }
}
