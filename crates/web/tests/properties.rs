//! Property tests of the web layer's own parsers: the client address behind `X-Forwarded-For`
//! and the JSON body parser. No input panics; a spoofed header never picks the answer; a
//! body is 400 exactly when it is not JSON, and round-trips when it is the right shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use ipnet::IpNet;
use plinth_domain::Error;
use plinth_web::api::extract::parse_json;
use plinth_web::middleware::client_ip::{canonical, client_ip};
use plinth_web::problem::ApiError;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Any text: every `char`, up to `max` of them.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(|v| v.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-For

fn trusted() -> Vec<IpNet> {
    ["10.0.0.0/8", "fd00::/8"].iter().map(|s| s.parse().unwrap()).collect()
}

fn is_trusted(ip: &IpAddr) -> bool {
    trusted().iter().any(|n| n.contains(ip))
}

fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::from([10, a, b, c])),
        any::<u128>().prop_map(|r| IpAddr::from(std::net::Ipv6Addr::from((0xfdu128 << 120) | (r >> 8)))),
    ]
}

fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
    any::<IpAddr>().prop_map(canonical).prop_filter("trusted", |ip| !is_trusted(ip))
}

/// How a hop may be spelt: plainly, IPv4-mapped, with spaces around it.
fn spelt(ip: IpAddr) -> impl Strategy<Value = String> {
    let mapped = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    };
    prop_oneof![Just(ip.to_string()), Just(mapped), Just(format!("  {ip}\t"))]
}

/// What a client can put in front of the hops a trusted proxy appended: anything at all.
fn attacker_prefix() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            text(40),
            trusted_ip().prop_map(|ip| ip.to_string()),
            any::<IpAddr>().prop_map(|ip| ip.to_string()),
            "[0-9.,: a-f\\[\\]]{0,30}",
        ],
        0..5,
    )
}

/// `X-Forwarded-For` as it arrives: the hops joined with commas, split across 1–3 headers.
fn headers(hops: &[String], splits: &[bool]) -> Vec<String> {
    let mut out = vec![String::new()];
    for (i, hop) in hops.iter().enumerate() {
        let last = out.last_mut().unwrap();
        if !last.is_empty() {
            last.push(',');
        }
        last.push_str(hop);
        if splits.get(i).copied().unwrap_or(false) && out.len() < 3 {
            out.push(String::new());
        }
    }
    out
}

