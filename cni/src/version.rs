//! Spec versions and their negotiation.
//!
//! A plugin accepts exactly the versions in [`SUPPORTED_VERSIONS`]; a config
//! without `cniVersion` is 0.1.0. CHECK exists from 0.4.0 on, GC and STATUS
//! from 1.1.0 on.

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::fmt;

/// Every spec version rcni speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest spec version; what VERSION reports as its own `cniVersion`.
pub const CURRENT: &str = "1.1.0";

/// The version a config without `cniVersion` is taken to be.
pub const IMPLICIT: &str = "0.1.0";

/// A parsed `major.minor.patch` spec version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl Version {
    /// 0.1.0
    pub const V0_1_0: Version = Version::new(0, 1, 0);
    /// 0.2.0
    pub const V0_2_0: Version = Version::new(0, 2, 0);
    /// 0.3.0
    pub const V0_3_0: Version = Version::new(0, 3, 0);
    /// 0.4.0
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    /// 1.0.0
    pub const V1_0_0: Version = Version::new(1, 0, 0);
    /// 1.1.0
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    /// A version from its three numbers.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version { major, minor, patch }
    }

    /// Parses `X.Y.Z` (a missing part counts as 0, as libcni's parser does).
    pub fn parse(s: &str) -> Result<Version> {
        let bad = || Error::incompatible_version(format!("invalid version {s:?}"));
        let mut parts = s.split('.');
        let mut next = |required: bool| -> Result<u32> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map_err(|_| bad())
                }
                None if !required => Ok(0),
                _ => Err(bad()),
            }
        };
        let v = Version::new(next(true)?, next(false)?, next(false)?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl PartialEq<&str> for Version {
    fn eq(&self, other: &&str) -> bool {
        Version::parse(other).is_ok_and(|v| v == *self)
    }
}

/// Compares two version strings; an unparsable one sorts first.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The `cniVersion` of a config, with the spec's default for a missing one.
pub fn effective(cni_version: Option<&str>) -> &str {
    match cni_version {
        Some(v) if !v.is_empty() => v,
        _ => IMPLICIT,
    }
}

/// Fails with code 1 unless `requested` is exactly one of the supported versions.
pub fn check_supported(requested: &str) -> Result<Version> {
    if SUPPORTED_VERSIONS.contains(&requested) {
        return Version::parse(requested);
    }
    Err(
        Error::incompatible_version("incompatible CNI versions").with_details(format!(
            "config is {requested:?}, plugin supports {SUPPORTED_VERSIONS:?}"
        )),
    )
}

/// Fails with code 1 when the config version is below the version that
/// introduced `verb`.
pub fn check_verb(verb: &str, config: Version) -> Result<()> {
    let needed = match verb {
        "CHECK" => Version::V0_4_0,
        "GC" | "STATUS" => Version::V1_1_0,
        _ => return Ok(()),
    };
    if config < needed {
        return Err(
            Error::incompatible_version(format!("config version {config} does not allow {verb}"))
                .with_details(format!("{verb} needs a config of version {needed} or newer")),
        );
    }
    Ok(())
}

/// What a plugin prints for VERSION.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": CURRENT,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert!(Version::parse("0.3.1").unwrap() > Version::parse("0.3.0").unwrap());
        assert_eq!(Version::parse("1.1").unwrap(), Version::V1_1_0);
        assert!(Version::parse("1.x.0").is_err());
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1.0.0.0").is_err());
        assert_eq!(compare("0.10.0", "0.4.0"), Ordering::Greater);
    }

    #[test]
    fn exact_match_only() {
        for v in SUPPORTED_VERSIONS {
            check_supported(v).unwrap();
        }
        assert_eq!(check_supported("1.1").unwrap_err().code.0, 1);
        assert_eq!(check_supported("0.5.0").unwrap_err().code.0, 1);
        assert_eq!(check_supported("2.0.0").unwrap_err().code.0, 1);
    }

    #[test]
    fn verb_gates() {
        assert!(check_verb("CHECK", Version::V0_3_0).is_err());
        assert!(check_verb("CHECK", Version::V0_4_0).is_ok());
        assert!(check_verb("GC", Version::V1_0_0).is_err());
        assert!(check_verb("STATUS", Version::V1_1_0).is_ok());
        assert!(check_verb("ADD", Version::V0_1_0).is_ok());
    }

    #[test]
    fn missing_version_is_0_1_0() {
        assert_eq!(effective(None), "0.1.0");
        assert_eq!(effective(Some("")), "0.1.0");
        assert_eq!(effective(Some("1.0.0")), "1.0.0");
    }
}
