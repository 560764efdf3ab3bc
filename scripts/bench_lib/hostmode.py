"""Host mode (`scripts/bench --host`): the scenarios run in the machine's own network namespace,
on a host carrying a busy node's state, which the harness makes first and removes afterwards.

What `HostMode.start()` adds to the host (names and comments all carry `rcnibench`, addresses
are in 10.222.0.0/16 and never routed anywhere, no rule can match a real packet):
  - iptables-nft (nat): chain RCNIBENCH-FOREIGN with 900 DNAT rules (source 10.222.248.0/24
    only), jumped to from PREROUTING and OUTPUT, and 100 MASQUERADE rules in POSTROUTING
    (sources 10.222.236-239.x), comments `rcnibench-foreign ...`; one iptables-restore;
  - 1,000 bridge ipMasq attachments in Go's layout: chain `CNI-<24 hex of sha512(net+id)>`
    with an ACCEPT and a MASQUERADE rule, and a POSTROUTING `-s <ip>/32 -j CNI-...` jump,
    comment `name: "rcnibench-foreign-br" id: "<cid>"` (10.222.20.0/22); one iptables-restore;
  - 1,000 portmap attachments in Go's layout (`CNI-DN-<hash>` chain each, its jump in
    CNI-HOSTPORT-DNAT with `dnat name: "rcnibench-foreign-pm" id: "<cid>"`): ADDs of our
    portmap binary (Go's portmap when ours is missing) with made-up prevResults
    (10.222.16.0/22, host ports 30000-30999 on host IP 10.222.250.1, which no interface has);
  - 20 nftables tables `inet rcnibench_foreign_<n>` (an input chain each); one `nft -f`;
  - 100,000 UDP conntrack entries 10.222.240.0/20 -> 10.222.224.0/20 over ctnetlink.

`finish()` (also from atexit and after SIGINT/SIGTERM/SIGHUP, which cli turns into
exceptions; the signals are blocked while it runs) removes all of it: the portmap attachments
with DELs of the same binary, then every nat rule whose text says rcnibench / rcni-bench (the
foreign rules, the masq jumps, leftovers of the scenarios' own containers) and the chains
only they jump to, in one iptables-restore; the rcnibench_* nftables tables in one `nft -f`;
the conntrack entries by a ctnetlink dump filtered to 10.222.240.0/20 -> 10.222.224.0/20 and
a delete of exactly those tuples (no `conntrack` tool needed). Then what the plugins made
on the host during the run and keep after their last DEL, when it was not there before:
CNI-HOSTPORT-{DNAT,SETMARK,MASQ} and their jumps (when CNI-HOSTPORT-DNAT is empty), the
tables `inet cni_hostport` / `inet cni_plugins_masquerade` (when they hold no elements) and
iptables-nft's own tables (`ip nat`, ...) when they hold no rule; the forwarding sysctls a
gateway bridge turned on; links rcni*<pid> (HostView.sweep). Finally it compares the host with
the snapshot taken before anything was added: `iptables-save -t nat` and `ip6tables-save -t
nat` (counters and comments aside), `nft list tables`, the conntrack entries in 10.222.0.0/16
(the table's total is reported: flows of other processes that were tracked while a nat table
existed are not ours), the sysctls and the links. Any difference is a FAIL.

One host-mode run at a time (flock on /run/rcni-bench-host.lock). The snapshot is kept in
/run/rcni-bench-host.json until the host is clean again, so the next run removes the leftovers
of a run that was SIGKILLed.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys

from . import foreign, hostns, proc

LOCK = "/run/rcni-bench-host.lock"
STATE = "/run/rcni-bench-host.json"
MARK = re.compile(r"rcni-?bench", re.IGNORECASE)
FOREIGN_CHAIN = "RCNIBENCH-FOREIGN"
FOREIGN_OWNER = "rcnibench-foreign"
NFT_PREFIX = "rcnibench_foreign_"
PM_NET = "rcnibench-foreign-pm"
MASQ_NET = "rcnibench-foreign-br"
ATTACHMENTS = 1000
PM_NET_ADDR = ipaddress.ip_network("10.222.16.0/22")
PM_HOST_IP = "10.222.250.1"
MASQ_NET_ADDR = ipaddress.ip_network("10.222.20.0/22")
CT_SRC = (bytes([10, 222, 240, 0]), 20)
CT_DST = (bytes([10, 222, 224, 0]), 20)
OURS = (bytes([10, 222, 0, 0]), 16)
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/route_localnet")
HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
PLUGIN_TABLES = ("cni_hostport", "cni_plugins_masquerade")  # any family (rcni's portmap: ip, ip6)
IPT_TABLES = ("ip nat", "ip6 nat", "ip filter", "ip6 filter", "ip mangle", "ip6 mangle")
BUILTIN = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"}
SAVE = {"ip": "iptables-save", "ip6": "ip6tables-save"}
RESTORE = {"ip": "iptables-restore", "ip6": "ip6tables-restore"}


def _sh(argv: list, input: bytes | None = None, check: bool = True) -> str:
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                               p.stderr.decode(errors="replace").strip()[:2000]))
    return p.stdout.decode(errors="replace")


def _nat(family: str) -> list:
    """`iptables-save -t nat` without its comment lines and counters."""
    out = _sh([SAVE[family], "-t", "nat"])
    return [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in out.splitlines() if ln and not ln.startswith("#")]


def _tables() -> list:
    return sorted(ln.split(None, 1)[1] for ln in _sh(["nft", "list", "tables"]).splitlines()
                  if ln.startswith("table "))


def _sysctl(name: str):
    try:
        with open("/proc/sys/" + name) as f:
            return f.read().strip()
    except OSError:
        return None


def _ct_total() -> int:
    v = _sysctl("net/netfilter/nf_conntrack_count")
    return int(v) if v and v.isdigit() else 0


def snapshot() -> dict:
    return {"nat": {f: _nat(f) for f in SAVE}, "tables": _tables(), "ct_total": _ct_total(),
            "ct_ours": len(foreign.conntrack_udp_flows(OURS, OURS)),
            "sysctls": {k: _sysctl(k) for k in SYSCTLS}, "links": sorted(hostns.link_names())}


def _chain_name(net: str, cid: str, prefix: str = "") -> str:
    """Go's utils.FormatChainName(WithPrefix): CNI-[prefix]<sha512(net+id) hex>, 28 chars."""
    return ("CNI-" + prefix + hashlib.sha512((net + cid).encode()).hexdigest())[:28]


