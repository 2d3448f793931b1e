//! Property tests of every parser and validator of the domain: no input panics, each accepts
//! exactly the language it documents, and what it accepts parses again to the same value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plinth_domain::Error;
use plinth_domain::clock;
use plinth_domain::host::{BaseDomain, HostTarget};
use plinth_domain::ids::{DeliveryId, EventId, ProjectId, TenantId, UserId, WebhookId};
use plinth_domain::page::{Cursor, CursorKey, MAX_LIMIT, PageRequest};
use plinth_domain::ports::IdempotencyKey;
use plinth_domain::values::{Email, Password, ProjectName, RefreshToken, Slug, TenantName};
use proptest::prelude::*;
use uuid::Uuid;

/// Any text: every `char` (control characters, whitespace, astral planes), up to `max` of them.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// Text over a small alphabet around the boundaries of the languages under test, so that
/// the generated strings land on both sides of each rule often.
fn near(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet), 0..=max).prop_map(|v| v.into_iter().collect())
}

const TRICKY: &[char] = &[
    'a', 'z', 'A', 'Z', '0', '9', '-', '_', '.', '@', ':', ' ', '\t', '\n', '\0', '\u{7f}', '\u{85}', '\u{a0}',
    '\u{2028}', '\u{200b}', '\u{feff}', 'é', 'İ', 'ẞ', 'Σ', 'ǅ', '\u{212a}', '名', '🚀', '[', ']', '%',
];

// ---------------------------------------------------------------------------------------------
// Slug

/// The documented language, written independently of the implementation: a DNS label of
/// 3–63 characters of a-z, 0-9 and '-', not starting or ending with '-', and not reserved.
fn is_slug(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    (3..=63).contains(&chars.len())
        && chars.iter().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
        && chars.first() != Some(&'-')
        && chars.last() != Some(&'-')
        && !["www", "api", "app", "admin", "static", "status"].contains(&s)
}

fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{1,61}[a-z0-9]".prop_filter("reserved", |s| is_slug(s))
}

proptest! {
    #[test]
    fn slug_accepts_its_regex(s in slug()) {
        let parsed = Slug::parse(&s).unwrap();
        prop_assert_eq!(parsed.as_str(), s.as_str());
        prop_assert_eq!(Slug::parse(parsed.as_str()).unwrap(), parsed);
    }

    #[test]
    fn slug_accepts_exactly_its_language(s in prop_oneof![text(80), near(TRICKY, 70), "[a-zA-Z0-9_.-]{0,70}"]) {
        prop_assert_eq!(Slug::parse(&s).is_ok(), is_slug(&s), "{:?}", s);
    }

    #[test]
    fn slug_refuses_a_label_with_one_foreign_character(s in slug(), at in any::<prop::sample::Index>(),
                                                       c in any::<char>()) {
        prop_assume!(!matches!(c, 'a'..='z' | '0'..='9' | '-'));
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len());
        chars[i] = c;
        let bad: String = chars.into_iter().collect();
        prop_assert!(Slug::parse(&bad).is_err(), "{:?}", bad);
    }
}

// ---------------------------------------------------------------------------------------------
// Email

/// The documented language: at most 254 characters as sent and, after trimming and
/// lowercasing, 1–254 characters, no whitespace or control characters, none of mail syntax's
/// specials (`<>()[]\,;:"`) nor the invisible format characters (U+00AD, U+200B–U+200F,
/// U+202A–U+202E, U+2060–U+2064, U+2066–U+206F, U+FEFF), exactly one '@' with text on both
/// sides. Returns the stored form.
fn email_spec(s: &str) -> Option<String> {
    let t = s.trim().to_lowercase();
    let n = t.chars().count();
    let special = |c: char| {
        "<>()[]\\,;:\"".contains(c)
            || c == '\u{ad}'
            || ('\u{200b}'..='\u{200f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2060}'..='\u{2064}').contains(&c)
            || ('\u{2066}'..='\u{206f}').contains(&c)
            || c == '\u{feff}'
    };
    let ok = s.chars().count() <= 254
        && (1..=254).contains(&n)
        && !t.chars().any(|c| c.is_whitespace() || c.is_control() || special(c))
        && t.matches('@').count() == 1
        && !t.starts_with('@')
        && !t.ends_with('@');
    ok.then_some(t)
}

