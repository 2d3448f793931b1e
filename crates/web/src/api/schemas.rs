//! The schemas of the values the API validates, built from the domain's own rules (its
//! patterns and lengths), so that the document says exactly what the server accepts. Handlers
//! name them with `schema_with`; the `ops` tests check that each agrees with its `parse`.

use plinth_domain::page::Cursor;
use plinth_domain::ports::IdempotencyKey;
use plinth_domain::values::{
    DISPLAY_NAME_PATTERN, Email, EmailToken, Password, Purpose, RESERVED_SLUGS, RefreshToken, Slug,
};
use utoipa::openapi::Object;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A tenant's slug: a DNS label, not one of the reserved ones.
pub fn slug() -> Object {
    // utoipa's `Object` has no `not`; an extension's key is written as it is.
    let reserved = Extensions::from_iter([("not", serde_json::json!({ "enum": RESERVED_SLUGS }))]);
    string()
        .description(Some("3–63 characters of a-z, 0-9 and '-', neither first nor last a '-'; not a reserved name"))
        .pattern(Some(Slug::PATTERN))
        .min_length(Some(3))
        .max_length(Some(63))
        .extensions(Some(reserved))
        .examples(["acme"])
        .build()
}

/// A tenant's or a project's name: 1–255 characters after trimming, no control characters.
pub fn display_name() -> Object {
    string()
        .description(Some("1–255 characters after trimming, no control characters"))
        .pattern(Some(DISPLAY_NAME_PATTERN))
        .min_length(Some(1))
        .examples(["Apollo"])
        .build()
}

/// An email address as plinth takes one: text, `@`, text; trimmed and lowercased.
pub fn email() -> Object {
    string()
        .description(Some(
            "Text, '@', text, without spaces or control characters; stored trimmed and lowercased, of at most 254 characters",
        ))
        .pattern(Some(Email::PATTERN))
        .min_length(Some(3))
        .max_length(Some(Email::MAX_LEN))
        .examples(["ada@acme.test"])
        .build()
}

/// A new password: 10–256 characters.
pub fn password() -> Object {
    string()
        .description(Some("10–256 characters"))
        .min_length(Some(Password::MIN_LEN))
        .max_length(Some(Password::MAX_LEN))
        .examples(["correct horse battery staple"])
        .build()
}

/// A webhook's target: an absolute http(s) URL of at most 2048 characters. Whether its host
/// resolves to addresses the policy allows is known only when it is registered.
pub fn webhook_url() -> Object {
    // utoipa's known formats lack `uri`, which JSON Schema defines.
    string()
        .description(Some(
            "An absolute http(s) URL without credentials whose host resolves only to addresses the server allows",
        ))
        .format(Some(SchemaFormat::Custom("uri".into())))
        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://"))
        .max_length(Some(2048))
        .examples(["https://hooks.example.com/plinth"])
        .build()
}

/// An `Idempotency-Key` header's value.
pub fn idempotency_key() -> Object {
    string()
        .description(Some("1–255 printable ASCII characters, neither first nor last a space"))
        .pattern(Some(IdempotencyKey::PATTERN))
        .min_length(Some(1))
        .max_length(Some(IdempotencyKey::MAX_LEN))
        .build()
}

/// A list cursor: base64url of a signed position.
pub fn cursor() -> Object {
    string()
        .description(Some("The `next_cursor` of the previous page"))
        .pattern(Some(Cursor::PATTERN))
        .min_length(Some(Cursor::TEXT_LEN))
        .max_length(Some(Cursor::TEXT_LEN))
        .build()
}

/// An invitation link's token: `pli_` and 43 base64url characters.
pub fn invitation_token() -> Object {
    emailed_token(Purpose::Invitation, "The token in the invitation link's fragment (`#token=…`)")
}

/// A password-reset link's token.
pub fn reset_token() -> Object {
    emailed_token(Purpose::PasswordReset, "The token in the reset link's fragment (`#token=…`)")
}

/// A verification link's token.
pub fn verify_token() -> Object {
    emailed_token(Purpose::VerifyEmail, "The token in the verification link's fragment (`#token=…`)")
}

/// The secret part of the example tokens: 43 base64url characters, as a 32-byte secret encodes.
const EXAMPLE_SECRET: &str = "EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXAMPLE-EXA";

fn emailed_token(purpose: Purpose, description: &str) -> Object {
    string()
        .description(Some(description))
        .pattern(Some(purpose.pattern()))
        .examples([format!("{}{EXAMPLE_SECRET}", purpose.prefix())])
        .min_length(Some(EmailToken::TEXT_LEN))
        .max_length(Some(EmailToken::TEXT_LEN))
        .build()
}

/// A refresh token: `plr_` and 43 base64url characters.
pub fn refresh_token() -> Object {
    string()
        .description(Some("The `refresh_token` of the last login or refresh"))
        .pattern(Some(RefreshToken::PATTERN))
        .examples([format!("plr_{EXAMPLE_SECRET}")])
        .min_length(Some(RefreshToken::TEXT_LEN))
        .max_length(Some(RefreshToken::TEXT_LEN))
        .build()
}
