//! One iptables rule (its arguments, as `iptables-save` prints them) turned into the
//! nf_tables expressions iptables-nft 1.8 writes for it, in the same order.
//!
//! iptables-nft builds a rule from its parts in a fixed order whatever the order on the command
//! line: interfaces, protocol, source, destination; then each `-m` match in the order given
//! (natively where it has a translation: `tcp`, `udp`, `mark`; through `nft_compat` with the
//! extension's info struct otherwise: `comment`, `multiport`, `addrtype`); then a counter;
//! then the target (a verdict for a chain or `ACCEPT`/`DROP`/`RETURN`, `nft_compat` for the
//! extensions `DNAT`, `MASQUERADE`, `MARK`). Arguments outside that set are
//! [`Unsupported`]: the caller then lets `iptables-restore` write the rule.
//!
//! The structs below are the kernel's `xt_*` info structs (uapi headers), laid out by hand:
//! host-order integers, network-order addresses and ports where the kernel has `__be`
//! fields, padded to `XT_ALIGN` (8 bytes).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::addr::Family;
use crate::nft::{CmpOp, Expr, MetaKey, PayloadBase, Reg, Verdict};

/// A rule the translator does not cover (the reason names the argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not translated in-process: {0}")]
pub struct Unsupported(pub String);

/// The translation of one rule: its expressions and the `-p` protocol its compat
/// extensions may assume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub exprs: Vec<Expr>,
    pub proto: Option<u8>,
}

const XT_MAX_COMMENT_LEN: usize = 256;
const XT_MULTI_PORTS: usize = 15;
const XT_MULTIPORT_DESTINATION: u8 = 1;
const XT_MULTIPORT_SOURCE: u8 = 0;
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

fn xt_align(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn padded(mut info: Vec<u8>) -> Vec<u8> {
    info.resize(xt_align(info.len()), 0);
    info
}

fn unsupported(what: impl Into<String>) -> Unsupported {
    Unsupported(what.into())
}

/// The parts of a rule, gathered before they are emitted in iptables-nft's order.
#[derive(Default)]
struct Parts {
    iif: Option<(String, bool)>,
    oif: Option<(String, bool)>,
    proto: Option<(u8, bool)>,
    src: Option<(IpNetwork, bool)>,
    dst: Option<(IpNetwork, bool)>,
    matches: Vec<Vec<Expr>>,
    target: Option<Vec<Expr>>,
}

/// Reads the arguments one by one; `!` applies to the next option.
struct Args<'a> {
    args: &'a [String],
    at: usize,
}

impl<'a> Args<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let a = self.args.get(self.at)?;
        self.at += 1;
        Some(a)
    }

    fn value(&mut self, option: &str) -> Result<&'a str, Unsupported> {
        self.next()
            .ok_or_else(|| unsupported(format!("{option} without a value")))
    }

    fn peek(&self) -> Option<&'a str> {
        self.args.get(self.at).map(String::as_str)
    }
}

/// Translates the arguments of one rule of `family` (without `-A CHAIN`).
pub fn translate<S: AsRef<str>>(family: Family, args: &[S]) -> Result<Translated, Unsupported> {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let mut a = Args { args: &args, at: 0 };
    let mut p = Parts::default();
    let mut negate = false;
    while let Some(arg) = a.next() {
        if arg == "!" {
            negate = true;
            continue;
        }
        let neg = std::mem::take(&mut negate);
        match arg {
            "-s" | "--source" => p.src = Some((network(family, a.value(arg)?)?, neg)),
            "-d" | "--destination" => p.dst = Some((network(family, a.value(arg)?)?, neg)),
            "-i" | "--in-interface" => p.iif = Some((iface(a.value(arg)?)?, neg)),
            "-o" | "--out-interface" => p.oif = Some((iface(a.value(arg)?)?, neg)),
            "-p" | "--protocol" => p.proto = Some((protocol(a.value(arg)?)?, neg)),
            "-m" | "--match" => {
                if neg {
                    return Err(unsupported("! before -m"));
                }
                let name = a.value(arg)?;
                match name {
                    "comment" | "multiport" | "tcp" | "udp" | "addrtype" | "mark" => {}
                    other => return Err(unsupported(format!("match {other}"))),
                }
                let exprs = match_exprs(name, &mut a, &p)?;
                p.matches.push(exprs);
            }
            "-j" | "--jump" => {
                if neg {
                    return Err(unsupported("! before -j"));
                }
                let target = a.value(arg)?;
                p.target = Some(target_exprs(family, target, &mut a)?);
                if let Some(extra) = a.peek()
                    && extra != "-m"
                {
                    return Err(unsupported(format!("{extra} after the target")));
                }
            }
            other => return Err(unsupported(format!("argument {other}"))),
        }
    }
    if negate {
        return Err(unsupported("a trailing !"));
    }
    Ok(emit(p))
}

