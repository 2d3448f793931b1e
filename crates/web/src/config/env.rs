//! Reading typed values out of environment variables, with errors that name the variable.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use ipnet::IpNet;

/// A configuration value that must never be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A variable with a bad value: start-up stops with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable} {message}")]
pub struct ConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong with it (never its value: it may be a secret).
    pub message: String,
}

impl ConfigError {
    /// `variable` is wrong in this way.
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self { variable, message: message.into() }
    }
}

/// The environment, read through a lookup function.
pub(super) struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub(super) fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The variable's value; unset and empty are the same.
    pub(super) fn string(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    pub(super) fn list(&self, name: &str) -> Vec<String> {
        self.string(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    }

    pub(super) fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => {
                v.trim().parse().map_err(|_| ConfigError::new(name, format!("can't be parsed as {}", kind::<T>())))
            }
        }
    }

    pub(super) fn parse_in<T: FromStr + PartialOrd + fmt::Display>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        let v = self.parse(name, default)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::new(name, format!("must be from {} to {}", range.start(), range.end())))
        }
    }

    /// Comma-separated IPs or CIDRs; a bare IP is a /32 or /128.
    pub(super) fn cidrs(&self, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
        self.list(name)
            .iter()
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::new(name, "must be comma-separated IP addresses or CIDRs"))
            })
            .collect()
    }
}

fn kind<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    match name {
        "bool" => "true or false",
        "core::net::socket_addr::SocketAddr" => "an address such as 127.0.0.1:8080",
        _ if name.starts_with('u') || name.starts_with('i') => "a whole number",
        _ => "the expected type",
    }
}
