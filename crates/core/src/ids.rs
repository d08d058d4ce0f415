//! Identifiers and small value types of the domain: tenants, data types, records, classes and
//! regions. Each constructor validates its input, so a value of these types is always well formed
//! and safe to use as a storage key or in a URL path.

use std::fmt;
use std::str::FromStr;

use crate::error::InvalidId;

fn is_slug(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                if is_slug(&s, $max) {
                    Ok(Self(s))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        value: s,
                        rule: concat!(
                            "1 to ", $max,
                            " characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
                        ),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

slug_id!(
    /// A tenant's id, as written in the policy's `[tenants.<id>]` and in API paths.
    TenantId,
    "tenant id",
    63
);
impl TenantId {
    /// The pseudo-tenant of platform principals (operators): no policy tenant can have this id,
    /// because tenant ids cannot start with `_`, so a platform credential never matches a
    /// tenant by accident.
    pub fn platform() -> TenantId {
        TenantId(PLATFORM_TENANT.to_owned())
    }

    pub fn is_platform(&self) -> bool {
        self.0 == PLATFORM_TENANT
    }

    /// Parses a stored tenant id, which may be the platform pseudo-tenant.
    pub fn from_stored(s: &str) -> Result<TenantId, InvalidId> {
        if s == PLATFORM_TENANT {
            Ok(TenantId::platform())
        } else {
            TenantId::new(s)
        }
    }
}

const PLATFORM_TENANT: &str = "_platform";

slug_id!(
    /// The name of a data type (`[data_types.<name>]`).
    DataTypeName,
    "data type name",
    63
);
slug_id!(
    /// The name of a retention tier (`[tiers.<name>]`).
    TierName,
    "tier name",
    63
);
slug_id!(
    /// A deployment region (`au-east`, `eu-west-1`).
    Region,
    "region",
    63
);

/// A record's id: a ULID, so ids sort by ingest time and never collide across nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(ulid::Ulid);

impl RecordId {
    pub fn from_ulid(id: ulid::Ulid) -> Self {
        Self(id)
    }

    pub fn ulid(&self) -> ulid::Ulid {
        self.0
    }

    /// The 16 bytes of the ULID, used as key-derivation input.
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0.to_bytes()
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for RecordId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The first character carries only 3 bits: above '7' the value overflows 128 bits,
        // and the ulid crate would silently drop the excess and name another record.
        let in_range = s
            .as_bytes()
            .first()
            .is_some_and(|c| (b'0'..=b'7').contains(c));
        let parsed = if in_range {
            ulid::Ulid::from_string(s).ok()
        } else {
            None
        };
        parsed.map(Self).ok_or_else(|| InvalidId {
            kind: "record id",
            value: s.to_owned(),
            rule: "a 26-character ULID such as 01J9Z8Q4X6V3N2K7M5B8C1D0EF",
        })
    }
}

/// Data classification, ordered from least to most sensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::Public,
        Class::Internal,
        Class::Confidential,
        Class::Restricted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Public => "public",
            Class::Internal => "internal",
            Class::Confidential => "confidential",
            Class::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_and_reject() {
        assert!(TenantId::new("acme").is_ok());
        assert!(TenantId::new("acme-2_eu").is_ok());
        assert!(TenantId::new("9lives").is_ok());
        for bad in ["", "Acme", "-acme", "ac me", "acmé", "a/b", &"a".repeat(64)] {
            let err = TenantId::new(bad).unwrap_err();
            assert_eq!(err.kind, "tenant id");
        }
        assert!(TenantId::new("a".repeat(63)).is_ok());
    }

    #[test]
    fn record_ids_round_trip() {
        let id = RecordId::from_ulid(ulid::Ulid::from_parts(1, 2));
        assert_eq!(id.to_string().parse::<RecordId>().unwrap(), id);
        assert!("not-a-ulid".parse::<RecordId>().is_err());
        assert!("81M841GZ025FTHY6JFCMEXNJJ7".parse::<RecordId>().is_err());
        assert!("ZZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<RecordId>().is_err());
        assert!("7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<RecordId>().is_ok());
    }

    #[test]
    fn classes_are_ordered() {
        assert!(Class::Public < Class::Internal);
        assert!(Class::Confidential < Class::Restricted);
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), Some(c));
        }
        assert_eq!(Class::parse("secret"), None);
    }
}