fn network(family: Family, text: &str) -> Result<IpNetwork, Unsupported> {
    let net: IpNetwork = match text.parse::<IpNetwork>() {
        Ok(n) => n,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNetwork::from)
            .map_err(|_| unsupported(format!("address {text}")))?,
    };
    if (family == Family::V4) != net.is_ipv4() {
        return Err(unsupported(format!("address {text} in the other family")));
    }
    Ok(net)
}

fn iface(name: &str) -> Result<String, Unsupported> {
    // A `+` wildcard is a prefix match; only exact names are covered.
    if name.is_empty() || name.len() >= 16 || name.ends_with('+') {
        return Err(unsupported(format!("interface {name}")));
    }
    Ok(name.to_string())
}

fn protocol(name: &str) -> Result<u8, Unsupported> {
    match name {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        other => Err(unsupported(format!("protocol {other}"))),
    }
}

fn port(text: &str) -> Result<u16, Unsupported> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| unsupported(format!("port {text}")))
}

fn mark_value(text: &str) -> Result<(u32, u32), Unsupported> {
    let num = |t: &str| {
        let parsed = match t.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => t.parse::<u32>(),
        };
        parsed.map_err(|_| unsupported(format!("mark {text}")))
    };
    match text.split_once('/') {
        Some((v, m)) => Ok((num(v)?, num(m)?)),
        None => Ok((num(text)?, u32::MAX)),
    }
}

