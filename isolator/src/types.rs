//! The Mesos messages the isolator reads and writes, as plain Rust types.
//!
//! Only the fields `network/cni` looks at are here. Field names and the JSON
//! shape follow the protobufs (`mesos.proto`, `isolator.proto`) as Mesos's
//! `JSON::protobuf` prints them (snake_case keys, empty lists and unset
//! fields left out, `labels` wrapped in `{"labels": [...]}`), because the
//! `network_info` injected into a plugin's config must read exactly as the
//! C++ isolator writes it, and the C ABI passes these types as that JSON.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A container ID with its ancestry (Mesos's `ContainerID`). A nested
/// container's string form joins the chain with dots: `parent.child`.
///
/// The dotted form names a directory below the isolator's root and is passed
/// to plugins as `CNI_CONTAINERID`, so every part must be a CNI identifier
/// without dots (see [`ContainerId::validate`]); JSON input is checked on
/// deserialization, the dotted form by [`ContainerId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawContainerId")]
pub struct ContainerId {
    /// This container's own part of the ID.
    pub value: String,
    /// The container it is nested in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerId>>,
}

impl ContainerId {
    /// A top-level container ID.
    pub fn new(value: impl Into<String>) -> Self {
        ContainerId {
            value: value.into(),
            parent: None,
        }
    }

    /// A container nested in `parent`.
    pub fn nested(parent: &ContainerId, value: impl Into<String>) -> Self {
        ContainerId {
            value: value.into(),
            parent: Some(Box::new(parent.clone())),
        }
    }

    /// Parses the dotted form (`a.b.c` is `c` nested in `b` nested in `a`),
    /// which is how container directories are named. `None` for anything
    /// [`ContainerId::validate`] rejects.
    pub fn parse(dotted: &str) -> Option<ContainerId> {
        // `validate` refuses it anyway; refused first, a long string never
        // builds its chain (each part clones the parents: quadratic).
        if dotted.len() > MAX_ID_LEN {
            return None;
        }
        let mut id: Option<ContainerId> = None;
        for part in dotted.split('.') {
            id = Some(match id {
                None => ContainerId::new(part),
                Some(parent) => ContainerId::nested(&parent, part),
            });
        }
        id.filter(|id| id.validate().is_ok())
    }

    /// Checks that the ID is safe as a directory name and as
    /// `CNI_CONTAINERID`: every part starts with a letter or digit and holds
    /// only letters, digits, `_` and `-` (CNI's identifier rule, minus the
    /// `.` that separates the parts), and the dotted form fits one path
    /// component (255 bytes). So no part can be empty, `.`/`..`, absolute,
    /// hold a `/`, white space, a NUL or a new line. Mesos's own IDs (UUIDs)
    /// always pass.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut id = Some(self);
        let mut len = 0usize;
        while let Some(c) = id {
            if !is_id_part(&c.value) {
                return Err(format!(
                    "invalid container ID part {:?}: must start with a letter or digit and hold only letters, digits, '_' and '-'",
                    c.value
                ));
            }
            len += c.value.len() + 1;
            id = c.parent.as_deref();
        }
        if len - 1 > MAX_ID_LEN {
            return Err(format!("container ID is longer than {MAX_ID_LEN} bytes"));
        }
        Ok(())
    }

    /// The top of the nesting chain.
    pub fn root(&self) -> &ContainerId {
        let mut id = self;
        while let Some(parent) = &id.parent {
            id = parent;
        }
        id
    }

    /// True for a nested container.
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }
}

/// The longest dotted ID: one path component (`NAME_MAX`).
const MAX_ID_LEN: usize = 255;

fn is_id_part(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The unchecked JSON shape of a [`ContainerId`].
#[derive(Deserialize)]
struct RawContainerId {
    value: String,
    #[serde(default)]
    parent: Option<Box<RawContainerId>>,
}

impl RawContainerId {
    fn into_id(self) -> ContainerId {
        ContainerId {
            value: self.value,
            parent: self.parent.map(|p| Box::new(p.into_id())),
        }
    }
}

impl TryFrom<RawContainerId> for ContainerId {
    type Error = String;

    fn try_from(raw: RawContainerId) -> std::result::Result<Self, String> {
        let id = raw.into_id();
        id.validate()?;
        Ok(id)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = &self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(&self.value)
    }
}

/// `ContainerClass`: a DEBUG container joins its parent's namespaces and
/// gets no state of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerClass {
    /// An ordinary container.
    #[default]
    Default,
    /// A debug container (`mesos task exec`).
    Debug,
}

/// `ContainerInfo.Type`: the isolator only networks MESOS containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerType {
    /// The Mesos containerizer.
    #[default]
    Mesos,
    /// The Docker containerizer (rejected).
    Docker,
}

/// One label (`Label`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The key.
    pub key: String,
    /// The value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `Labels`, a message wrapping the list, as in the protobuf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    /// The labels, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
}

