//! Display names of tenants and projects.

use std::fmt;

use serde::Serialize;

use super::InvalidValue;

/// What [`ProjectName::parse`] and [`TenantName::parse`] accept, as a regular expression:
/// trimmed characters around 1–255 characters without control characters that start and end
/// with one that is not trimmed.
pub const DISPLAY_NAME_PATTERN: &str = concat!(
    "^[",
    trimmed!(),
    "]*[^",
    trimmed_or_control!(),
    "](?:[^",
    control!(),
    "]{0,253}[^",
    trimmed_or_control!(),
    "])?[",
    trimmed!(),
    "]*$"
);

fn parse_display_name(s: &str) -> Result<String, InvalidValue> {
    let s = s.trim();
    let n = s.chars().count();
    if !(1..=255).contains(&n) {
        return Err(InvalidValue("must be 1 to 255 characters after trimming"));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidValue("must not contain control characters"));
    }
    Ok(s.to_owned())
}

macro_rules! display_name {
    ($(#[$doc:meta])* $name:ident, example = $example:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = $example))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Trims `s` and validates it: 1–255 characters, no control characters.
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                parse_display_name(s).map(Self)
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

display_name!(
    /// A project's name.
    ProjectName,
    example = "Apollo"
);
display_name!(
    /// A tenant's display name.
    TenantName,
    example = "Acme Labs"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed() {
        assert_eq!(ProjectName::parse("  Apollo ").map(|n| n.as_str().to_owned()), Ok("Apollo".into()));
    }

    #[test]
    fn names_are_counted_in_characters_after_trimming() {
        assert!(ProjectName::parse(&"é".repeat(255)).is_ok());
        assert!(ProjectName::parse(&"é".repeat(256)).is_err());
        assert!(ProjectName::parse(&format!("  {}  ", "x".repeat(255))).is_ok());
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("").is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(ProjectName::parse("a\u{0}b").is_err());
        assert!(ProjectName::parse("a\nb").is_err());
        assert!(ProjectName::parse("'; DROP TABLE projects; --").is_ok());
        assert!(ProjectName::parse("名前 🚀").is_ok());
    }
}