fn match_exprs(name: &str, a: &mut Args<'_>, p: &Parts) -> Result<Vec<Expr>, Unsupported> {
    let mut negate = false;
    let mut out = Vec::new();
    match name {
        "comment" => {
            let (Some("--comment"), Some(text)) = (a.next(), a.next()) else {
                return Err(unsupported("comment match without --comment"));
            };
            if text.len() >= XT_MAX_COMMENT_LEN || text.contains('\0') {
                return Err(unsupported("comment longer than 255 bytes"));
            }
            let mut info = text.as_bytes().to_vec();
            info.resize(XT_MAX_COMMENT_LEN, 0);
            out.push(compat_match("comment", 0, info));
        }
        "tcp" | "udp" => {
            let want = if name == "tcp" { 6 } else { 17 };
            if p.proto != Some((want, false)) {
                return Err(unsupported(format!("-m {name} without -p {name}")));
            }
            let mut sport = None;
            let mut dport = None;
            while let Some(opt) = a.peek() {
                match opt {
                    "!" => {
                        negate = true;
                        a.next();
                        continue;
                    }
                    "--dport" | "--destination-port" if !negate => {
                        a.next();
                        dport = Some(port(a.value(opt)?)?);
                    }
                    "--sport" | "--source-port" if !negate => {
                        a.next();
                        sport = Some(port(a.value(opt)?)?);
                    }
                    _ => break,
                }
            }
            if negate {
                return Err(unsupported(format!("inverted {name} match")));
            }
            match (sport, dport) {
                (Some(s), Some(d)) => {
                    let combined = (u32::from(s) << 16) | u32::from(d);
                    out.extend(load_cmp(
                        transport(0, 4),
                        CmpOp::Eq,
                        combined.to_be_bytes().to_vec(),
                    ));
                }
                (Some(s), None) => out.extend(load_cmp(transport(0, 2), CmpOp::Eq, s.to_be_bytes().to_vec())),
                (None, Some(d)) => out.extend(load_cmp(transport(2, 2), CmpOp::Eq, d.to_be_bytes().to_vec())),
                (None, None) => return Err(unsupported(format!("{name} match without a port"))),
            }
        }
        "multiport" => {
            let flags = match a.next() {
                Some("--dports" | "--destination-ports") => XT_MULTIPORT_DESTINATION,
                Some("--sports" | "--source-ports") => XT_MULTIPORT_SOURCE,
                other => return Err(unsupported(format!("multiport option {other:?}"))),
            };
            if !matches!(p.proto, Some((6 | 17, false))) {
                return Err(unsupported("multiport without -p tcp or udp"));
            }
            let list = a.next().ok_or_else(|| unsupported("multiport without ports"))?;
            let ports = list.split(',').map(port).collect::<Result<Vec<u16>, _>>()?;
            if ports.is_empty() || ports.len() > XT_MULTI_PORTS {
                return Err(unsupported(format!("multiport list {list}")));
            }
            // struct xt_multiport_v1 { u8 flags; u8 count; u16 ports[15]; u8 pflags[15]; u8 invert; }
            let mut info = vec![flags, ports.len() as u8];
            for i in 0..XT_MULTI_PORTS {
                info.extend_from_slice(&ports.get(i).copied().unwrap_or(0).to_ne_bytes());
            }
            info.extend_from_slice(&[0u8; XT_MULTI_PORTS]);
            info.push(0);
            out.push(compat_match("multiport", 1, info));
        }
        "addrtype" => {
            let (mut source, mut dest, mut flags) = (0u16, 0u16, 0u32);
            while let Some(opt) = a.peek() {
                match opt {
                    "!" => {
                        negate = true;
                        a.next();
                    }
                    "--dst-type" | "--src-type" => {
                        a.next();
                        let types = addr_types(a.value(opt)?)?;
                        let is_dst = opt == "--dst-type";
                        if is_dst {
                            dest = types;
                        } else {
                            source = types;
                        }
                        if std::mem::take(&mut negate) {
                            flags |= if is_dst { 2 } else { 1 }; // XT_ADDRTYPE_INVERT_DEST / _SOURCE
                        }
                    }
                    _ => break,
                }
            }
            if negate || (source == 0 && dest == 0) {
                return Err(unsupported("addrtype match"));
            }
            // struct xt_addrtype_info_v1 { u16 source; u16 dest; u32 flags; }
            let mut info = source.to_ne_bytes().to_vec();
            info.extend_from_slice(&dest.to_ne_bytes());
            info.extend_from_slice(&flags.to_ne_bytes());
            out.push(compat_match("addrtype", 1, info));
        }
        "mark" => {
            if a.peek() == Some("!") {
                a.next();
                negate = true;
            }
            let (Some("--mark"), Some(text)) = (a.next(), a.next()) else {
                return Err(unsupported("mark match without --mark"));
            };
            let (value, mask) = mark_value(text)?;
            out.push(Expr::Meta {
                key: MetaKey::Mark,
                dreg: Reg::R1,
            });
            if mask != u32::MAX {
                out.push(Expr::Bitwise {
                    sreg: Reg::R1,
                    dreg: Reg::R1,
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                });
            }
            let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
            out.push(Expr::Cmp {
                sreg: Reg::R1,
                op,
                data: value.to_ne_bytes().to_vec(),
            });
        }
        other => return Err(unsupported(format!("match {other}"))),
    }
    Ok(out)
}

fn addr_types(list: &str) -> Result<u16, Unsupported> {
    let mut bits = 0u16;
    for t in list.split(',') {
        bits |= match t {
            "UNSPEC" => 1,
            "UNICAST" => 1 << 1,
            "LOCAL" => 1 << 2,
            "BROADCAST" => 1 << 3,
            "ANYCAST" => 1 << 4,
            "MULTICAST" => 1 << 5,
            "BLACKHOLE" => 1 << 6,
            "UNREACHABLE" => 1 << 7,
            "PROHIBIT" => 1 << 8,
            "THROW" => 1 << 9,
            "NAT" => 1 << 10,
            "XRESOLVE" => 1 << 11,
            other => return Err(unsupported(format!("address type {other}"))),
        };
    }
    Ok(bits)
}

