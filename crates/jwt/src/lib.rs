//! Credentials adapters: signed access tokens (`jsonwebtoken`) and password hashing (argon2id).
//!
//! Architecture invariant: this crate implements the domain's `TokenService` and
//! `PasswordHasher` ports and nothing else. It reads no environment variable and no file:
//! the web crate reads the configuration and the key files and hands over their contents.
//! No error from `jsonwebtoken` or `argon2` crosses a port; every refused token is
//! `Error::InvalidToken`, with the reason only in a debug log.

mod hasher;
mod tokens;

pub use hasher::{Argon2Hasher, Argon2Params, HasherError};
pub use tokens::{AsymmetricAlgorithm, JwtConfig, JwtConfigError, JwtTokens, KeyMaterial, KeySource};
