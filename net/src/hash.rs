//! Name hashes the Go plugins put in firewall object names and comments.
//!
//! Go derives chain names such as `CNI-<hash>` and `CNI-DN-<hash>` from a
//! SHA-512 of the network name and container ID; we derive them the same way
//! so a host can switch implementations and still find its rules.

use sha2::{Digest, Sha512};
use std::fmt::Write as _;

/// The first `len` lower-case hex digits of sha512(`data`) (at most 128).
pub fn sha512_hex(data: &[u8], len: usize) -> String {
    let digest = Sha512::digest(data);
    let mut hex = String::with_capacity(128);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            sha512_hex(b"abc", 128),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(sha512_hex(b"", 8), "cf83e135");
    }
}