proptest! {
    #[test]
    fn client_ip_never_panics_and_answers_the_peer_or_a_hop(
        peer in any::<IpAddr>(), values in proptest::collection::vec(text(60), 0..4),
    ) {
        let peer = canonical(peer);
        let got = client_ip(peer, values.iter().map(String::as_bytes), &trusted());
        let hops: Vec<IpAddr> = values
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect();
        prop_assert!(got == peer || hops.contains(&got), "{} from {:?}", got, values);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends(
        peer in untrusted_ip(), values in proptest::collection::vec(text(60), 0..4), prefix in attacker_prefix(),
    ) {
        let mut all = values;
        all.push(prefix.join(","));
        prop_assert_eq!(client_ip(peer, all.iter().map(String::as_bytes), &trusted()), peer);
    }

    /// Behind trusted proxies, the rightmost untrusted hop is the client, whatever the client
    /// itself wrote to the left of it.
    #[test]
    fn a_spoofed_prefix_never_picks_the_client(
        peer in trusted_ip(), prefix in attacker_prefix(), client in untrusted_ip(),
        proxies in proptest::collection::vec(trusted_ip(), 0..3), splits in proptest::collection::vec(any::<bool>(), 0..8),
        spelling in any::<prop::sample::Index>(),
    ) {
        let spellings = [client.to_string(), match client {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().to_string(),
            IpAddr::V6(v6) => format!(" {v6} "),
        }];
        let mut hops = prefix;
        hops.push(spellings[spelling.index(2)].clone());
        hops.extend(proxies.iter().map(IpAddr::to_string));
        let values = headers(&hops, &splits);
        prop_assert_eq!(client_ip(peer, values.iter().map(String::as_bytes), &trusted()), client, "{:?}", values);
    }

    /// Whatever bytes a client sends (not UTF-8, not ASCII), what its proxy appended to the
    /// same header line names it.
    #[test]
    fn raw_bytes_in_front_never_pick_the_client(
        peer in trusted_ip(), junk in proptest::collection::vec(any::<u8>(), 0..60), client in untrusted_ip(),
    ) {
        let mut value = junk;
        value.extend_from_slice(b", ");
        value.extend_from_slice(client.to_string().as_bytes());
        prop_assert_eq!(client_ip(peer, [value.as_slice()].into_iter(), &trusted()), client, "{:?}", value);
    }

    #[test]
    fn a_chain_of_trusted_proxies_ends_at_its_leftmost_hop(
        peer in trusted_ip(), chain in proptest::collection::vec(trusted_ip(), 1..5),
        splits in proptest::collection::vec(any::<bool>(), 0..8),
    ) {
        let spelt: Vec<String> = chain.iter().map(IpAddr::to_string).collect();
        let values = headers(&spelt, &splits);
        prop_assert_eq!(client_ip(peer, values.iter().map(String::as_bytes), &trusted()), chain[0]);
    }

    #[test]
    fn garbage_right_of_the_client_stops_the_walk(
        peer in trusted_ip(), client in untrusted_ip(), proxies in proptest::collection::vec(trusted_ip(), 0..3),
        garbage in text(20).prop_filter("an address or empty", |g| {
            g.trim().parse::<IpAddr>().is_err() && !g.contains(',') && !g.trim().is_empty()
        }),
    ) {
        let mut hops = vec![client.to_string(), garbage];
        hops.extend(proxies.iter().map(IpAddr::to_string));
        let expected = proxies.first().copied().unwrap_or(peer);
        let values = [hops.join(",")];
        prop_assert_eq!(client_ip(peer, values.iter().map(String::as_bytes), &trusted()), expected, "{:?}", values);
    }

    #[test]
    fn mapped_hops_count_as_their_ipv4_address(peer in trusted_ip(), client in any::<std::net::Ipv4Addr>()) {
        prop_assume!(!is_trusted(&IpAddr::V4(client)));
        let values = [client.to_ipv6_mapped().to_string()];
        prop_assert_eq!(client_ip(peer, values.iter().map(String::as_bytes), &trusted()), IpAddr::V4(client));
    }

    #[test]
    fn any_spelling_of_a_hop_parses(ip in untrusted_ip(), s in untrusted_ip().prop_flat_map(spelt)) {
        let values = [s.clone()];
        let got = client_ip(IpAddr::from([10, 0, 0, 1]), values.iter().map(String::as_bytes), &trusted());
        prop_assert_eq!(got, canonical(s.trim().parse::<IpAddr>().unwrap()));
        prop_assert_eq!(client_ip(ip, values.iter().map(String::as_bytes), &trusted()), ip);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON bodies

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Owner,
    Member,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Body {
    name: String,
    count: u8,
    kind: Kind,
    tags: Vec<String>,
    note: Option<String>,
}

fn body() -> impl Strategy<Value = Body> {
    (text(40), any::<u8>(), any::<bool>(), proptest::collection::vec(text(10), 0..4), proptest::option::of(text(20)))
        .prop_map(|(name, count, owner, tags, note)| Body {
            name,
            count,
            kind: if owner { Kind::Owner } else { Kind::Member },
            tags,
            note,
        })
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text(16).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    text(8),
                    proptest::sample::select(&["name", "count", "kind", "tags", "note"][..]).prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes a client may send as a body: arbitrary, JSON-ish, JSON with a byte changed, deeply
/// nested, or a valid body.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        text(100).prop_map(String::into_bytes),
        "[\\[\\]{}\",:0-9a-z \\\\.eE+-]{0,60}".prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (body(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(b, at, byte)| {
            let mut v = serde_json::to_vec(&b).unwrap();
            let i = at.index(v.len());
            v[i] = byte;
            v
        }),
        (1usize..20_000, any::<bool>()).prop_map(|(depth, object)| {
            let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        }),
        body().prop_map(|b| serde_json::to_vec(&b).unwrap()),
    ]
}

proptest! {
    #[test]
    fn a_body_is_a_bad_request_exactly_when_it_is_not_json(b in bytes()) {
        let is_json = serde_json::from_slice::<Value>(&b).is_ok();
        for result in [parse_json::<Body>(&b).map(|_| ()), parse_json::<Value>(&b).map(|_| ())] {
            match result {
                Ok(()) => prop_assert!(is_json),
                Err(ApiError::Malformed(_)) => prop_assert!(!is_json, "{:?}", String::from_utf8_lossy(&b)),
                Err(ApiError::Domain(Error::Validation(errors))) => {
                    prop_assert!(is_json);
                    prop_assert_eq!(errors.len(), 1);
                    prop_assert!(!errors[0].field.is_empty());
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn a_json_value_that_is_not_an_object_is_a_422_on_the_body(v in json_value()) {
        prop_assume!(!v.is_object());
        let b = serde_json::to_vec(&v).unwrap();
        match parse_json::<Body>(&b) {
            Err(ApiError::Domain(Error::Validation(errors))) => prop_assert_eq!(errors[0].field.as_str(), "body"),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn a_well_shaped_body_round_trips(b in body(), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&b) } else { serde_json::to_vec(&b) }.unwrap();
        prop_assert_eq!(parse_json::<Body>(&bytes).ok(), Some(b));
    }

    /// A wrong value in one field is a 422 naming that field.
    #[test]
    fn a_misshapen_field_is_named(b in body(), field in proptest::sample::select(&["name", "count", "kind", "tags"][..]),
                                  v in json_value()) {
        let mut value = serde_json::to_value(&b).unwrap();
        value[field] = v;
        prop_assume!(serde_json::from_value::<Body>(value.clone()).is_err());
        let bytes = serde_json::to_vec(&value).unwrap();
        match parse_json::<Body>(&bytes) {
            Err(ApiError::Domain(Error::Validation(errors))) => {
                prop_assert!(errors[0].field.starts_with(field), "{:?} for {}", errors, field);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
