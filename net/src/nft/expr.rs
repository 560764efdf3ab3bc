//! nf_tables expressions: the typed model and its netlink encoding.
//!
//! A rule is a list of expressions run in order over a small register file. Matches load a
//! packet field into a register (`payload`, `meta`, `fib`, `ct`) and compare it (`cmp`,
//! `lookup`); actions consume registers (`nat`, `meta set`) or set the verdict (`immediate`).
//! [`crate::nft::Rule`]'s builder methods emit the same sequences the `nft` tool emits, so
//! `nft list ruleset` prints rules made here the way it prints its own.

use super::wire::{Attrs, attrs, be_u32, string};

/// A register: [`Reg::VERDICT`], the four legacy 16-byte registers [`Reg::R1`]..`R4`, or the
/// 4-byte registers [`Reg::r32`] that overlay them (used for concatenated set keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u32);

impl Reg {
    /// `NFT_REG_VERDICT`.
    pub const VERDICT: Reg = Reg(0);
    /// `NFT_REG_1`, the same storage as `r32(0)..r32(3)`.
    pub const R1: Reg = Reg(1);
    /// `NFT_REG_2`, the same storage as `r32(4)..r32(7)`.
    pub const R2: Reg = Reg(2);

    /// `NFT_REG32_00 + n`, the n-th 4-byte register.
    pub const fn r32(n: u32) -> Reg {
        Reg(8 + n)
    }
}

/// Where a payload expression reads from (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The link-layer (Ethernet) header.
    LinkLayer = 0,
    /// The network (IPv4/IPv6) header.
    Network = 1,
    /// The transport (TCP/UDP/...) header.
    Transport = 2,
}

/// Meta keys (`enum nft_meta_keys`) the plugins use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Ethertype of the packet (`meta protocol`), 2 bytes big endian.
    Protocol = 1,
    /// Packet mark, 4 bytes host order.
    Mark = 3,
    /// Input interface name, 16 bytes.
    IifName = 6,
    /// Output interface name, 16 bytes.
    OifName = 7,
    /// Netfilter family of the packet (`NFPROTO_*`), 1 byte.
    NfProto = 15,
    /// Layer 4 protocol number, 1 byte.
    L4Proto = 16,
}

/// Comparison operators (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `<`
    Lt = 2,
    /// `<=`
    Lte = 3,
    /// `>`
    Gt = 4,
    /// `>=`
    Gte = 5,
}

/// What a `fib` lookup returns (`enum nft_fib_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibResult {
    /// Output interface index.
    Oif = 1,
    /// Output interface name.
    OifName = 2,
    /// Route type of the address (`RTN_LOCAL`, `RTN_UNICAST`, ...), 4 bytes host order.
    AddrType = 3,
}

/// `NFTA_FIB_F_SADDR`: look up the source address.
pub const FIB_F_SADDR: u32 = 1 << 0;
/// `NFTA_FIB_F_DADDR`: look up the destination address.
pub const FIB_F_DADDR: u32 = 1 << 1;
/// `NFTA_FIB_F_IIF`: restrict the lookup to the input interface.
pub const FIB_F_IIF: u32 = 1 << 3;
/// `RTN_LOCAL`: the address is one of this host's (what `fib daddr type local` compares with).
pub const RTN_LOCAL: u32 = 2;

/// Conntrack keys (`enum nft_ct_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// State bitmask, see [`ct_state`].
    State = 0,
    /// Conntrack mark.
    Mark = 3,
}

/// Bits of the `ct state` bitmask.
pub mod ct_state {
    /// `invalid`
    pub const INVALID: u32 = 1;
    /// `established`
    pub const ESTABLISHED: u32 = 1 << 1;
    /// `related`
    pub const RELATED: u32 = 1 << 2;
    /// `new`
    pub const NEW: u32 = 1 << 3;
    /// `untracked`
    pub const UNTRACKED: u32 = 1 << 6;
}

/// NAT kinds (`enum nft_nat_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Source NAT.
    Snat = 0,
    /// Destination NAT.
    Dnat = 1,
}

