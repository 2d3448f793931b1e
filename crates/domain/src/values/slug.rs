//! A tenant's slug: a DNS label that is also its host name's first label.

use std::fmt;

use serde::Serialize;

use super::InvalidValue;

/// Slugs no tenant can take: they name the platform's own hosts.
pub const RESERVED: &[&str] = &["www", "api", "app", "admin", "static", "status"];

/// 3–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`, not reserved.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "acme"))]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// What [`Slug::parse`] accepts but for [`RESERVED`], as a regular expression (the common
    /// subset of ECMA-262, Python and Rust syntax), for the API's document.
    pub const PATTERN: &'static str = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$";

    /// Validates `s` as it is: uppercase is refused, not folded (hosts are folded before this).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if !(3..=63).contains(&s.len()) {
            return Err(InvalidValue("must be 3 to 63 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(InvalidValue("may contain only a-z, 0-9 and '-'"));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(InvalidValue("must not start or end with '-'"));
        }
        if RESERVED.contains(&s) {
            return Err(InvalidValue("is reserved"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slug({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_label_is_a_slug() {
        for ok in ["acme", "a-b", "abc", "x1-2y", "xn--bcher-kva", &"a".repeat(63)] {
            assert_eq!(Slug::parse(ok).map(|s| s.as_str().to_owned()), Ok(ok.to_owned()), "{ok}");
        }
    }

    #[test]
    fn malformed_slugs_are_refused() {
        for bad in ["", "ab", &"a".repeat(64), "-abc", "abc-", "ab_c", "Acme", "a.bc", "ab c", "ábc"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_slugs_are_refused() {
        for r in RESERVED {
            assert_eq!(Slug::parse(r), Err(InvalidValue("is reserved")));
        }
    }
}