fn address() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9._%+-]{1,64}", "[A-Za-z0-9-]{1,63}(\\.[A-Za-z0-9-]{1,63}){0,2}", "[ \t]{0,2}", "[ \t]{0,2}")
        .prop_map(|(local, domain, before, after)| format!("{before}{local}@{domain}{after}"))
}

/// Addresses around the 254-character limit, of letters some of which lowercase to longer
/// strings ('İ' becomes "i\u{307}").
fn long_address() -> impl Strategy<Value = String> {
    let letters = proptest::collection::vec(proptest::sample::select(&['a', 'B', 'é', 'İ', 'Σ', '.'][..]), 240..=258);
    (letters, any::<prop::sample::Index>()).prop_map(|(mut v, at)| {
        let i = 1 + at.index(v.len() - 2);
        v[i] = '@';
        v.into_iter().collect()
    })
}

proptest! {
    #[test]
    fn email_accepts_addresses_and_stores_them_trimmed_and_lowercased(s in address()) {
        prop_assume!(s.chars().count() <= 254);
        let e = Email::parse(&s).unwrap();
        prop_assert_eq!(e.as_str(), s.trim().to_lowercase());
    }

    #[test]
    fn email_accepts_exactly_its_language(s in prop_oneof![text(300), near(TRICKY, 300), address(), long_address()]) {
        let got = Email::parse(&s).ok().map(|e| e.as_str().to_owned());
        prop_assert_eq!(got, email_spec(&s), "{:?}", s);
    }

    #[test]
    fn a_stored_email_parses_again_to_itself(s in prop_oneof![text(300), near(TRICKY, 300), address(), long_address()]) {
        if let Ok(e) = Email::parse(&s) {
            prop_assert!(e.as_str().chars().count() <= 254);
            prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Password and display names

proptest! {
    #[test]
    fn password_accepts_exactly_10_to_256_characters(s in prop_oneof![text(300), near(TRICKY, 300)]) {
        let n = s.chars().count();
        match Password::parse(&s) {
            Ok(p) => {
                prop_assert!((10..=256).contains(&n));
                prop_assert_eq!(p.expose(), s.as_str());
                let shown = format!("{p:?}");
                prop_assert_eq!(shown.as_str(), "Password(***)");
            }
            Err(_) => prop_assert!(!(10..=256).contains(&n)),
        }
    }

    #[test]
    fn names_accept_exactly_their_language(s in prop_oneof![text(300), near(TRICKY, 300)]) {
        let t = s.trim();
        let ok = (1..=255).contains(&t.chars().count()) && !t.chars().any(char::is_control);
        let project = ProjectName::parse(&s);
        let tenant = TenantName::parse(&s);
        prop_assert_eq!(project.is_ok(), ok, "{:?}", s);
        prop_assert_eq!(tenant.is_ok(), ok, "{:?}", s);
        if let (Ok(p), Ok(t)) = (project, tenant) {
            prop_assert_eq!(p.as_str(), s.trim());
            prop_assert_eq!(ProjectName::parse(p.as_str()), Ok(p.clone()));
            prop_assert_eq!(TenantName::parse(t.as_str()), Ok(t.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts

/// `s` with each ASCII letter's case chosen by `upper`.
fn recase(s: &str, upper: &[bool]) -> String {
    s.chars()
        .zip(upper.iter().cycle())
        .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

fn casing() -> impl Strategy<Value = Vec<bool>> {
    proptest::collection::vec(any::<bool>(), 2..16)
}

/// An optional trailing dot and an optional port, as a client may send them.
fn decoration() -> impl Strategy<Value = (bool, Option<u16>)> {
    (any::<bool>(), proptest::option::of(any::<u16>()))
}

fn decorate(name: &str, (dot, port): (bool, Option<u16>)) -> String {
    let dot = if dot { "." } else { "" };
    match port {
        Some(p) => format!("{name}{dot}:{p}"),
        None => format!("{name}{dot}"),
    }
}

fn base_domain() -> impl Strategy<Value = String> {
    prop_oneof![Just("localhost".to_owned()), "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,2}"]
}

proptest! {
    #[test]
    fn classify_never_panics_and_names_only_valid_slugs(host in prop_oneof![text(400), near(TRICKY, 320)],
                                                         base in base_domain()) {
        let base = BaseDomain::new(&base);
        if let HostTarget::Tenant(slug) = base.classify(Some(&host)) {
            prop_assert!(Slug::parse(slug.as_str()).is_ok());
            let name = format!("{}.{}", slug.as_str(), base.as_str());
            prop_assert!(host.to_ascii_lowercase().starts_with(&name), "{:?} -> {:?}", host, slug);
        }
    }

    #[test]
    fn a_tenant_host_names_its_slug_whatever_the_case_port_or_trailing_dot(
        s in slug(), base in base_domain(), upper in casing(), deco in decoration(),
    ) {
        let host = decorate(&recase(&format!("{s}.{base}"), &upper), deco);
        let got = BaseDomain::new(&recase(&base, &upper[1..])).classify(Some(&host));
        prop_assert_eq!(got, HostTarget::Tenant(Slug::parse(&s).unwrap()), "{:?}", host);
    }

    #[test]
    fn the_bare_base_domain_is_the_platform(base in base_domain(), upper in casing(), deco in decoration()) {
        let host = decorate(&recase(&base, &upper), deco);
        prop_assert_eq!(BaseDomain::new(&base).classify(Some(&host)), HostTarget::Platform, "{:?}", host);
    }

    #[test]
    fn ip_literals_are_unknown(v4 in any::<std::net::Ipv4Addr>(), v6 in any::<std::net::Ipv6Addr>(),
                               port in proptest::option::of(any::<u16>())) {
        let base = BaseDomain::new("localhost");
        for host in [v4.to_string(), format!("[{v6}]"), v6.to_string(), format!("{v4}.")] {
            let host = match port {
                Some(p) if !host.contains(':') || host.starts_with('[') => format!("{host}:{p}"),
                _ => host,
            };
            prop_assert_eq!(base.classify(Some(&host)), HostTarget::Unknown, "{:?}", host);
        }
    }

    #[test]
    fn over_long_labels_extra_labels_and_other_domains_are_unknown(
        long in "[a-z0-9]{64,300}", s in slug(), extra in "[a-z0-9-]{1,20}", other in base_domain(),
        deco in decoration(),
    ) {
        let base = BaseDomain::new("localhost");
        let long = decorate(&format!("{long}.localhost"), deco);
        prop_assert_eq!(base.classify(Some(&long)), HostTarget::Unknown);
        let deeper = decorate(&format!("{extra}.{s}.localhost"), deco);
        prop_assert_eq!(base.classify(Some(&deeper)), HostTarget::Unknown, "{:?}", deeper);
        prop_assume!(other != "localhost" && !other.ends_with(".localhost"));
        let elsewhere = decorate(&format!("{s}.{other}"), deco);
        prop_assert_eq!(base.classify(Some(&elsewhere)), HostTarget::Unknown, "{:?}", elsewhere);
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors and page requests

/// Every instant `time` can represent, in whole microseconds.
fn micros() -> impl Strategy<Value = i64> {
    let min = clock::to_micros(time::PrimitiveDateTime::MIN.assume_utc());
    let max = clock::to_micros(time::PrimitiveDateTime::MAX.assume_utc());
    prop_oneof![min..=max, Just(min), Just(max), Just(0i64), 1_500_000_000_000_000i64..2_500_000_000_000_000]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (micros(), any::<[u8; 16]>())
        .prop_map(|(m, id)| Cursor { created_at: clock::from_micros(m).unwrap(), id: Uuid::from_bytes(id) })
}

fn key() -> impl Strategy<Value = CursorKey> {
    any::<[u8; 32]>().prop_map(CursorKey::new)
}

fn is_bad_request<T>(r: &plinth_domain::Result<T>) -> bool {
    matches!(r, Err(Error::BadRequest(_)))
}

proptest! {
    #[test]
    fn a_cursor_round_trips(c in cursor(), k in key()) {
        let s = c.encode(&k);
        prop_assert!(s.len() <= 96 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(Cursor::decode(&s, &k).ok(), Some(c));
        let page = PageRequest::parse(None, Some(&s), &k).unwrap();
        prop_assert_eq!(page.after, Some(c));
    }

    #[test]
    fn a_cursor_signed_with_another_key_or_altered_is_refused(c in cursor(), k in key(), other in key(),
                                                              at in any::<prop::sample::Index>(),
                                                              ch in "[A-Za-z0-9_-]") {
        let s = c.encode(&k);
        if differ(&k, &other) {
            prop_assert!(is_bad_request(&Cursor::decode(&s, &other)));
        }
        let i = at.index(s.len());
        let mut altered = s.clone();
        altered.replace_range(i..=i, &ch);
        prop_assume!(altered != s);
        prop_assert!(is_bad_request(&Cursor::decode(&altered, &k)), "{:?}", altered);
    }

    #[test]
    fn any_other_string_is_a_bad_request_cursor(s in prop_oneof![text(200), "[A-Za-z0-9_-]{0,120}"], k in key()) {
        prop_assert!(is_bad_request(&Cursor::decode(&s, &k)), "{:?}", s);
        prop_assert!(is_bad_request(&PageRequest::parse(None, Some(&s), &k)));
    }

    #[test]
    fn a_well_formed_payload_with_a_forged_tag_is_refused(c in cursor(), k in key(), tag in any::<[u8; 16]>()) {
        let mut raw = URL_SAFE_NO_PAD.decode(c.encode(&k)).unwrap();
        let n = raw.len();
        prop_assume!(raw[n - 16..] != tag);
        raw[n - 16..].copy_from_slice(&tag);
        prop_assert!(is_bad_request(&Cursor::decode(&URL_SAFE_NO_PAD.encode(&raw), &k)));
    }

    /// `limit` is a decimal integer from 1 to 100 (the optional leading '+' and leading zeros
    /// that Rust's integer parser takes are tolerated); anything else is a 400.
    #[test]
    fn limit_accepts_exactly_one_to_a_hundred(l in prop_oneof![text(12), "[+-]?[0-9]{0,6}", "[+ 0-9a-f.e-]{0,8}"],
                                              k in key()) {
        let digits = l.strip_prefix('+').unwrap_or(&l);
        let expected = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u128>().unwrap())
            .filter(|v| (1..=u128::from(MAX_LIMIT)).contains(v));
        match PageRequest::parse(Some(&l), None, &k) {
            Ok(p) => prop_assert_eq!(Some(u128::from(p.limit)), expected, "{:?}", l),
            Err(e) => {
                prop_assert!(matches!(e, Error::BadRequest(_)));
                prop_assert_eq!(expected, None, "{:?}", l);
            }
        }
    }
}

/// Whether two keys sign differently (two random keys are equal with negligible odds).
fn differ(a: &CursorKey, b: &CursorKey) -> bool {
    let probe = Cursor { created_at: clock::from_micros(0).unwrap(), id: Uuid::nil() };
    probe.encode(a) != probe.encode(b)
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

proptest! {
    #[test]
    fn idempotency_keys_are_1_to_255_printable_ascii(s in prop_oneof![text(300), "[ -~]{0,300}", near(TRICKY, 260)]) {
        let ok = (1..=255).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
        match IdempotencyKey::parse(&s) {
            Ok(k) => {
                prop_assert!(ok, "{:?}", s);
                prop_assert_eq!(k.as_str(), s.as_str());
                prop_assert_eq!(IdempotencyKey::parse(k.as_str()), Ok(k.clone()));
            }
            Err(_) => prop_assert!(!ok, "{:?}", s),
        }
    }

    #[test]
    fn one_unprintable_byte_spoils_a_key(s in "[ -~]{1,200}", at in any::<prop::sample::Index>(),
                                         c in any::<char>().prop_filter("unprintable", |c| !(' '..='~').contains(c))) {
        let mut bad = s.clone();
        let i = at.index(s.len());
        bad.insert(i, c);
        prop_assert!(IdempotencyKey::parse(&bad).is_err(), "{:?}", bad);
    }
}

// ---------------------------------------------------------------------------------------------
// Ids

/// The hyphenated UUID form, in either case.
fn is_hyphenated(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        text(40),
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "[0-9a-gA-G{}:+-]{30,40}",
        "[0-9a-f]{32}",
        "\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}",
        "urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ]
}

proptest! {
    #[test]
    fn ids_parse_exactly_the_hyphenated_form(s in id_like()) {
        let expected = is_hyphenated(&s);
        prop_assert_eq!(s.parse::<TenantId>().is_ok(), expected, "{:?}", s);
        prop_assert_eq!(s.parse::<UserId>().is_ok(), expected);
        prop_assert_eq!(s.parse::<ProjectId>().is_ok(), expected);
        prop_assert_eq!(s.parse::<WebhookId>().is_ok(), expected);
        prop_assert_eq!(s.parse::<DeliveryId>().is_ok(), expected);
        prop_assert_eq!(s.parse::<EventId>().is_ok(), expected);
        if let Ok(id) = s.parse::<ProjectId>() {
            prop_assert_eq!(id.to_string(), s.to_ascii_lowercase());
            prop_assert_eq!(id.to_string().parse::<ProjectId>(), Ok(id));
        }
    }

    #[test]
    fn an_id_parses_from_its_display(bytes in any::<[u8; 16]>()) {
        let id = UserId::from_uuid(Uuid::from_bytes(bytes));
        prop_assert_eq!(id.to_string().parse::<UserId>(), Ok(id));
    }
}

/// Whether `s` is in the refresh token's documented language: `plr_`, 42 base64url characters,
/// and a last one whose two unused low bits are zero.
fn is_refresh_token_text(s: &str) -> bool {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let Some(body) = s.strip_prefix("plr_") else { return false };
    let bytes = body.as_bytes();
    bytes.len() == 43 && bytes[..42].iter().all(|&c| b64(c)) && b"AEIMQUYcgkosw048".contains(&bytes[42])
}

proptest! {
    #[test]
    fn a_refresh_token_round_trips(raw in any::<[u8; 32]>()) {
        let text = format!("plr_{}", URL_SAFE_NO_PAD.encode(raw));
        prop_assert_eq!(text.len(), RefreshToken::TEXT_LEN);
        prop_assert!(is_refresh_token_text(&text));
        let token = RefreshToken::parse(&text).unwrap();
        prop_assert_eq!(token.expose(), text);
    }

    #[test]
    fn a_refresh_token_parses_exactly_its_language(
        s in prop_oneof![
            text(60),
            "plr_[A-Za-z0-9_-]{40,44}",
            "plr_[A-Za-z0-9_+/=-]{43}",
            "[a-z]{3}_[A-Za-z0-9_-]{43}",
            "PLR_[A-Za-z0-9_-]{43}",
        ]
    ) {
        prop_assert_eq!(RefreshToken::parse(&s).is_ok(), is_refresh_token_text(&s), "{:?}", s);
    }

    #[test]
    fn an_altered_refresh_token_is_refused_or_another_token(raw in any::<[u8; 32]>(),
                                                            at in any::<prop::sample::Index>(),
                                                            ch in "[A-Za-z0-9_-]") {
        let text = format!("plr_{}", URL_SAFE_NO_PAD.encode(raw));
        let i = 4 + at.index(43);
        let mut altered = text.clone();
        altered.replace_range(i..=i, &ch);
        prop_assume!(altered != text);
        if let Ok(other) = RefreshToken::parse(&altered) {
            let original = RefreshToken::parse(&text).unwrap();
            prop_assert!(!other.hash().constant_time_eq(&original.hash()));
        }
    }
}