/// `NF_NAT_RANGE_PROTO_SPECIFIED`: a port (range) is given. The kernel infers it from the
/// register attributes too; `nft` sends it explicitly and so do we, so listings match.
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 1 << 1;

/// A rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`: the packet leaves this hook.
    Accept,
    /// `drop`
    Drop,
    /// `continue`: go on with the next rule (the default after a rule without verdict).
    Continue,
    /// `return`: back to the calling chain, or the policy in a base chain.
    Return,
    /// `jump <chain>`: run `chain`, then come back.
    Jump(String),
    /// `goto <chain>`: run `chain` and do not come back.
    Goto(String),
}

impl Verdict {
    /// The verdict code (`NF_ACCEPT`, `NF_DROP` or `enum nft_verdicts`).
    pub fn code(&self) -> i32 {
        match self {
            Verdict::Accept => 1,
            Verdict::Drop => 0,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }

    fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// Encodes `NFTA_DATA_VERDICT` into `a` (inside an `nft_data` nest).
    pub(crate) fn encode_data(&self, a: &mut Attrs) {
        a.nest(NFTA_DATA_VERDICT, |a| {
            a.put_u32(NFTA_VERDICT_CODE, self.code() as u32);
            if let Some(chain) = self.chain() {
                a.put_str(NFTA_VERDICT_CHAIN, chain);
            }
        });
    }
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expr {
    /// Load `len` bytes at `offset` of a header into `dreg`.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    /// Load packet metadata into `dreg`.
    Meta { key: MetaKey, dreg: Reg },
    /// Set packet metadata from `sreg` (`meta mark set ...`).
    MetaSet { key: MetaKey, sreg: Reg },
    /// Compare `sreg` with `data`; the rule stops here when the comparison fails.
    Cmp { sreg: Reg, op: CmpOp, data: Vec<u8> },
    /// `dreg = (sreg & mask) ^ xor`; `mask` and `xor` have the operand's length.
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Route lookup (`fib daddr type`): `flags` are `FIB_F_*`.
    Fib {
        flags: u32,
        result: FibResult,
        dreg: Reg,
    },
    /// Load conntrack data into `dreg`.
    Ct { key: CtKey, dreg: Reg },
    /// Set membership (`dreg` = None) or map lookup (`dreg` = the data register, or
    /// [`Reg::VERDICT`] for a verdict map). `set_id` names a set added in the same batch.
    Lookup {
        set: String,
        set_id: Option<u32>,
        sreg: Reg,
        dreg: Option<Reg>,
        invert: bool,
    },
    /// Load constant data into a data register.
    ImmediateData { dreg: Reg, data: Vec<u8> },
    /// Set the verdict.
    Verdict(Verdict),
    /// Source or destination NAT to the address in `addr` and the port in `port` (registers
    /// loaded before); `family` is the `NFPROTO_*` of the address.
    Nat {
        kind: NatKind,
        family: u8,
        addr: Option<Reg>,
        port: Option<Reg>,
        flags: u32,
    },
    /// Masquerade: source NAT to the address of the outgoing interface.
    Masquerade,
    /// Count packets and bytes.
    Counter,
    /// An xtables match run through `nft_compat` (what iptables-nft writes for the matches it
    /// has no native translation for): the extension's name, revision and its info struct as
    /// the kernel module expects it (padded to 8 bytes).
    Match { name: String, rev: u32, info: Vec<u8> },
    /// An xtables target run through `nft_compat` (iptables-nft's `DNAT`, `MASQUERADE`,
    /// `MARK`): name, revision and info struct.
    Target { name: String, rev: u32, info: Vec<u8> },
}

// enum nft_expr_attributes
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_data_attributes
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_verdict_attributes
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

impl Expr {
    /// The kernel's name of the expression type.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Fib { .. } => "fib",
            Expr::Ct { .. } => "ct",
            Expr::Lookup { .. } => "lookup",
            Expr::ImmediateData { .. } | Expr::Verdict(_) => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::Counter => "counter",
            Expr::Match { .. } => "match",
            Expr::Target { .. } => "target",
        }
    }