def _comment(net: str, cid: str) -> str:
    """Go's utils.FormatComment, as iptables-save quotes it."""
    return '"name: \\"%s\\" id: \\"%s\\""' % (net, cid)


def masq_script(n: int) -> bytes:
    """n bridge ipMasq attachments in Go 1.1.1's iptables layout (ip.SetupIPMasq)."""
    chains, rules = [], []
    for i in range(n):
        cid = "%s-%d" % (MASQ_NET, i)
        chain = _chain_name(MASQ_NET, cid)
        ip = MASQ_NET_ADDR.network_address + 2 + i
        c = _comment(MASQ_NET, cid)
        chains.append(":%s - [0:0]" % chain)
        rules.append("-A %s -d %s -m comment --comment %s -j ACCEPT" % (chain, MASQ_NET_ADDR, c))
        rules.append("-A %s ! -d 224.0.0.0/4 -m comment --comment %s -j MASQUERADE" % (chain, c))
        rules.append("-A POSTROUTING -s %s/32 -m comment --comment %s -j %s" % (ip, c, chain))
    return ("\n".join(["*nat"] + chains + rules + ["COMMIT"]) + "\n").encode()


def _removal_script(lines: list, drop_too: set = frozenset()) -> str | None:
    """iptables-restore --noflush script removing every rule that mentions rcnibench /
    rcni-bench, the chains named RCNIBENCH-*, the chains in `drop_too`, and the chains that
    only such rules jump to; None when there is nothing to remove."""
    chains = {ln[1:].split()[0] for ln in lines if ln.startswith(":")}
    rules = [ln for ln in lines if ln.startswith("-A ")]

    def target(ln):
        m = re.search(r" -j (\S+)", ln)
        return m.group(1) if m else None

    marked = [ln for ln in rules if MARK.search(ln)]
    drop = {c for c in chains if c.startswith("RCNIBENCH-")} | (set(drop_too) & chains)
    for ln in marked:
        t = target(ln)
        if t in chains and t not in BUILTIN and not t.startswith("CNI-HOSTPORT-") \
                and all(MARK.search(r) for r in rules if target(r) == t):
            drop.add(t)
    # Jumps into dropped chains go too (they may carry no mark: the plugins' own jumps).
    dels = [ln for ln in rules if (ln in marked or target(ln) in drop) and ln.split()[1] not in drop]
    if not dels and not drop:
        return None
    out = ["*nat"] + ["-D" + ln[2:] for ln in dels]
    out += ["-F %s" % c for c in sorted(drop)] + ["-X %s" % c for c in sorted(drop)] + ["COMMIT"]
    return "\n".join(out) + "\n"


