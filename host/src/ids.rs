//! Identifiers: newtypes so that a tenant id, a job id and a content digest cannot be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUID version 7), so ids sort by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: the unit of isolation, quota and billing.
    TenantId
);
uuid_id!(
    /// A job: one submitted run of a workload on an input.
    JobId
);

/// A worker process, named by its operator or generated at start (`hostname-random`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// Checks an operator-chosen id: 1 to 64 ASCII letters, digits, `-` or `_` (it becomes a
    /// message subject token).
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("worker id {s:?} must be 1 to 64 ASCII letters, digits, '-' or '_'"))
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of some bytes (a component, an input). Shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex form, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Why a text is not a digest.
#[derive(Debug, thiserror::Error)]
#[error("a digest is 64 hexadecimal digits (a SHA-256), got {0:?}")]
pub struct BadDigest(String);

impl FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadDigest(s.chars().take(80).collect()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a workload name: 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, `.`, starting with a
/// letter or digit. Names are per tenant.
pub fn check_workload_name(name: &str) -> Result<(), String> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "workload name {name:?} is invalid: use 1 to 64 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
        ))
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp Niyanta stores.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The latest time RFC 3339 can write, 9999-12-31T23:59:59.999Z, in Unix ms.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// RFC 3339 text (UTC, milliseconds) for a timestamp in Unix milliseconds, clamped to 1970 to
/// [`LATEST_MS`].
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, LATEST_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an RFC 3339 UTC time (`2026-11-21T10:00:00Z`, fractions of a second allowed) to Unix
/// milliseconds. Errors: the text is not such a time, or it is before 1970.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 UTC time like 2026-11-21T10:00:00Z: {e}"))?;
    let since = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{s:?} is before 1970"))?;
    i64::try_from(since.as_millis()).map_err(|_| format!("{s:?} is too far ahead"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let ms = parse_rfc3339("2026-11-21T10:00:00.250Z").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-21T10:00:00.250Z");
        assert!(parse_rfc3339("tomorrow").unwrap_err().contains("RFC 3339"));
        // Out-of-range times are clamped, never a panic.
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339(&rfc3339(LATEST_MS)), Ok(LATEST_MS));
    }

    #[test]
    fn digest_round_trips_and_rejects_garbage() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.to_hex().parse::<Digest>().ok(), Some(d));
        assert_eq!(format!("sha256:{d}").parse::<Digest>().ok(), Some(d));
        assert!("xyz".parse::<Digest>().is_err());
    }

    #[test]
    fn workload_names() {
        assert!(check_workload_name("csv-groupby").is_ok());
        assert!(check_workload_name("a.b_c-1").is_ok());
        assert!(check_workload_name("").is_err());
        assert!(check_workload_name("-x").is_err());
        assert!(check_workload_name("Upper").is_err());
        assert!(check_workload_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn job_ids_are_time_ordered() {
        let a = JobId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = JobId::new();
        assert!(a < b);
    }
}
