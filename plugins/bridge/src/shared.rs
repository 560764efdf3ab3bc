//! The types the firewall modules, DEL, CHECK and GC share: a leaf module, so
//! that `config`, `masquerade`, `masquerade_iptables`, `spoofcheck`, `del`
//! and `gc` depend on it and never on each other in a cycle.

use cni::{Error, Result};
use cni_net::hash::sha512_hex;

/// knftables' limit on comments.
const COMMENT_MAX: usize = 128;

/// Which firewall implementation masquerades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasqBackend {
    /// `nftables`: table `inet cni_plugins_masquerade`, applied in-process.
    Nftables,
    /// `iptables`: a `CNI-<hash>` chain per attachment in the nat table.
    Iptables,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAttachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// Identifies one attachment's rules.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// Container id.
    pub container_id: String,
    /// Interface name in the container.
    pub ifname: String,
}

impl Attachment {
    /// The attachment of `ifname` of container `container_id` to `network`.
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Self {
        Attachment {
            network: network.to_string(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }

    /// The nftables comment prefix of this attachment's rules.
    pub fn nft_hash(&self) -> String {
        format!(
            "{}-{}",
            network_hash(&self.network),
            sha512_hex(format!("{}:{}", self.ifname, self.container_id).as_bytes(), 16)
        )
    }

    /// The nftables comment of this attachment's rules.
    pub fn nft_comment(&self) -> String {
        let mut comment = format!(
            "{}, net: {}, if: {}, id: {}",
            self.nft_hash(),
            self.network.replace('"', ""),
            self.ifname.replace('"', ""),
            self.container_id.replace('"', "")
        );
        if comment.len() > COMMENT_MAX {
            let mut end = COMMENT_MAX;
            while !comment.is_char_boundary(end) {
                end -= 1;
            }
            comment.truncate(end);
        }
        comment
    }
}

/// The nftables comment prefix of every rule of `network`.
pub fn network_hash(network: &str) -> String {
    sha512_hex(network.as_bytes(), 16)
}

/// One error for many: the first, with the others in its details.
pub fn combine(errors: Vec<Error>) -> Result<()> {
    let mut iter = errors.into_iter();
    let Some(mut first) = iter.next() else {
        return Ok(());
    };
    for e in iter {
        if !first.details.is_empty() {
            first.details.push_str("; ");
        }
        first.details.push_str(&e.to_string());
    }
    Err(first)
}
