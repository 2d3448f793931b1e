//! The client's address: the socket's peer, or what a trusted proxy says it forwarded.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address of a request from `peer` carrying these `X-Forwarded-For` values.
///
/// Only a peer inside `trusted` is believed; then the list is read from the right, skipping
/// trusted proxies, and the first address that is not one is the client. A malformed entry
/// stops the walk at the last address believed, so garbage can't choose the answer. Empty list
/// elements (`a, , b`, a trailing comma, an empty header) are no entries: RFC 9110 §5.6.1 has
/// recipients ignore them.
pub fn client_ip<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).map(str::trim).filter(|h| !h.is_empty()).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they map.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let got = client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let got = client_ip(ip("10.0.0.2"), ["198.51.100.7"].into_iter(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), ["6.6.6.6, 198.51.100.7, 10.0.0.5"].into_iter(), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.2"), ["6.6.6.6, nonsense"].into_iter(), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), std::iter::empty(), &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), ["198.51.100.7, ,10.0.0.5,", ""].into_iter(), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_form() {
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
