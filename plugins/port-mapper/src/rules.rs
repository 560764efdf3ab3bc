//! The port mapper's DNAT rules: Mesos's iptables layout (a NAT chain of the
//! config's name, rules tagged `container_id: <id>`), or portmap's nftables
//! layout (an attachment chain, without masquerading, as Mesos has none).

use crate::config::{MapperConf, MapperError, code};
use cni_net::detach::Sockets;
use cni_net::iptables::{IptablesRunner, RestoreBatch, SavedTable, UpdateError};
use cni_net::iptables_nft::Scope;
use ipnetwork::IpNetwork;
use portmap::config::{Backend, Conditions, DEFAULT_MARK_BIT, PortMapConf};
use portmap::iptables_backend::{Rule, ip_port, iptables_error, net_family};
use portmap::mapping::{Attachment, IpFamily};
use portmap::nft_backend::NftBackend;

/// Mesos's comment tag.
pub fn comment(container_id: &str) -> String {
    format!("container_id: {container_id}")
}

/// The longest comment the kernel keeps (`XT_MAX_COMMENT_LEN` less the NUL);
/// iptables cuts longer ones, so a rule tagged with a longer one could not
/// be found again by its tag.
pub const MAX_COMMENT_LEN: usize = 255;

/// The longest container ID whose tag fits in [`MAX_COMMENT_LEN`].
pub const MAX_CONTAINER_ID_LEN: usize = MAX_COMMENT_LEN - "container_id: ".len();

/// Checks `CNI_CONTAINERID` before any of it reaches an `iptables-restore`
/// batch or a comment: CNI's identifier rule (letters, digits, `_`, `.`,
/// `-`; so no new line, quote or space can add lines or words to the
/// batch) and a length whose tag iptables keeps whole.
pub fn check_container_id(id: &str) -> Result<(), MapperError> {
    cni::validate::container_id(id).map_err(|e| MapperError::new(code::BAD_ARGS, e.msg))?;
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(MapperError::new(
            code::BAD_ARGS,
            format!(
                "container ID is {} bytes long; at most {MAX_CONTAINER_ID_LEN} fit in the rule comment",
                id.len()
            ),
        ));
    }
    Ok(())
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The jumps into the chain, as Mesos creates them. Mesos is IPv4 only; for
/// ip6tables the loopback exclusion is `::1/128` (an IPv4 prefix would make
/// the whole IPv6 batch fail).
pub fn entry_rules(chain: &str, v6: bool) -> Vec<Rule> {
    let loopback = if v6 { "::1/128" } else { "127.0.0.0/8" };
    vec![
        Rule {
            chain: s("PREROUTING"),
            tokens: vec![
                s("-m"),
                s("addrtype"),
                s("--dst-type"),
                s("LOCAL"),
                s("-j"),
                s(chain),
            ],
        },
        Rule {
            chain: s("OUTPUT"),
            tokens: vec![
                s("!"),
                s("-d"),
                s(loopback),
                s("-m"),
                s("addrtype"),
                s("--dst-type"),
                s("LOCAL"),
                s("-j"),
                s(chain),
            ],
        },
    ]
}

/// The container's rules in canonical `iptables-save` form. One excluded
/// device is `! -i DEV` on the DNAT rule (as Mesos writes it); several are
/// one RETURN rule each before it, so that every one is honoured.
pub fn container_rules(conf: &MapperConf, container_id: &str, addr: IpNetwork) -> Vec<Rule> {
    let tag = comment(container_id);
    let mut out = Vec::new();
    for m in &conf.mappings {
        let p = m.protocol.as_str();
        let port = [
            s("-p"),
            s(p),
            s("-m"),
            s(p),
            s("--dport"),
            m.host_port.to_string(),
        ];
        let tail = [s("-m"), s("comment"), s("--comment"), tag.clone()];
        let dnat = [
            s("-j"),
            s("DNAT"),
            s("--to-destination"),
            ip_port(addr.ip(), m.container_port),
        ];
        if let [dev] = conf.exclude_devices.as_slice() {
            let mut t = vec![s("!"), s("-i"), dev.clone()];
            t.extend(port.iter().cloned());
            t.extend(tail.iter().cloned());
            t.extend(dnat.iter().cloned());
            out.push(Rule {
                chain: conf.chain.clone(),
                tokens: t,
            });
            continue;
        }
        for dev in &conf.exclude_devices {
            let mut t = vec![s("-i"), dev.clone()];
            t.extend(port.iter().cloned());
            t.extend(tail.iter().cloned());
            t.extend([s("-j"), s("RETURN")]);
            out.push(Rule {
                chain: conf.chain.clone(),
                tokens: t,
            });
        }
        let mut t = port.to_vec();
        t.extend(tail.iter().cloned());
        t.extend(dnat.iter().cloned());
        out.push(Rule {
            chain: conf.chain.clone(),
            tokens: t,
        });
    }
    out
}