/// `NetworkInfo.PortMapping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u32,
    /// The port inside the container.
    pub container_port: u32,
    /// `tcp` or `udp`; absent means tcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `NetworkInfo.Protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// `NetworkInfo.IPAddress`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddress {
    /// The family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The address (IPv4 without prefix; IPv6 as the plugin reported it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// `NetworkInfo`: one network a container asks to join (a `name`d one is a
/// CNI network; no name means the host network).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Addresses (only set in status answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddress>,
    /// The CNI network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Port mappings (for `mesos-cni-port-mapper` and portmap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

impl NetworkInfo {
    /// A request to join the CNI network `name`.
    pub fn named(name: impl Into<String>) -> Self {
        NetworkInfo {
            name: Some(name.into()),
            ..Default::default()
        }
    }
}

/// The parts of `ContainerInfo` the isolator reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The containerizer type.
    #[serde(default, rename = "type")]
    pub container_type: ContainerType,
    /// The hostname to give the container (default: its ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The networks to join, in interface order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
}

/// The parts of `ContainerConfig` the isolator reads. For a top-level
/// container `container_info` is the executor's `ContainerInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// DEFAULT or DEBUG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_class: Option<ContainerClass>,
    /// The container's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<ContainerInfo>,
    /// The container's image root, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
}

/// What the agent checkpointed about a live container (`ContainerState`):
/// its ID and the networks it asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container.
    pub container_id: ContainerId,
    /// The networks from `executor_info.container` (top level) or
    /// `container_info` (nested).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
}

/// A namespace kind in launch info (`clone_namespaces`/`enter_namespaces`
/// carry `CLONE_NEW*` flags in Mesos; names here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// `CLONE_NEWNS`.
    Mount,
    /// `CLONE_NEWNET`.
    Net,
    /// `CLONE_NEWUTS`.
    Uts,
}

impl Namespace {
    /// The `CLONE_NEW*` flag value Mesos puts in its protobuf.
    pub fn clone_flag(self) -> i32 {
        match self {
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Uts => libc::CLONE_NEWUTS,
        }
    }
}

/// `ContainerLaunchInfo`: what the launcher must do for this container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchInfo {
    /// Environment variables to set (`LIBPROCESS_IP=0.0.0.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<(String, String)>,
    /// Namespaces to create for the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clone_namespaces: Vec<Namespace>,
    /// Namespaces of the parent to join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enter_namespaces: Vec<Namespace>,
}

/// `ContainerStatus`: the container's networks with their addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// One entry per attached network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
}

/// The `net_*` part of `ResourceStatistics`: sums over the container's CNI
/// interfaces (not `lo`). All `None` when metrics are off or the container
/// has no networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatistics {
    /// Packets received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_packets: Option<u64>,
    /// Bytes received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_bytes: Option<u64>,
    /// Receive errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_errors: Option<u64>,
    /// Received packets dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_dropped: Option<u64>,
    /// Packets sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_packets: Option<u64>,
    /// Bytes sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_bytes: Option<u64>,
    /// Send errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_errors: Option<u64>,
    /// Outgoing packets dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_dropped: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_ids_round_trip() {
        let id = ContainerId::parse("a.b.c").unwrap();
        assert_eq!(id.value, "c");
        assert_eq!(id.root().value, "a");
        assert_eq!(id.to_string(), "a.b.c");
        assert!(ContainerId::parse("a..b").is_none());
        assert!(ContainerId::parse("").is_none());
    }

    #[test]
    fn hostile_ids_are_rejected() {
        let long = "a".repeat(256);
        for bad in [
            "/some/abs/path",
            "a b",
            "../x",
            "a/b",
            "a\nb",
            "a\0b",
            ".",
            "..",
            "-a",
            "a.-b",
            "a.b.",
            long.as_str(),
        ] {
            assert!(ContainerId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(ContainerId::parse(&"a".repeat(255)).is_some());
        assert!(ContainerId::parse("5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab.child_1").is_some());
        // JSON input is checked as well, at every level of the chain.
        for bad in [
            r#"{"value":"/etc"}"#,
            r#"{"value":"a.b"}"#,
            r#"{"value":"ok","parent":{"value":".."}}"#,
            r#"{"value":""}"#,
        ] {
            assert!(serde_json::from_str::<ContainerId>(bad).is_err(), "{bad}");
        }
        let id: ContainerId = serde_json::from_str(r#"{"value":"c","parent":{"value":"p"}}"#).unwrap();
        assert_eq!(id.to_string(), "p.c");
    }

    #[test]
    fn network_info_json_matches_mesos() {
        let mut n = NetworkInfo::named("net1");
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"name":"net1"}"#);
        n.labels = Some(Labels {
            labels: vec![Label {
                key: "k".into(),
                value: Some("v".into()),
            }],
        });
        n.port_mappings.push(PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: None,
        });
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"name":"net1","labels":{"labels":[{"key":"k","value":"v"}]},"port_mappings":[{"host_port":8080,"container_port":80}]}"#
        );
    }
}
