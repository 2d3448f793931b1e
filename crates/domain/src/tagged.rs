//! JSON bodies kept with their entity tag, so that an answer served from the cache doesn't hash
//! its body again on every request.

use bytes::Bytes;

/// The tag's length: 16 hex digits between double quotes, as `ETag` carries it.
const TAG_LEN: usize = 18;

/// The strong entity tag of `body`, quoted (`"0123456789abcdef"`): the one way plinth tags a
/// body, cached or not.
pub fn etag(body: &[u8]) -> [u8; TAG_LEN] {
    let mut tag = [0; TAG_LEN];
    write_etag(body, &mut tag);
    tag
}

fn write_etag(body: &[u8], tag: &mut [u8]) {
    tag[0] = b'"';
    crate::hex::encode_to(&xxhash_rust::xxh3::xxh3_64(body).to_be_bytes(), &mut tag[1..TAG_LEN - 1]);
    tag[TAG_LEN - 1] = b'"';
}

/// A JSON body and its strong entity tag (a hash of the body), stored as one buffer: the quoted
/// tag, then the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedJson(Bytes);

impl TaggedJson {
    /// Tags `body`.
    pub fn new(body: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(TAG_LEN + body.len());
        buf.resize(TAG_LEN, 0);
        buf.extend_from_slice(body);
        Self::tag(buf)
    }

    /// `value` as JSON, tagged: serialized once into the buffer that is kept, which starts with
    /// room for `capacity` bytes of JSON.
    ///
    /// # Errors
    /// When `value` can't be serialized (a map with non-string keys, a failing `Serialize`).
    pub fn to_json<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> serde_json::Result<Self> {
        let _ser = crate::timing::measure(crate::timing::Phase::Ser);
        let mut buf = Vec::with_capacity(TAG_LEN + capacity);
        buf.resize(TAG_LEN, 0);
        serde_json::to_writer(&mut buf, value)?;
        Ok(Self::tag(buf))
    }

    /// Writes the tag of `buf[TAG_LEN..]` over `buf[..TAG_LEN]`.
    fn tag(mut buf: Vec<u8>) -> Self {
        let (tag, body) = buf.split_at_mut(TAG_LEN);
        write_etag(body, tag);
        // What was reserved and not used would stay allocated as long as the cache holds it.
        buf.shrink_to_fit();
        Self(Bytes::from(buf))
    }

    /// A tagged body from its stored form ([`TaggedJson::into_stored`]); `None` when `stored`
    /// is not one.
    pub fn from_stored(stored: Bytes) -> Option<Self> {
        let tag = stored.get(..TAG_LEN)?;
        let well_formed =
            tag[0] == b'"' && tag[TAG_LEN - 1] == b'"' && tag[1..TAG_LEN - 1].iter().all(u8::is_ascii_hexdigit);
        well_formed.then_some(Self(stored))
    }

    /// The stored form: one buffer, for a cache.
    pub fn into_stored(self) -> Bytes {
        self.0
    }

    /// The entity tag, quoted (`"0123456789abcdef"`).
    pub fn etag(&self) -> Bytes {
        self.0.slice(..TAG_LEN)
    }

    /// The JSON body (no copy).
    pub fn body(&self) -> Bytes {
        self.0.slice(TAG_LEN..)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_the_bodys_hash_and_survives_storage() {
        let tagged = TaggedJson::new(br#"{"items":[]}"#);
        assert_eq!(&tagged.body()[..], br#"{"items":[]}"#);
        let etag = tagged.etag();
        assert_eq!(etag.len(), 18);
        assert_eq!(etag, format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(br#"{"items":[]}"#)));
        assert_eq!(TaggedJson::from_stored(tagged.clone().into_stored()), Some(tagged));
        assert_ne!(TaggedJson::new(b"{}").etag(), TaggedJson::new(b"[]").etag());
    }

    #[test]
    fn a_serialized_value_is_tagged_like_its_json() {
        let value = serde_json::json!({"items": [{"name": "a"}, {"name": "b"}], "next_cursor": null});
        // A capacity too small to hold it grows; the result is the same either way.
        for capacity in [0, 4, 1024] {
            let tagged = TaggedJson::to_json(&value, capacity).unwrap();
            let json = serde_json::to_vec(&value).unwrap();
            assert_eq!(tagged, TaggedJson::new(&json));
            assert_eq!(&tagged.body()[..], &json[..]);
        }
        // Room reserved and not used is given back: the cache keeps only the body and its tag.
        let stored = TaggedJson::to_json(&1, 10_000).unwrap().into_stored();
        assert!(stored.try_into_mut().unwrap().capacity() < 64);
        let hash = xxhash_rust::xxh3::xxh3_64(b"1");
        assert_eq!(TaggedJson::to_json(&1, 0).unwrap().etag(), format!("\"{hash:016x}\""));
    }

    #[test]
    fn anything_else_is_not_a_stored_tagged_body() {
        for raw in [&b""[..], b"{}", br#""0123456789abcdeX"{}"#, br#"0123456789abcdef00{}"#] {
            assert_eq!(TaggedJson::from_stored(Bytes::copy_from_slice(raw)), None, "{raw:?}");
        }
    }
}