fn target_exprs(family: Family, target: &str, a: &mut Args<'_>) -> Result<Vec<Expr>, Unsupported> {
    let verdict = |v| Ok(vec![Expr::Verdict(v)]);
    match target {
        "ACCEPT" => verdict(Verdict::Accept),
        "DROP" => verdict(Verdict::Drop),
        "RETURN" => verdict(Verdict::Return),
        "MASQUERADE" => {
            let info = match family {
                // struct nf_nat_ipv4_multi_range_compat with rangesize 1 and an empty range.
                Family::V4 => {
                    let mut info = 1u32.to_ne_bytes().to_vec();
                    info.resize(20, 0);
                    info
                }
                // struct nf_nat_range, empty.
                Family::V6 => vec![0; 40],
            };
            Ok(vec![compat_target("MASQUERADE", 0, info)])
        }
        "MARK" => {
            let (Some("--set-xmark"), Some(text)) = (a.next(), a.next()) else {
                return Err(unsupported("MARK without --set-xmark"));
            };
            let (mark, mask) = mark_value(text)?;
            // struct xt_mark_tginfo2 { u32 mark, mask; }
            let mut info = mark.to_ne_bytes().to_vec();
            info.extend_from_slice(&mask.to_ne_bytes());
            Ok(vec![compat_target("MARK", 2, info)])
        }
        "DNAT" => {
            let (Some("--to-destination"), Some(text)) = (a.next(), a.next()) else {
                return Err(unsupported("DNAT without --to-destination"));
            };
            let (addr, port) = nat_destination(family, text)?;
            // struct nf_nat_range2 { u32 flags; nf_inet_addr min_addr, max_addr;
            //   be16 min_proto, max_proto, base_proto; }
            let mut flags = NF_NAT_RANGE_MAP_IPS;
            if port.is_some() {
                flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
            }
            let mut addr16 = match addr {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            addr16.resize(16, 0);
            let mut info = flags.to_ne_bytes().to_vec();
            info.extend_from_slice(&addr16);
            info.extend_from_slice(&addr16);
            let p = port.unwrap_or(0).to_be_bytes();
            info.extend_from_slice(&p);
            info.extend_from_slice(&p);
            info.extend_from_slice(&[0, 0]);
            Ok(vec![compat_target("DNAT", 2, info)])
        }
        chain if is_chain_name(chain) => verdict(Verdict::Jump(chain.to_string())),
        other => Err(unsupported(format!("target {other}"))),
    }
}

/// A user chain name (iptables: up to 28 characters, not an option, not upper-case-only
/// extension names above).
fn is_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 28
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_graphic())
}

fn nat_destination(family: Family, text: &str) -> Result<(IpAddr, Option<u16>), Unsupported> {
    let bad = || unsupported(format!("DNAT destination {text}"));
    let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, rest) = rest.split_once(']').ok_or_else(bad)?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(port(p)?),
            None if rest.is_empty() => None,
            None => return Err(bad()),
        };
        (addr, port)
    } else if family == Family::V4 {
        match text.split_once(':') {
            Some((addr, p)) => (addr, Some(port(p)?)),
            None => (text, None),
        }
    } else {
        (text, None)
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if (family == Family::V4) != addr.is_ipv4() || text.contains('-') {
        return Err(bad());
    }
    Ok((addr, port))
}

fn compat_match(name: &str, rev: u32, info: Vec<u8>) -> Expr {
    Expr::Match {
        name: name.to_string(),
        rev,
        info: padded(info),
    }
}

fn compat_target(name: &str, rev: u32, info: Vec<u8>) -> Expr {
    Expr::Target {
        name: name.to_string(),
        rev,
        info: padded(info),
    }
}

fn transport(offset: u32, len: u32) -> Expr {
    Expr::Payload {
        base: PayloadBase::Transport,
        offset,
        len,
        dreg: Reg::R1,
    }
}

fn load_cmp(load: Expr, op: CmpOp, data: Vec<u8>) -> [Expr; 2] {
    [
        load,
        Expr::Cmp {
            sreg: Reg::R1,
            op,
            data,
        },
    ]
}

/// iptables-nft's address match: the payload only as long as the prefix's whole bytes when
/// the mask ends on a byte, the whole address with a bitwise mask otherwise.
fn addr_exprs(net: IpNetwork, source: bool, negate: bool) -> Vec<Expr> {
    let (offset, bytes, mask) = match net {
        IpNetwork::V4(n) => (
            if source { 12 } else { 16 },
            n.network().octets().to_vec(),
            n.mask().octets().to_vec(),
        ),
        IpNetwork::V6(n) => (
            if source { 8 } else { 24 },
            n.network().octets().to_vec(),
            n.mask().octets().to_vec(),
        ),
    };
    let full = mask.iter().take_while(|b| **b == 0xff).count();
    let partial = mask[full..].iter().any(|b| *b != 0);
    let len = if partial { mask.len() } else { full };
    let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
    let mut out = vec![Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len: len as u32,
        dreg: Reg::R1,
    }];
    if partial {
        out.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: mask.clone(),
            xor: vec![0; mask.len()],
        });
    }
    out.push(Expr::Cmp {
        sreg: Reg::R1,
        op,
        data: bytes[..len].to_vec(),
    });
    out
}

