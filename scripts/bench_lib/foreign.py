"""Foreign state of a busy host, put into a throw-away host namespace (`scripts/bench --busy`).

A real host is not empty when a runtime calls the plugins: other software's rules sit in
iptables-nft's nat table, other nftables tables are loaded, and the conntrack table holds the
flows of everything running. Whatever a plugin lists, dumps or re-reads grows with that
state, so the busy figures show the cost that does not depend on the plugin's own work.

What `Foreign.populate(host)` makes, inside the namespace only (removed with it):
  - iptables (nat): chain FOREIGN-DNAT with `rules - postrouting` DNAT rules, jumped to
    from PREROUTING and OUTPUT, and `postrouting` MASQUERADE rules in POSTROUTING, as a
    container engine of another vendor would have them; one iptables-restore;
  - nftables: `tables` tables `inet foreign_<n>`, each with an input filter chain of a few
    rules; one `nft -f`;
  - conntrack: `conntrack` UDP entries (10.222.240.0/20 <-> 10.222.224.0/20), written over
    ctnetlink from this process (the `conntrack` tool would need one exec per entry).

Addresses are in 10.222.0.0/16, none of them routed anywhere. Host mode
(bench_lib/hostmode.py) puts the same state, under names of its own, into the machine's own
namespace, and uses conntrack_udp_flows / delete_conntrack_flows to take the entries out again.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_TIMEOUT = 1, 2, 7
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
IPPROTO_UDP = 17


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _tuple(kind: int, src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    return _nest(kind,
                 _nest(CTA_TUPLE_IP, _attr(CTA_IP_V4_SRC, src), _attr(CTA_IP_V4_DST, dst)),
                 _nest(CTA_TUPLE_PROTO, _attr(CTA_PROTO_NUM, bytes([IPPROTO_UDP])),
                       _attr(CTA_PROTO_SRC_PORT, struct.pack(">H", sport)),
                       _attr(CTA_PROTO_DST_PORT, struct.pack(">H", dport))))


def _ct_new(seq: int, i: int, ack: bool) -> bytes:
    """IPCTNL_MSG_CT_NEW of UDP flow number `i` (one per source address and port)."""
    client = bytes([10, 222, 240 + (i >> 16 & 0xF), i >> 8 & 0xFF])
    server = bytes([10, 222, 224 + (i >> 12 & 0xF), 1 + (i & 0x7F)])
    sport = 1024 + (i & 0xFFF) * 7 % 60000
    body = (struct.pack("=BBH", socket.AF_INET, 0, 0)
            + _tuple(CTA_TUPLE_ORIG, client, server, sport, 53)
            + _tuple(CTA_TUPLE_REPLY, server, client, 53, sport)
            + _attr(CTA_TIMEOUT, struct.pack(">I", 3600)))
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (NLM_F_ACK if ack else 0)
    msg_type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body


def add_conntrack_entries(count: int, batch: int = 200) -> int:
    """Adds `count` UDP conntrack entries in the calling thread's namespace; returns how many
    the kernel refused (0 expected; nf_conntrack_max bounds the table)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    refused = 0
    try:
        s.bind((0, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        seq = 0
        for start in range(0, count, batch):
            n = min(batch, count - start)
            msgs = [_ct_new(seq + k + 1, start + k, k == n - 1) for k in range(n)]
            seq += n
            s.send(b"".join(msgs))
            # Errors come for refused messages, and one ACK for the last (asked for).
            while True:
                data = s.recv(1 << 16)
                done = False
                off = 0
                while off + 16 <= len(data):
                    length, mtype, _, mseq, _ = struct.unpack_from("=IHHII", data, off)
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + 16)
                        if err != 0:
                            refused += 1
                        if mseq == seq:
                            done = True
                    off += (length + 3) & ~3
                if done:
                    break
    finally:
        s.close()
    return refused


NLM_F_DUMP = 0x300
NLMSG_DONE = 3
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2


def _attrs(data: bytes, off: int, end: int) -> dict:
    out = {}
    while off + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & ~NLA_F_NESTED] = (off + 4, off + length)
        off += (length + 3) & ~3
    return out