    /// Encodes the expression as one `NFTA_LIST_ELEM` content: name and data.
    pub(crate) fn encode(&self, a: &mut Attrs) {
        a.put_str(NFTA_EXPR_NAME, self.name());
        a.nest(NFTA_EXPR_DATA, |a| self.encode_data(a));
    }

    fn encode_data(&self, a: &mut Attrs) {
        match self {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                // enum nft_payload_attributes: DREG 1, BASE 2, OFFSET 3, LEN 4
                a.put_u32(1, dreg.0);
                a.put_u32(2, *base as u32);
                a.put_u32(3, *offset);
                a.put_u32(4, *len);
            }
            Expr::Meta { key, dreg } => {
                // enum nft_meta_attributes: DREG 1, KEY 2, SREG 3
                a.put_u32(2, *key as u32);
                a.put_u32(1, dreg.0);
            }
            Expr::MetaSet { key, sreg } => {
                a.put_u32(2, *key as u32);
                a.put_u32(3, sreg.0);
            }
            Expr::Cmp { sreg, op, data } => {
                // enum nft_cmp_attributes: SREG 1, OP 2, DATA 3
                a.put_u32(1, sreg.0);
                a.put_u32(2, *op as u32);
                a.nest(3, |a| a.put(NFTA_DATA_VALUE, data));
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                // enum nft_bitwise_attributes: SREG 1, DREG 2, LEN 3, MASK 4, XOR 5
                a.put_u32(1, sreg.0);
                a.put_u32(2, dreg.0);
                a.put_u32(3, mask.len() as u32);
                a.nest(4, |a| a.put(NFTA_DATA_VALUE, mask));
                a.nest(5, |a| a.put(NFTA_DATA_VALUE, xor));
            }
            Expr::Fib { flags, result, dreg } => {
                // enum nft_fib_attributes: DREG 1, RESULT 2, FLAGS 3
                a.put_u32(1, dreg.0);
                a.put_u32(2, *result as u32);
                a.put_u32(3, *flags);
            }
            Expr::Ct { key, dreg } => {
                // enum nft_ct_attributes: DREG 1, KEY 2
                a.put_u32(1, dreg.0);
                a.put_u32(2, *key as u32);
            }
            Expr::Lookup {
                set,
                set_id,
                sreg,
                dreg,
                invert,
            } => {
                // enum nft_lookup_attributes: SET 1, SREG 2, DREG 3, SET_ID 4, FLAGS 5
                a.put_str(1, set);
                a.put_u32(2, sreg.0);
                if let Some(dreg) = dreg {
                    a.put_u32(3, dreg.0);
                }
                if let Some(id) = set_id {
                    a.put_u32(4, *id);
                }
                if *invert {
                    a.put_u32(5, 1); // NFT_LOOKUP_F_INV
                }
            }
            Expr::ImmediateData { dreg, data } => {
                // enum nft_immediate_attributes: DREG 1, DATA 2
                a.put_u32(1, dreg.0);
                a.nest(2, |a| a.put(NFTA_DATA_VALUE, data));
            }
            Expr::Verdict(verdict) => {
                a.put_u32(1, Reg::VERDICT.0);
                a.nest(2, |a| verdict.encode_data(a));
            }
            Expr::Nat {
                kind,
                family,
                addr,
                port,
                flags,
            } => {
                // enum nft_nat_attributes: TYPE 1, FAMILY 2, REG_ADDR_MIN 3, REG_ADDR_MAX 4,
                // REG_PROTO_MIN 5, REG_PROTO_MAX 6, FLAGS 7
                a.put_u32(1, *kind as u32);
                a.put_u32(2, u32::from(*family));
                if let Some(addr) = addr {
                    a.put_u32(3, addr.0);
                }
                if let Some(port) = port {
                    a.put_u32(5, port.0);
                }
                if *flags != 0 {
                    a.put_u32(7, *flags);
                }
            }
            Expr::Match { name, rev, info } | Expr::Target { name, rev, info } => {
                // enum nft_match_attributes / nft_target_attributes: NAME 1, REV 2, INFO 3
                a.put_str(1, name);
                a.put_u32(2, *rev);
                a.put(3, info);
            }
            Expr::Masquerade | Expr::Counter => {}
        }
    }

    /// Decodes one `NFTA_LIST_ELEM` of a listed rule (as the kernel dumps it) back into the
    /// model; `None` for an expression type or attribute this model does not cover, so a
    /// caller can tell "a rule of ours" from "a rule it cannot read". Counter values are
    /// dropped: two rules that differ only in what they counted are the same rule.
    pub(crate) fn decode(elem: &[u8]) -> Option<Expr> {
        let mut name = None;
        let mut data: &[u8] = &[];
        for (k, v) in attrs(elem) {
            match k {
                NFTA_EXPR_NAME => name = Some(string(v)),
                NFTA_EXPR_DATA => data = v,
                _ => {}
            }
        }
        let get = |kind: u16| attrs(data).find(|(k, _)| *k == kind).map(|(_, v)| v);
        let u32_of = |kind: u16| get(kind).and_then(be_u32);
        let value_of = |kind: u16| {
            get(kind).and_then(|nest| {
                attrs(nest)
                    .find(|(k, _)| *k == NFTA_DATA_VALUE)
                    .map(|(_, v)| v.to_vec())
            })
        };
        let expr = match name?.as_str() {
            "payload" => Expr::Payload {
                dreg: Reg(u32_of(1)?),
                base: match u32_of(2)? {
                    0 => PayloadBase::LinkLayer,
                    1 => PayloadBase::Network,
                    2 => PayloadBase::Transport,
                    _ => return None,
                },
                offset: u32_of(3)?,
                len: u32_of(4)?,
            },
            "meta" => {
                let key = match u32_of(2)? {
                    1 => MetaKey::Protocol,
                    3 => MetaKey::Mark,
                    6 => MetaKey::IifName,
                    7 => MetaKey::OifName,
                    15 => MetaKey::NfProto,
                    16 => MetaKey::L4Proto,
                    _ => return None,
                };
                match (u32_of(1), u32_of(3)) {
                    (Some(dreg), None) => Expr::Meta { key, dreg: Reg(dreg) },
                    (None, Some(sreg)) => Expr::MetaSet { key, sreg: Reg(sreg) },
                    _ => return None,
                }
            }
            "cmp" => Expr::Cmp {
                sreg: Reg(u32_of(1)?),
                op: match u32_of(2)? {
                    0 => CmpOp::Eq,
                    1 => CmpOp::Neq,
                    2 => CmpOp::Lt,
                    3 => CmpOp::Lte,
                    4 => CmpOp::Gt,
                    5 => CmpOp::Gte,
                    _ => return None,
                },
                data: value_of(3)?,
            },
            "bitwise" => {
                // NFTA_BITWISE_OP (6): only the boolean form (0) is modelled.
                if u32_of(6).is_some_and(|op| op != 0) {
                    return None;
                }
                Expr::Bitwise {
                    sreg: Reg(u32_of(1)?),
                    dreg: Reg(u32_of(2)?),
                    mask: value_of(4)?,
                    xor: value_of(5)?,
                }
            }
            "immediate" => {
                let dreg = u32_of(1)?;
                let nest = get(2)?;
                if dreg == Reg::VERDICT.0 {
                    let verdict = attrs(nest)
                        .find(|(k, _)| *k == NFTA_DATA_VERDICT)
                        .map(|(_, v)| v)?;
                    let code = attrs(verdict)
                        .find(|(k, _)| *k == NFTA_VERDICT_CODE)
                        .and_then(|(_, v)| be_u32(v))? as i32;
                    let chain = attrs(verdict)
                        .find(|(k, _)| *k == NFTA_VERDICT_CHAIN)
                        .map(|(_, v)| string(v));
                    Expr::Verdict(match (code, chain) {
                        (1, None) => Verdict::Accept,
                        (0, None) => Verdict::Drop,
                        (-1, None) => Verdict::Continue,
                        (-5, None) => Verdict::Return,
                        (-3, Some(c)) => Verdict::Jump(c),
                        (-4, Some(c)) => Verdict::Goto(c),
                        _ => return None,
                    })
                } else {
                    Expr::ImmediateData {
                        dreg: Reg(dreg),
                        data: attrs(nest)
                            .find(|(k, _)| *k == NFTA_DATA_VALUE)
                            .map(|(_, v)| v.to_vec())?,
                    }
                }
            }
            "counter" => Expr::Counter,
            "masq" if data.is_empty() => Expr::Masquerade,
            kind @ ("match" | "target") => {
                let name = string(get(1)?);
                let rev = u32_of(2)?;
                let info = get(3)?.to_vec();
                if kind == "match" {
                    Expr::Match { name, rev, info }
                } else {
                    Expr::Target { name, rev, info }
                }
            }
            _ => return None,
        };
        Some(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(e: &Expr) -> Vec<u8> {
        let mut a = Attrs::new();
        e.encode(&mut a);
        a.buf
    }

    /// `[ payload load 4b @ network header + 12 => reg 1 ]`, byte for byte what
    /// `nft --debug=mnl` shows for `ip saddr ...`.
    #[test]
    fn payload_golden() {
        let e = Expr::Payload {
            base: PayloadBase::Network,
            offset: 12,
            len: 4,
            dreg: Reg::R1,
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0,
            36, 0, 2, 0x80,
              8, 0, 1, 0, 0, 0, 0, 1,
              8, 0, 2, 0, 0, 0, 0, 1,
              8, 0, 3, 0, 0, 0, 0, 12,
              8, 0, 4, 0, 0, 0, 0, 4,
        ];
        assert_eq!(encoded(&e), want);
    }

    /// `[ cmp eq reg 1 0x0500de0a ]` for `10.222.0.5`.
    #[test]
    fn cmp_golden() {
        let e = Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: vec![10, 222, 0, 5],
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            8, 0, 1, 0, b'c', b'm', b'p', 0,
            32, 0, 2, 0x80,
              8, 0, 1, 0, 0, 0, 0, 1,
              8, 0, 2, 0, 0, 0, 0, 0,
              12, 0, 3, 0x80,
                8, 0, 1, 0, 10, 222, 0, 5,
        ];
        assert_eq!(encoded(&e), want);
    }

    /// `goto masq_checks`: immediate to the verdict register with a nested verdict.
    #[test]
    fn goto_verdict_golden() {
        let e = Expr::Verdict(Verdict::Goto("masq".into()));
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            14, 0, 1, 0, b'i', b'm', b'm', b'e', b'd', b'i', b'a', b't', b'e', 0, 0, 0,
            40, 0, 2, 0x80,
              8, 0, 1, 0, 0, 0, 0, 0,
              28, 0, 2, 0x80,
                24, 0, 2, 0x80,
                  8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfc,
                  9, 0, 2, 0, b'm', b'a', b's', b'q', 0, 0, 0, 0,
        ];
        assert_eq!(encoded(&e), want);
    }

    /// `[ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]`
    #[test]
    fn dnat_golden() {
        let e = Expr::Nat {
            kind: NatKind::Dnat,
            family: 2,
            addr: Some(Reg::R1),
            port: Some(Reg::R2),
            flags: NAT_RANGE_PROTO_SPECIFIED,
        };
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            8, 0, 1, 0, b'n', b'a', b't', 0,
            44, 0, 2, 0x80,
              8, 0, 1, 0, 0, 0, 0, 1,
              8, 0, 2, 0, 0, 0, 0, 2,
              8, 0, 3, 0, 0, 0, 0, 1,
              8, 0, 5, 0, 0, 0, 0, 2,
              8, 0, 7, 0, 0, 0, 0, 2,
        ];
        assert_eq!(encoded(&e), want);
    }

    /// `masq` has an empty data nest, as libnftnl sends it.
    #[test]
    fn masquerade_golden() {
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            9, 0, 1, 0, b'm', b'a', b's', b'q', 0, 0, 0, 0,
            4, 0, 2, 0x80,
        ];
        assert_eq!(encoded(&Expr::Masquerade), want);
    }
}