def _nft_contents(table: str) -> tuple:
    """(rules, container state) of a table: the state is its set/map elements and the rules
    that name a container (`id: <cid>` in the comment, as the plugins write them)."""
    fam, name = table.split()
    try:
        doc = json.loads(_sh(["nft", "-j", "list", "table", fam, name]))
    except (RuntimeError, ValueError):
        return 0, 0
    rules = state = 0
    for o in doc.get("nftables", []):
        if "rule" in o:
            rules += 1
            if "id: " in (o["rule"].get("comment") or ""):
                state += 1
        for k in ("set", "map"):
            if k in o:
                state += len(o[k].get("elem", []))
    return rules, state


class HostMode:
    def __init__(self, plugin_dirs: list, conntrack: int = 100_000, progress=None):
        self.plugin_dirs = [d for d in plugin_dirs if d]
        self.conntrack = conntrack
        self.progress = progress or (lambda msg: print(msg, file=sys.stderr))
        self.before = None
        self.present = []  # what foreign state was made, for the report
        self.notes = []  # what finish() did and found
        self.fails = []
        self.done = False
        self._lock = None
        self._ctr = None

    # -- the report's host: line ---------------------------------------------------------
    def describe(self) -> str:
        b = self.before or {}
        nat_rules = sum(1 for f in b.get("nat", {}).values() for ln in f if ln.startswith("-A "))
        return ("the machine's own network namespace (--host); foreign state made for the run: %s; "
                "there before: %d nat rules, %d nftables tables, %d conntrack entries"
                % (", ".join(self.present) or "none", nat_rules, len(b.get("tables", [])), b.get("ct_total", 0)))

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        self._lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("another `scripts/bench --host` is running (%s is locked)" % LOCK) from None
        self._leftovers()
        self.before = snapshot()
        with open(STATE, "w") as f:
            json.dump({"pid": os.getpid(), "before": self.before, "plugin_dirs": self.plugin_dirs}, f)
        hostns.use_own_host()
        self._populate()

    def _leftovers(self) -> None:
        """Under the lock, anything of ours on the host is a dead run's."""
        state = None
        try:
            with open(STATE) as f:
                state = json.load(f)
        except (OSError, ValueError):
            pass
        marked = any(MARK.search(ln) for f in SAVE for ln in _nat(f)) or \
            any(MARK.search(t) for t in _tables()) or foreign.conntrack_udp_flows(CT_SRC, CT_DST)
        if not state and not marked:
            return
        self.progress("host mode: removing what an earlier run (pid %s) left on the host"
                      % (state or {}).get("pid", "?"))
        self._remove(state["before"] if state else None, (state or {}).get("pid"),
                     binary=False)
        self.notes = ["leftovers of run %s removed at start: %s" % ((state or {}).get("pid", "?"),
                                                                   "; ".join(self.notes) or "nat rules and tables")]
        if state:
            fails = self._compare(state["before"], snapshot())
            for f in fails:
                self.progress("warning: after removing the leftovers: %s" % f)
        try:
            os.unlink(STATE)
        except OSError:
            pass

    def _portmap(self):
        for d in self.plugin_dirs:
            p = os.path.join(d, "portmap")
            if os.access(p, os.X_OK):
                return p
        return None

    def _pm_exec(self, binary: str, verb: str, i: int):
        cid = "%s-%d" % (PM_NET, i)
        ip = PM_NET_ADDR.network_address + 2 + i
        cfg = {"cniVersion": "1.0.0", "name": PM_NET, "type": "portmap",
               "runtimeConfig": {"portMappings": [{"hostPort": 30000 + i, "containerPort": 80,
                                                   "protocol": "tcp", "hostIP": PM_HOST_IP}]},
               "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": self._ctr.path}],
                              "ips": [{"address": "%s/%d" % (ip, PM_NET_ADDR.prefixlen), "interface": 0}]}}
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb,
               "CNI_CONTAINERID": cid, "CNI_NETNS": self._ctr.path, "CNI_IFNAME": "eth0",
               "CNI_PATH": os.path.dirname(binary)}
        _, status, out, err = proc.spawn([binary], env, json.dumps(cfg).encode())
        if status != 0:
            raise RuntimeError("%s %s %s: exit %d: %s %s" % (binary, verb, cid, status,
                                                            out.decode(errors="replace")[:300],
                                                            err.decode(errors="replace")[:300]))

    def _ctr_netns(self):
        if self._ctr is None:
            self._ctr = hostns.ContainerNetns("foreign-ctr")
        return self._ctr

    def _populate(self) -> None:
        self.progress("host mode: adding the foreign state to the host ...")
        _sh(["iptables-restore", "--noflush"],
            input=foreign.iptables_script(1000, 100, FOREIGN_CHAIN, FOREIGN_OWNER, only_from="10.222.248.0/24"))
        self.present.append("1,000 iptables nat rules of another owner (%s)" % FOREIGN_CHAIN)
        _sh(["iptables-restore", "--noflush"], input=masq_script(ATTACHMENTS))
        self.present.append("{:,} bridge ipMasq chains in Go's layout ({})".format(ATTACHMENTS, MASQ_NET))
        _sh(["nft", "-f", "-"], input=foreign.nft_script(20, NFT_PREFIX))
        self.present.append("20 nftables tables inet %s<n>" % NFT_PREFIX)
        if self.conntrack:
            refused = foreign.add_conntrack_entries(self.conntrack)
            if refused:
                raise RuntimeError("the kernel refused %d of %d conntrack entries (nf_conntrack_max?)"
                                   % (refused, self.conntrack))
            self.present.append("{:,} conntrack entries (10.222.240.0/20 -> 10.222.224.0/20)".format(self.conntrack))
        binary = self._portmap()
        if binary is None:
            self.progress("warning: no portmap binary: the host gets no portmap attachments")
            return
        self._ctr_netns()
        for i in range(ATTACHMENTS):
            self._pm_exec(binary, "ADD", i)
            if i % 100 == 99:
                self.progress("host mode: %d/%d portmap attachments" % (i + 1, ATTACHMENTS))
        self.present.append("{:,} portmap attachments in Go's layout ({}, by {})".format(ATTACHMENTS, PM_NET, binary))

    # -- finish ----------------------------------------------------------------------------
    def finish(self) -> list:
        """Removes everything, compares the host with the snapshot; returns the FAIL lines."""
        if self.done or self.before is None:
            return self.fails
        self.done = True
        sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        try:
            self.progress("host mode: removing the foreign state ...")
            self._remove(self.before, os.getpid(), binary=True)
            self.fails += self._compare(self.before, snapshot())
            if not self.fails:
                os.unlink(STATE)
            for f in self.fails:
                print("FAIL: host mode: %s" % f, file=sys.stderr)
        except Exception as ex:  # noqa: BLE001 - reported as a FAIL, the state file stays
            self.fails.append("removing the foreign state: %s" % ex)
        finally:
            if self._ctr is not None:
                self._ctr.remove()
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return self.fails

    def _remove(self, before, pid, binary: bool) -> None:
        # 1. The portmap attachments: DEL with the binary that made them (a dead run's: rules).
        pm = self._portmap() if binary else None
        ids = sorted({int(m.group(1)) for ln in _nat("ip")
                      for m in [re.search(r'id: \\"%s-(\d+)\\"' % PM_NET, ln)] if m})
        if pm and ids:
            self._ctr_netns()
            failed = 0
            for i in ids:
                try:
                    self._pm_exec(pm, "DEL", i)
                except RuntimeError as ex:
                    failed += 1
                    if failed == 1:
                        self.fails.append("portmap DEL of the foreign attachments: %s" % ex)
            left = [ln for ln in _nat("ip") if PM_NET in ln]
            left_chains = [ln for ln in _nat("ip") if ln.startswith(":CNI-DN-")]
            if left:
                self.fails.append("%d rules of the %d portmap attachments left after their DELs, e.g. %s"
                                  % (len(left), len(ids), left[0]))
            else:
                self.notes.append("{:,} portmap attachments removed by {:,} DELs of {}, none of their rules left{}"
                                  .format(len(ids), len(ids), pm, "" if before is None or len(left_chains) <= sum(
                                      1 for ln in before["nat"]["ip"] if ln.startswith(":CNI-DN-"))
                                     else " (but CNI-DN-* chains are)"))
        # 2. Every nat rule that mentions us, and the chains only they jump to.
        for fam in SAVE:
            script = _removal_script(_nat(fam))
            if script:
                _sh([RESTORE[fam], "--noflush"], input=script.encode())
        # 3. Our nftables tables.
        ours = [t for t in _tables() if MARK.search(t)]
        if ours:
            _sh(["nft", "-f", "-"], input="".join("delete table %s\n" % t for t in ours).encode())
        # 4. Our conntrack entries: dumped, filtered to exactly our addresses, deleted by tuple.
        flows = foreign.conntrack_udp_flows(CT_SRC, CT_DST)
        if flows:
            foreign.delete_conntrack_flows(flows)
            self.notes.append("{:,} conntrack entries 10.222.240.0/20 -> 10.222.224.0/20 removed by a "
                              "ctnetlink delete of their exact tuples".format(len(flows)))
        if before is None:
            return
        # 5. What the plugins keep on the host after their last DEL, if it was not there before.
        for fam in SAVE:
            lines = _nat(fam)
            had = {ln[1:].split()[0] for ln in before["nat"][fam] if ln.startswith(":")}
            now = {ln[1:].split()[0] for ln in lines if ln.startswith(":")}
            new = [c for c in HOSTPORT_CHAINS if c in now and c not in had]
            if "CNI-HOSTPORT-DNAT" in new and not any(ln.startswith("-A CNI-HOSTPORT-DNAT ") for ln in lines):
                script = _removal_script(lines, set(new))
                if script:
                    _sh([RESTORE[fam], "--noflush"], input=script.encode())
                    self.notes.append("%s chains %s made by portmap during the run removed" % (fam, ", ".join(new)))
        tables = _tables()
        for t in tables:
            if t in before["tables"]:
                continue
            plugin = t.split()[1] in PLUGIN_TABLES
            if not plugin and t not in IPT_TABLES:
                continue
            rules, state = _nft_contents(t)
            if plugin and state:
                self.fails.append("table %s, made during the run, still holds %d container rules/elements"
                                  % (t, state))
            if plugin or rules == 0:
                _sh(["nft", "delete", "table"] + t.split(), check=False)
                self.notes.append("table %s made during the run removed" % t)
        # 6. Forwarding sysctls a gateway bridge turned on; 7. links of ours.
        for k, v in before["sysctls"].items():
            if v is not None and _sysctl(k) != v:
                with open("/proc/sys/" + k, "w") as f:
                    f.write(v)
                self.notes.append("%s set back to %s" % (k.replace("/", "."), v))
        tag = str((pid or 0) % 100000)
        for n in hostns.link_names():
            if n.startswith("rcni") and tag in n and n not in before["links"]:
                subprocess.run(["ip", "link", "del", n], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def _compare(before: dict, after: dict) -> list:
        fails = []
        for fam in SAVE:
            b, a = before["nat"][fam], after["nat"][fam]
            if a != b:
                gone = [ln for ln in b if ln not in a]
                extra = [ln for ln in a if ln not in b]
                fails.append("%s nat table differs from before the run: %d lines more (%s), %d fewer (%s)"
                             % (SAVE[fam], len(extra), "; ".join(extra[:3]), len(gone), "; ".join(gone[:3])))
        if after["tables"] != before["tables"]:
            fails.append("nftables tables differ: before %s, after %s" % (before["tables"], after["tables"]))
        if after["ct_ours"] != before["ct_ours"]:
            fails.append("conntrack entries in 10.222.0.0/16: %d before, %d after"
                         % (before["ct_ours"], after["ct_ours"]))
        if after["sysctls"] != before["sysctls"]:
            fails.append("sysctls differ: before %s, after %s" % (before["sysctls"], after["sysctls"]))
        new_links = sorted(n for n in set(after["links"]) - set(before["links"]) if n.startswith("rcni"))
        if new_links:
            fails.append("links not there before: %s" % new_links)
        return fails

    def check_line(self) -> str:
        """The report's verdict on the host after the run."""
        a = snapshot()
        ct = "conntrack entries: %d before, %d after (10.222.0.0/16: %d, %d)" % (
            self.before["ct_total"], a["ct_total"], self.before["ct_ours"], a["ct_ours"])
        if self.fails:
            return "host check: FAIL: " + "; ".join(self.fails) + "; " + ct
        return ("host check: ok: nat tables, nftables tables, sysctls and links as before the run; %s%s"
                % (ct, "" if a["ct_total"] == self.before["ct_total"] else
                   " (the difference is outside 10.222.0.0/16: other processes' flows)"))