fn iface_exprs(key: MetaKey, name: &str, negate: bool) -> [Expr; 2] {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    load_cmp(
        Expr::Meta { key, dreg: Reg::R1 },
        if negate { CmpOp::Neq } else { CmpOp::Eq },
        data,
    )
}

fn emit(p: Parts) -> Translated {
    let mut exprs = Vec::new();
    if let Some((name, neg)) = &p.iif {
        exprs.extend(iface_exprs(MetaKey::IifName, name, *neg));
    }
    if let Some((name, neg)) = &p.oif {
        exprs.extend(iface_exprs(MetaKey::OifName, name, *neg));
    }
    if let Some((proto, neg)) = p.proto {
        exprs.extend(load_cmp(
            Expr::Meta {
                key: MetaKey::L4Proto,
                dreg: Reg::R1,
            },
            if neg { CmpOp::Neq } else { CmpOp::Eq },
            vec![proto],
        ));
    }
    // A match of every address (`0.0.0.0/0` without `!`) is no match at all.
    for (net, source) in [(p.src, true), (p.dst, false)] {
        if let Some((net, neg)) = net
            && (net.prefix() != 0 || neg)
        {
            exprs.extend(addr_exprs(net, source, neg));
        }
    }
    for m in p.matches {
        exprs.extend(m);
    }
    exprs.push(Expr::Counter);
    exprs.extend(p.target.unwrap_or_default());
    Translated {
        exprs,
        proto: p.proto.filter(|(_, neg)| !neg).map(|(proto, _)| proto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(family: Family, args: &str) -> Translated {
        let args: Vec<String> = crate::iptables::split_args(args).unwrap();
        translate(family, &args).unwrap()
    }

    #[test]
    fn aligned_prefix_loads_only_its_bytes() {
        let r = t(
            Family::V4,
            "-s 10.222.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        );
        assert_eq!(r.proto, Some(6));
        assert_eq!(
            r.exprs[2],
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 12,
                len: 3,
                dreg: Reg::R1
            }
        );
        assert_eq!(
            r.exprs.last(),
            Some(&Expr::Verdict(Verdict::Jump("CNI-HOSTPORT-SETMARK".into())))
        );
        assert_eq!(r.exprs[r.exprs.len() - 2], Expr::Counter);
    }

    #[test]
    fn unaligned_prefix_masks_the_whole_address() {
        let r = t(
            Family::V4,
            "! -d 224.0.0.0/4 -m comment --comment x -j MASQUERADE",
        );
        assert!(matches!(&r.exprs[1], Expr::Bitwise { mask, .. } if mask == &[0xf0, 0, 0, 0]));
        assert!(matches!(&r.exprs[2], Expr::Cmp { op: CmpOp::Neq, data, .. } if data == &[224, 0, 0, 0]));
        assert!(
            matches!(&r.exprs[3], Expr::Match { name, info, .. } if name == "comment" && info.len() == 256)
        );
        assert!(
            matches!(&r.exprs[5], Expr::Target { name, info, .. } if name == "MASQUERADE" && info.len() == 24)
        );
    }

    #[test]
    fn compat_structs_have_the_kernel_sizes() {
        let r = t(
            Family::V6,
            "-p udp -m multiport --dports 53,5353 -m addrtype --dst-type LOCAL -j DNAT --to-destination [fd00:222::5]:53",
        );
        let sizes: Vec<(String, usize)> = r
            .exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Match { name, info, .. } | Expr::Target { name, info, .. } => {
                    Some((name.clone(), info.len()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            sizes,
            [
                ("multiport".to_string(), 48),
                ("addrtype".to_string(), 8),
                ("DNAT".to_string(), 48)
            ]
        );
    }

    #[test]
    fn what_is_not_covered_says_so() {
        for args in [
            "-p sctp -m sctp --dport 1 -j ACCEPT",
            "-m conntrack --ctstate NEW -j ACCEPT",
            "-i veth+ -j ACCEPT",
            "-j SNAT --to-source 10.0.0.1",
            "-s 10.0.0.0/8 -j DNAT --to-destination 10.0.0.1-10.0.0.5",
        ] {
            let v: Vec<String> = crate::iptables::split_args(args).unwrap();
            assert!(translate(Family::V4, &v).is_err(), "{args}");
        }
    }
}
