//! Keyset pagination: newest first, by `(created_at, id)` descending, with opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock;
use crate::error::{Error, Result};

/// The default page size.
pub const DEFAULT_LIMIT: u16 = 50;
/// The largest page size.
pub const MAX_LIMIT: u16 = 100;

const CURSOR_VERSION: u8 = 2;
const PAYLOAD_LEN: usize = 1 + 8 + 16;
const TAG_LEN: usize = 16;
const CURSOR_LEN: usize = PAYLOAD_LEN + TAG_LEN;

/// The key cursors are signed with, so that a cursor plinth did not issue is refused. Every
/// instance must share it (the composition root derives it from the encryption key).
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl CursorKey {
    /// A key from 32 bytes of secret.
    pub const fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// A key derived from another secret, so the secret itself is never used for two jobs.
    pub fn derive(secret: &[u8]) -> Self {
        Self(crate::values::derive_key(secret, b"plinth list cursors v1"))
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        use hmac::Mac as _;
        let mut out = [0u8; TAG_LEN];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0) {
            mac.update(payload);
            out.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        }
        out
    }
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(***)")
    }
}

/// The position after which the next page starts: the last item's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last item's creation time.
    pub created_at: OffsetDateTime,
    /// The last item's id.
    pub id: Uuid,
}

impl Cursor {
    /// How many characters an encoded cursor has: 41 bytes in unpadded base64url.
    pub const TEXT_LEN: usize = (CURSOR_LEN * 4).div_ceil(3);
    /// What an encoded cursor looks like, as a regular expression: [`Cursor::TEXT_LEN`]
    /// base64url characters, the last one with its two unused low bits zero (the decoder
    /// refuses any other). Only the signature tells whether plinth issued it.
    pub const PATTERN: &'static str = "^[A-Za-z0-9_-]{54}[AEIMQUYcgkosw048]$";

    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut raw = [0u8; PAYLOAD_LEN];
        raw[0] = CURSOR_VERSION;
        raw[1..9].copy_from_slice(&clock::to_micros(self.created_at).to_be_bytes());
        raw[9..].copy_from_slice(self.id.as_bytes());
        raw
    }

    /// The opaque, signed text form handed to clients.
    pub fn encode(&self, key: &CursorKey) -> String {
        let payload = self.payload();
        let mut raw = [0u8; CURSOR_LEN];
        raw[..PAYLOAD_LEN].copy_from_slice(&payload);
        raw[PAYLOAD_LEN..].copy_from_slice(&key.tag(&payload));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A stable text form for cache keys (not for clients).
    pub fn cache_key(&self) -> String {
        format!("{}.{}", clock::to_micros(self.created_at), self.id.simple())
    }

    /// Parses a cursor that [`Cursor::encode`] produced with `key`; anything else (garbage,
    /// another version, a cursor signed with another key) is `BadRequest`.
    pub fn decode(s: &str, key: &CursorKey) -> Result<Self> {
        const BAD: Error = Error::BadRequest("cursor is not valid");
        if s.len() != Self::TEXT_LEN {
            return Err(BAD);
        }
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| BAD)?;
        let raw: [u8; CURSOR_LEN] = raw.try_into().map_err(|_| BAD)?;
        let (payload, tag) = raw.split_at(PAYLOAD_LEN);
        // Constant time, so the tag can't be guessed byte by byte.
        let expected = key.tag(payload);
        if raw[0] != CURSOR_VERSION || tag.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(BAD);
        }
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&raw[1..9]);
        let created_at = clock::from_micros(i64::from_be_bytes(micros)).ok_or(BAD)?;
        let id = Uuid::from_slice(&raw[9..PAYLOAD_LEN]).map_err(|_| BAD)?;
        Ok(Self { created_at, id })
    }
}