/// The restore batch for ADD: the chain and its jumps if missing, the rules not yet there.
pub fn add_batch(saved: &SavedTable, conf: &MapperConf, container_id: &str, addr: IpNetwork) -> RestoreBatch {
    let mut b = RestoreBatch::new("nat");
    b.ensure_chain(saved, &conf.chain);
    for r in entry_rules(&conf.chain, addr.is_ipv6())
        .iter()
        .chain(&container_rules(conf, container_id, addr))
    {
        r.ensure_in(&mut b, saved);
    }
    b
}

/// The restore batch for DEL: every rule of the chain tagged with the container.
pub fn del_batch(saved: &SavedTable, chain: &str, container_id: &str) -> Option<RestoreBatch> {
    let tag = comment(container_id);
    let mut b = RestoreBatch::new("nat");
    for r in saved.chain(chain).map(|c| c.rules.as_slice()).unwrap_or_default() {
        if r.comment.as_deref() == Some(tag.as_str()) {
            b.delete_saved(r);
        }
    }
    (!b.is_empty()).then_some(b)
}

/// Which backend: the config's, else iptables with Mesos's layout (the named `chain`),
/// since this binary stands in for Mesos's own; nftables only when asked for.
pub fn backend(conf: &MapperConf) -> Result<Backend, MapperError> {
    match conf.backend.as_deref() {
        Some("iptables") | None => Ok(Backend::Iptables),
        Some("nftables") => Ok(Backend::Nftables),
        Some(other) => Err(MapperError::new(
            code::BAD_ARGS,
            format!("unrecognized backend {other:?}"),
        )),
    }
}

/// portmap's view of the mapper config, for the nftables backend.
fn portmap_conf(conf: &MapperConf) -> PortMapConf {
    let mut cond = Vec::new();
    for dev in &conf.exclude_devices {
        cond.extend([s("iifname"), s("!="), dev.clone()]);
    }
    PortMapConf {
        name: conf.name.clone(),
        mappings: conf.mappings.clone(),
        snat: false,
        masq_all: false,
        mark_masq_bit: DEFAULT_MARK_BIT,
        external_set_mark_chain: None,
        conditions: Conditions {
            v4: cond.clone(),
            v6: cond,
        },
        backend: Backend::Nftables,
        backend_explicit: true,
    }
}

fn fail(e: impl std::fmt::Display) -> MapperError {
    MapperError::new(code::PORTMAP, format!("Failed to set up port mappings: {e}"))
}

fn ipt_fail(e: cni_net::iptables::IptablesError) -> MapperError {
    let e = iptables_error("iptables", &e);
    fail(e.details)
}

/// Installs the rules towards `addrs`.
pub fn add(conf: &MapperConf, container_id: &str, addrs: &[IpNetwork]) -> Result<(), MapperError> {
    match backend(conf)? {
        Backend::Iptables => {
            // Written in-process on an iptables-nft host; the socket's slow release goes to
            // a detached child when this scope ends (see `cni_net::detach`).
            let mut sockets = Sockets::detached();
            let runner = IptablesRunner::host();
            let scope = Scope::default().rules_of(["PREROUTING", "OUTPUT", conf.chain.as_str()]);
            for addr in addrs {
                let family = net_family(IpFamily::of(addr.ip()));
                runner
                    .update_with(sockets.netfilter().ok(), family, "nat", &scope, |saved| {
                        Ok::<_, MapperError>(Some(add_batch(saved, conf, container_id, *addr)))
                    })
                    .map_err(update_fail)?;
            }
        }
        Backend::Nftables => {
            let pm = portmap_conf(conf);
            let att = Attachment::new(&conf.name, container_id);
            // The netfilter socket's slow release goes to a detached child (see
            // `cni_net::detach`), when this scope ends.
            let mut sockets = Sockets::detached();
            let mut nft = NftBackend::new(&mut sockets).map_err(fail)?;
            for addr in addrs {
                nft.add(&pm, &att, *addr).map_err(fail)?;
            }
        }
    }
    Ok(())
}

fn update_fail(e: UpdateError<MapperError>) -> MapperError {
    match e {
        UpdateError::Iptables(e) => ipt_fail(e),
        UpdateError::Build(e) => e,
    }
}

/// Whether a failed read or change of a family's nat table may be passed over by DEL:
/// only when that family cannot hold rules at all (its tools or its nat table are absent).
/// Every other failure, an unreadable or unparsable `iptables-save` among them, is an
/// error, since DEL cannot know what it would have removed.
pub fn del_result(res: Result<(), UpdateError<MapperError>>) -> Result<(), MapperError> {
    match res {
        Err(UpdateError::Iptables(e)) if e.is_absent() => Ok(()),
        other => other.map_err(update_fail),
    }
}

