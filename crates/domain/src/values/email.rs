//! An email address, as far as plinth needs to know one.

use std::fmt;

use serde::Serialize;

use super::InvalidValue;

/// What an address may not hold besides spaces and control characters, as the body of a
/// regular expression's character class: the characters mail syntax gives a meaning (a display
/// name's `<>`, a comment's `()`, a domain literal's `[]`, a list's `,;`, a group's `:`, a quoted
/// string's `"` and `\`), which would let the address a message is sent to differ from the one
/// checked and counted, and the invisible format characters (the soft hyphen, zero-width
/// characters, bidirectional overrides, the byte-order mark) that make one address look like
/// another.
macro_rules! address_specials {
    () => {
        "<>()\\[\\]\\\\,;:\"\\xad\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff"
    };
}

/// Whether `c` is one of [`address_specials`]'s characters.
fn is_special(c: char) -> bool {
    matches!(
        c,
        '<' | '>' | '(' | ')' | '[' | ']' | '\\' | ',' | ';' | ':' | '"'
            | '\u{ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// Exactly one `@` with text on both sides, at most 254 characters, no spaces, control
/// characters, mail syntax's special characters (`<>()[]\,;:"`) or invisible format characters.
/// Stored trimmed and lowercased, so uniqueness within a tenant ignores case.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "ada@example.com"))]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// What [`Email::parse`] accepts, as a regular expression, but for the length: trimmed
    /// characters around text, one `@` and text, neither with a space, a control character, a
    /// special or a format character.
    pub const PATTERN: &'static str = concat!(
        "^[",
        trimmed!(),
        "]*[^@",
        trimmed_or_control!(),
        address_specials!(),
        "]+@[^@",
        trimmed_or_control!(),
        address_specials!(),
        "]+[",
        trimmed!(),
        "]*$"
    );
    /// The most characters an address has, as sent and once trimmed and lowercased.
    pub const MAX_LEN: usize = 254;

    /// Validates and normalises `s`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        // The length is checked as sent (what the published schema's `maxLength` counts, so
        // that input the schema refuses is refused here too, surrounding spaces included), and
        // again after lowercasing: some characters lowercase to longer strings ('İ' becomes
        // "i\u{307}"), and the stored form must itself be a valid address.
        if s.chars().count() > Self::MAX_LEN {
            return Err(InvalidValue("must be 1 to 254 characters"));
        }
        let s = s.trim().to_lowercase();
        if s.is_empty() || s.chars().count() > Self::MAX_LEN {
            return Err(InvalidValue("must be 1 to 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue("must not contain spaces or control characters"));
        }
        if s.chars().any(is_special) {
            return Err(InvalidValue("must be a plain address: none of <>()[]\\,;:\" nor invisible characters"));
        }
        match s.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => Ok(Self(s)),
            _ => Err(InvalidValue("must contain exactly one '@' with text on both sides")),
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_longer_than_254_characters_as_sent_is_refused_even_if_shorter_trimmed() {
        let padded = format!("{}a@b.test", " ".repeat(Email::MAX_LEN));
        assert!(Email::parse(&padded).is_err());
        let fits = format!("{}a@b.test", " ".repeat(Email::MAX_LEN - 8));
        assert_eq!(Email::parse(&fits).map(|e| e.as_str().to_owned()), Ok("a@b.test".into()));
    }

    #[test]
    fn an_address_is_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.as_str().to_owned()), Ok("ada@example.com".into()));
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in ["", "   ", "ada", "@example.com", "ada@", "a@b@c", "a da@b.c", "ada@b\u{0}c", long.as_str()] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_comments_lists_and_invisible_characters_are_refused() {
        for bad in [
            "name<victim@x.test>",
            "(c)v@x.test",
            "v@x.test(c)",
            "v@[127.0.0.1]",
            "a,b@x.test",
            "a;b@x.test",
            "a\\b@x.test",
            "\"q\"@x.test",
            "g:v@x.test",
            "victim\u{200b}@x.test",
            "\u{202e}set.txe@x.test",
            "so\u{ad}ft@x.test",
            "\u{feff}v@x.test",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["first.last+tag@example.test", "o'brien@x.test", "ünïcode@exämple.test", "a_b-c@x-y.test"] {
            assert!(Email::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_limit_applies_to_the_lowercased_address() {
        // 'İ' lowercases to two characters: 253 of them in the input would be 506 stored.
        let expanding = format!("a@{}", "İ".repeat(252));
        assert!(Email::parse(&expanding).is_err());
        let at_limit = format!("a@{}", "İ".repeat(126));
        assert_eq!(Email::parse(&at_limit).map(|e| e.as_str().chars().count()), Ok(254));
    }

    #[test]
    fn two_hundred_fifty_four_characters_are_enough() {
        let at_limit = format!("{}@example.com", "a".repeat(254 - 12));
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok());
    }
}
