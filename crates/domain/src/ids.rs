//! Identifiers: newtypes over UUIDv7 (time-ordered), one per entity so they can't be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not an id in its hyphenated UUID form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(
            feature = "openapi",
            derive(utoipa::ToSchema),
            schema(value_type = uuid::Uuid, example = "0193a7c4-5e2f-7b1d-8c3a-6f4e2d1b9a07")
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read back from storage.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The raw UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Appends the hyphenated form to `out`, without the formatting machinery: cache
            /// and limiter keys are built from ids on every request.
            pub fn push_to(&self, out: &mut String) {
                out.push_str(self.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Parses the hyphenated form only, so an id has one spelling.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err(InvalidId);
                }
                Uuid::try_parse(s).map(Self).map_err(|_| InvalidId)
            }
        }
    };
}

id_type!(
    /// A tenant's id.
    TenantId
);
id_type!(
    /// A user's id, unique across tenants.
    UserId
);
id_type!(
    /// A project's id, unique across tenants.
    ProjectId
);
id_type!(
    /// A webhook subscription's id.
    WebhookId
);
id_type!(
    /// One delivery (of one event to one webhook)'s id.
    DeliveryId
);
id_type!(
    /// A domain event's id: stable across every delivery attempt of that event.
    EventId
);
id_type!(
    /// A session's id: one per login, carried by its access tokens as `sid`.
    SessionId
);
id_type!(
    /// An outbound email's id: its `Message-ID`, and what its link's token is derived from.
    EmailId
);
id_type!(
    /// A pending invitation's id.
    InvitationId
);
id_type!(
    /// A tenant API key's id: the public part of the key (`plk_<id, 32 hex digits>_…`).
    ApiKeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered() {
        let a = ProjectId::new();
        let b = ProjectId::new();
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn an_id_parses_from_its_display() {
        let id = UserId::new();
        assert_eq!(id.to_string().parse::<UserId>().ok(), Some(id));
    }

    #[test]
    fn only_the_hyphenated_form_parses() {
        let id = TenantId::new();
        let simple = id.as_uuid().simple().to_string();
        assert!(simple.parse::<TenantId>().is_err());
        assert!(format!("{{{id}}}").parse::<TenantId>().is_err());
        assert!("not-a-uuid".parse::<TenantId>().is_err());
        assert!("".parse::<TenantId>().is_err());
    }
}