def conntrack_udp_flows(src_net: tuple, dst_net: tuple) -> list:
    """(src, dst, sport, dport) of the IPv4 UDP conntrack entries of the calling thread's
    namespace whose original source is in `src_net` and destination in `dst_net`, each an
    (address bytes, prefix length) pair; one ctnetlink dump."""
    def inside(addr: bytes, net: tuple) -> bool:
        a, = struct.unpack(">I", addr)
        n, = struct.unpack(">I", net[0])
        mask = (0xFFFFFFFF << (32 - net[1])) & 0xFFFFFFFF
        return a & mask == n & mask

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    flows = []
    try:
        s.bind((0, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)
        s.send(struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET,
                           NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        done = False
        while not done:
            data = s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, _, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if mtype == NLMSG_DONE:
                    done = True
                elif mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err:
                        raise OSError(-err, "conntrack dump: %s" % os.strerror(-err))
                    done = True
                else:
                    top = _attrs(data, off + 20, off + length)
                    if CTA_TUPLE_ORIG in top:
                        t = _attrs(data, *top[CTA_TUPLE_ORIG])
                        ip = _attrs(data, *t[CTA_TUPLE_IP]) if CTA_TUPLE_IP in t else {}
                        pr = _attrs(data, *t[CTA_TUPLE_PROTO]) if CTA_TUPLE_PROTO in t else {}
                        if CTA_IP_V4_SRC in ip and CTA_PROTO_NUM in pr \
                                and data[pr[CTA_PROTO_NUM][0]] == IPPROTO_UDP:
                            src = data[ip[CTA_IP_V4_SRC][0]:ip[CTA_IP_V4_SRC][0] + 4]
                            dst = data[ip[CTA_IP_V4_DST][0]:ip[CTA_IP_V4_DST][0] + 4]
                            if inside(src, src_net) and inside(dst, dst_net):
                                sp, = struct.unpack_from(">H", data, pr[CTA_PROTO_SRC_PORT][0])
                                dp, = struct.unpack_from(">H", data, pr[CTA_PROTO_DST_PORT][0])
                                flows.append((src, dst, sp, dp))
                off += (length + 3) & ~3
    finally:
        s.close()
    return flows


def delete_conntrack_flows(flows: list, batch: int = 200) -> int:
    """Deletes the given UDP entries (their original tuples, from conntrack_udp_flows) over
    ctnetlink, nothing else; returns how many were already gone."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    gone = 0
    try:
        s.bind((0, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        seq = 0
        for start in range(0, len(flows), batch):
            chunk = flows[start:start + batch]
            msgs = []
            for k, (src, dst, sp, dp) in enumerate(chunk):
                seq += 1
                body = struct.pack("=BBH", socket.AF_INET, 0, 0) + _tuple(CTA_TUPLE_ORIG, src, dst, sp, dp)
                flags = NLM_F_REQUEST | (NLM_F_ACK if k == len(chunk) - 1 else 0)
                msgs.append(struct.pack("=IHHII", 16 + len(body),
                                        NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE, flags, seq, 0) + body)
            s.send(b"".join(msgs))
            while True:
                data = s.recv(1 << 16)
                done, off = False, 0
                while off + 16 <= len(data):
                    length, mtype, _, mseq, _ = struct.unpack_from("=IHHII", data, off)
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + 16)
                        if err != 0:
                            gone += 1
                        if mseq == seq:
                            done = True
                    off += (length + 3) & ~3
                if done:
                    break
    finally:
        s.close()
    return gone


def iptables_script(rules: int, postrouting: int, chain: str = "FOREIGN-DNAT",
                    owner: str = "foreign-engine", only_from: str = "") -> bytes:
    """The other owner's nat rules, for `iptables-restore --noflush`. Every rule, the jumps
    included, carries `owner` in its comment, so host mode can remove exactly these.
    `only_from` (host mode): a source network every DNAT rule also matches, so that on a
    real host no packet ever matches them."""
    src = "-s %s " % only_from if only_from else ""
    lines = ["*nat", ":%s - [0:0]" % chain,
             "-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"%s\" -j %s" % (owner, chain),
             "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -m comment --comment \"%s\" -j %s"
             % (owner, chain)]
    for i in range(rules - postrouting):
        lines.append("-A %s %s! -i fbr0 -p tcp -m tcp --dport %d -m comment --comment "
                     "\"%s svc-%d\" -j DNAT --to-destination 10.222.%d.%d:%d"
                     % (chain, src, 40000 + i, owner, i, 232 + (i >> 8 & 3), 1 + (i & 0xFF) % 254, 8000 + i % 100))
    for i in range(postrouting):
        lines.append("-A POSTROUTING -s 10.222.%d.%d/32 ! -o fbr0 -m comment --comment "
                     "\"%s masq-%d\" -j MASQUERADE" % (236 + (i >> 8 & 3), 1 + i % 254, owner, i))
    lines.append("COMMIT")
    return ("\n".join(lines) + "\n").encode()


def nft_script(tables: int, prefix: str = "foreign_") -> bytes:
    out = []
    for t in range(tables):
        out.append("table inet %s%d {" % (prefix, t))
        out.append("  chain input { type filter hook input priority 10; policy accept;")
        for r in range(5):
            out.append("    tcp dport %d counter accept" % (20000 + t * 10 + r))
        out.append("  }")
        out.append("}")
    return ("\n".join(out) + "\n").encode()


class Foreign:
    def __init__(self, rules: int = 1000, postrouting: int = 100, tables: int = 20,
                 conntrack: int = 100_000):
        self.rules = rules
        self.postrouting = min(postrouting, rules)
        self.tables = tables
        self.conntrack = conntrack

    def describe(self) -> str:
        return ("busy host: %d foreign iptables nat rules, %d foreign nftables tables, "
                "%d conntrack entries" % (self.rules, self.tables, self.conntrack))

    def populate(self, host) -> None:
        """Fills `host` (a bench_lib.hostns.HostNetns) with the foreign state."""
        host.sh("iptables-restore", "--noflush", input=iptables_script(self.rules, self.postrouting))
        host.sh("nft", "-f", "-", input=nft_script(self.tables))
        if self.conntrack:
            host.enter()
            try:
                refused = add_conntrack_entries(self.conntrack)
            finally:
                host.leave()
            if refused:
                raise RuntimeError("the kernel refused %d of %d conntrack entries in %s (nf_conntrack_max?)"
                                   % (refused, self.conntrack, host.name))
