//! `CNI_ARGS`: the deprecated `K=V;K=V` channel.
//!
//! Go plugins match keys against their struct field names, case-sensitively,
//! and reject unknown keys unless `IgnoreUnknown` is `1` or `true`. We do the
//! same so a runtime gets the same answer from either implementation.

use crate::error::{Error, Result};

/// Parsed `CNI_ARGS` pairs, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Empty segments are skipped; a segment without `=`,
    /// or with more than one, is an error (code 4).
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        for seg in s.split(';').filter(|seg| !seg.is_empty()) {
            let mut kv = seg.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) => pairs.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(Error::invalid_environment(format!(
                        "CNI_ARGS: invalid pair {seg:?}, expected KEY=VALUE"
                    )));
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of `key` (case-sensitive); the last occurrence wins.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when `IgnoreUnknown` is `1` or `true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Fails (code 4) when a key outside `known` is present and
    /// `IgnoreUnknown` is not set. `IgnoreUnknown` itself is always known.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown() {
            return Ok(());
        }
        for (k, _) in &self.pairs {
            if k != "IgnoreUnknown" && !known.contains(&k.as_str()) {
                return Err(Error::invalid_environment(format!("CNI_ARGS: unknown key {k:?}")));
            }
        }
        Ok(())
    }

    /// All pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.2").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.2"));
        assert!(a.ignore_unknown());
        assert!(a.check_known(&["IP"]).is_ok());
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }

    #[test]
    fn unknown_keys_need_ignore_unknown() {
        let a = CniArgs::parse("IP=1.2.3.4;FOO=bar").unwrap();
        assert_eq!(a.check_known(&["IP"]).unwrap_err().code.0, 4);
        let a = CniArgs::parse("ip=1.2.3.4").unwrap();
        assert!(a.check_known(&["IP"]).is_err(), "keys are case-sensitive");
    }

    #[test]
    fn malformed_pairs_fail() {
        assert_eq!(CniArgs::parse("A").unwrap_err().code.0, 4);
        assert_eq!(CniArgs::parse("A=b=c").unwrap_err().code.0, 4);
    }
}