/// Which page a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items, 1–100.
    pub limit: u16,
    /// Start after this position; `None` for the first page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Validates the raw query parameters: `limit` 1–100 (default 50) and a cursor plinth issued.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>, key: &CursorKey) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u16>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or(Error::BadRequest("limit must be an integer from 1 to 100"))?,
        };
        let after = cursor.map(|c| Cursor::decode(c, key)).transpose()?;
        Ok(Self { limit, after })
    }

    /// How many rows to ask storage for: one more than the page, to learn if another follows.
    pub fn fetch_limit(&self) -> usize {
        usize::from(self.limit) + 1
    }

    /// A stable text form of this request, for cache keys.
    pub fn cache_key(&self) -> String {
        let mut key = String::new();
        self.push_cache_key(&mut key);
        key
    }

    /// Appends [`PageRequest::cache_key`] to `out`; the first page's costs no formatting (it
    /// is built on every cached list request).
    pub fn push_cache_key(&self, out: &mut String) {
        out.push('l');
        let mut digits = [0u8; 5];
        let mut n = self.limit;
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend(digits[at..].iter().map(|&d| char::from(d)));
        if let Some(c) = &self.after {
            out.push(':');
            out.push_str(&c.cache_key());
        }
    }
}

/// One page of a list, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `null` on the last page.
    #[cfg_attr(feature = "openapi", schema(example = "eyJrIjoiMDE5M2E3YzQifQ.c2lnbmF0dXJl"))]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `fetch_limit()` rows: the extra row, if present, proves that a
    /// next page exists and is dropped.
    pub fn from_rows(
        mut rows: Vec<T>,
        request: &PageRequest,
        position: impl Fn(&T) -> Cursor,
        key: &CursorKey,
    ) -> Self {
        let limit = usize::from(request.limit);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| position(last).encode(key))
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: CursorKey = CursorKey::new([3; 32]);

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor { created_at: clock::now(), id: Uuid::now_v7() };
        assert_eq!(Cursor::decode(&c.encode(&KEY), &KEY).ok(), Some(c));
    }

    #[test]
    fn a_cursor_plinth_did_not_issue_is_a_bad_request() {
        let good = Cursor { created_at: clock::now(), id: Uuid::now_v7() }.encode(&KEY);
        for bad in ["", "x", "%%%", &good[1..], &format!("{good}A"), &"A".repeat(1000)] {
            assert!(matches!(Cursor::decode(bad, &KEY), Err(Error::BadRequest(_))), "{bad}");
        }
        let mut other_version = URL_SAFE_NO_PAD.decode(&good).unwrap_or_default();
        other_version[0] = 9;
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(other_version), &KEY).is_err());
        let other_key = CursorKey::new([4; 32]);
        assert!(Cursor::decode(&good, &other_key).is_err(), "a cursor signed with another key");
        let mut forged = URL_SAFE_NO_PAD.decode(&good).unwrap_or_default();
        forged[5] ^= 1;
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(forged), &KEY).is_err(), "an altered position");
    }

    #[test]
    fn cache_keys_name_the_limit_and_the_cursor() {
        let c = Cursor { created_at: clock::now(), id: Uuid::now_v7() };
        for limit in [1, 9, 10, 50, 100] {
            let first = PageRequest { limit, after: None };
            assert_eq!(first.cache_key(), format!("l{limit}"));
            let next = PageRequest { limit, after: Some(c) };
            assert_eq!(next.cache_key(), format!("l{limit}:{}", c.cache_key()));
        }
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_bad_requests() {
        assert_eq!(PageRequest::parse(None, None, &KEY).map(|p| p.limit).ok(), Some(50));
        assert_eq!(PageRequest::parse(Some("1"), None, &KEY).map(|p| p.limit).ok(), Some(1));
        assert_eq!(PageRequest::parse(Some("100"), None, &KEY).map(|p| p.limit).ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", "", "1.5", "99999999999"] {
            assert!(PageRequest::parse(Some(bad), None, &KEY).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_extra_row_becomes_the_next_cursor() {
        let req = PageRequest { limit: 2, after: None };
        let t = clock::now();
        let key = |id: &Uuid| Cursor { created_at: t, id: *id };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_rows(ids.clone(), &req, key, &KEY);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(key(&ids[1]).encode(&KEY)));
        let last = Page::from_rows(ids[..2].to_vec(), &req, key, &KEY);
        assert_eq!(last.next_cursor, None);
    }
}