/// Removes the container's rules (both families); nothing there is success.
pub fn del(conf: &MapperConf, container_id: &str) -> Result<(), MapperError> {
    match backend(conf)? {
        Backend::Iptables => {
            let mut sockets = Sockets::detached();
            let runner = IptablesRunner::host();
            let scope = Scope::default().rules_of([conf.chain.as_str()]);
            for family in [cni_net::Family::V4, cni_net::Family::V6] {
                del_result(
                    runner.update_with(sockets.netfilter().ok(), family, "nat", &scope, |saved| {
                        Ok::<_, MapperError>(del_batch(saved, &conf.chain, container_id))
                    }),
                )?;
            }
        }
        Backend::Nftables => {
            let att = Attachment::new(&conf.name, container_id);
            let mut sockets = Sockets::detached();
            NftBackend::new(&mut sockets)
                .and_then(|mut n| n.del(&att))
                .map_err(fail)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(devs: &str) -> MapperConf {
        MapperConf::parse(
            format!(
                r#"{{"name":"mesos","chain":"MESOS-PM","excludeDevices":{devs},"delegate":{{"type":"bridge"}},
                "args":{{"org.apache.mesos":{{"network_info":{{"port_mappings":[{{"host_port":8080,"container_port":80}}]}}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn mesos_layout() {
        let c = conf(r#"["eth1"]"#);
        let b = add_batch(&SavedTable::default(), &c, "c1", "10.222.9.2/24".parse().unwrap());
        assert_eq!(
            b.render().unwrap(),
            "*nat\n-N MESOS-PM\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j MESOS-PM\n\
             -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j MESOS-PM\n\
             -A MESOS-PM ! -i eth1 -p tcp -m tcp --dport 8080 -m comment --comment \"container_id: c1\" -j DNAT --to-destination 10.222.9.2:80\n\
             COMMIT\n"
        );
    }

    #[test]
    fn backend_defaults_to_mesos_iptables_layout() {
        let mut c = conf("[]");
        assert_eq!(backend(&c).unwrap(), Backend::Iptables);
        c.backend = Some("nftables".into());
        assert_eq!(backend(&c).unwrap(), Backend::Nftables);
        c.backend = Some("ebpf".into());
        assert_eq!(backend(&c).unwrap_err().code, code::BAD_ARGS);
    }

    #[test]
    fn every_excluded_device_is_honoured() {
        let c = conf(r#"["eth1","eth2"]"#);
        let rules: Vec<String> = container_rules(&c, "c1", "10.222.9.2/24".parse().unwrap())
            .iter()
            .map(|r| r.tokens.join(" "))
            .collect();
        assert_eq!(rules.len(), 3);
        assert!(rules[0].starts_with("-i eth1 ") && rules[0].ends_with("-j RETURN"));
        assert!(rules[1].starts_with("-i eth2 ") && rules[1].ends_with("-j RETURN"));
        assert!(rules[2].ends_with("-j DNAT --to-destination 10.222.9.2:80"));
    }

    #[test]
    fn del_removes_only_the_tagged_rules() {
        let saved = cni_net::iptables::parse_save(
            "*nat\n:MESOS-PM - [0:0]\n\
             -A MESOS-PM -p tcp -m tcp --dport 8080 -m comment --comment \"container_id: c1\" -j DNAT --to-destination 10.222.9.2:80\n\
             -A MESOS-PM -p tcp -m tcp --dport 8081 -m comment --comment \"container_id: c2\" -j DNAT --to-destination 10.222.9.3:80\n\
             COMMIT\n",
        )
        .unwrap()
        .remove(0);
        let b = del_batch(&saved, "MESOS-PM", "c1").unwrap().render().unwrap();
        assert!(
            b.contains("-D MESOS-PM") && b.contains("c1") && !b.contains("c2"),
            "{b}"
        );
        assert_eq!(del_batch(&saved, "MESOS-PM", "c3"), None);
        // The nft view excludes every device.
        let pm = portmap_conf(&conf(r#"["eth1","eth2"]"#));
        assert_eq!(
            pm.conditions.v4,
            ["iifname", "!=", "eth1", "iifname", "!=", "eth2"]
        );
        assert!(!pm.snat);
    }

    #[test]
    fn hostile_container_ids_are_refused() {
        for bad in [
            "c1\n-N EVIL\n-A PREROUTING -j EVIL",
            "c1\" -j ACCEPT",
            "a b",
            "../x",
            "",
        ] {
            assert_eq!(
                check_container_id(bad).unwrap_err().code,
                code::BAD_ARGS,
                "{bad:?}"
            );
        }
        let longest = "a".repeat(MAX_CONTAINER_ID_LEN);
        assert!(check_container_id(&longest).is_ok());
        assert_eq!(comment(&longest).len(), MAX_COMMENT_LEN);
        assert!(check_container_id(&format!("{longest}a")).is_err());
    }

    #[test]
    fn del_fails_when_the_nat_table_cannot_be_read() {
        use cni_net::iptables::IptablesError;
        let ipt = |e| Err(UpdateError::Iptables(e));
        assert!(del_result(ipt(IptablesError::NotFound("ip6tables-save".into()))).is_ok());
        let parse = del_result(ipt(IptablesError::Parse("line 3: unbalanced quote".into())));
        assert_eq!(parse.unwrap_err().code, code::PORTMAP);
        assert!(del_result(Ok(())).is_ok());
    }
}
