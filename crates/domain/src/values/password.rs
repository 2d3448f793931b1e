//! Passwords and their hashes. Neither can be printed by accident.

use std::fmt;

use super::InvalidValue;

/// A plaintext password of 10–256 characters. `Debug` hides it; it has no `Display` and is
/// never serialised.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// The fewest characters a password has.
    pub const MIN_LEN: usize = 10;
    /// The most characters a password has.
    pub const MAX_LEN: usize = 256;

    /// Validates the length, in characters.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let n = s.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&n) {
            return Err(InvalidValue("must be 10 to 256 characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The plaintext, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A password hash in PHC string format, as the hasher produced it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by a hasher or read back from storage.
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(Password::parse("ééééééééé").is_err());
        assert!(Password::parse("éééééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(256)).is_ok());
        assert!(Password::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Password::parse("correct horse battery").ok();
        assert_eq!(format!("{p:?}"), "Some(Password(***))");
        let h = PasswordHash::new("$argon2id$secret".into());
        assert!(!format!("{h:?}").contains("secret"));
    }
}
