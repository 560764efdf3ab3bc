"""bridge + host-local: ADD and DEL, plain v4, with ipMasq, and dual stack without DAD.

Each column has its own throw-away "host" netns (bench_lib.hostns, entered by the harness's
thread in the untimed setup, so the plugins are spawned inside it), and in it its own bridge
(`rcnib<pid><r|g>`, created by the first ADD) and masquerade table, all gone with the netns
in cleanup; and its own host-local data dir and subnet inside 10.222.0.0/16 / fd00:222::/48.
Nothing of the real host is touched.
Every ADD run is released by an untimed DEL of the same implementation, every DEL run's
attachment is made by an untimed ADD, so each run starts from the same state.

ipMasq: rcni uses the nftables backend in-process (`ipMasqBackend: nftables`); Go 1.1.1 does
not know the field and uses iptables, its only backend, as it does by default on every
version. bridge-masq-ipt-add / -del leave `ipMasqBackend` out, so both use their default, Go's
iptables layout (rcni writes it in-process where iptables is iptables-nft, Debian's default).
isGateway is off so the host's forwarding sysctls are never touched.

bridge-masq-add measures the first masqueraded container of a host: the untimed DEL before
each run removed the only NAT rule, so the kernel drops conntrack's per-namespace hooks and
the timed ADD registers them again (about 0.4 ms of rcni's ADD, measured). bridge-masq-add-busy
keeps one resident container attached for the whole column, as on a node already running
containers.

bridge-concurrent-N-add / -del (N = 16 by default, 64 when named): N containers, each in a
fresh netns, attached to (detached from) ONE network at once, as a runtime starting many pods
does: one bridge (`rcnic<pid><r|g>`), one host-local range (10.222.64-66.0/24 per column).
The timed step is one Parallel item (bench_lib.api): N execs spawned back to back, timed from
the first spawn to the last exit; the floor spawns N /bin/true the same way. After every run
(not only the first ones): every exec exited 0, N distinct addresses and host-local holds
exactly those (ADD) or none (DEL). The release (DELs after an ADD run) and the setup (ADDs
before a DEL run) are untimed and sequential.
"""

from __future__ import annotations

import os

from bench_lib import Exec, Parallel, Scenario
from bench_lib.hostns import HostNetns

from .common import RSS_KB, conf

SUBNETS = {"rcni": ("10.222.200.0/24", "fd00:222:c8::/64"), "go": ("10.222.201.0/24", "fd00:222:c9::/64"),
           "floor": ("10.222.202.0/24", "fd00:222:ca::/64")}


def _bridge(col) -> str:
    return "rcnib%d%s" % (os.getpid() % 100000, col.kind[0])


def _prepare(col):
    data = os.path.join(col.tmpdir, "data")
    os.makedirs(data, mode=0o755)
    col.state["data_dir"] = data
    col.state["host"] = HostNetns("br-%s" % col.kind, foreign=col.foreign)


def _cleanup(col):
    # The bridge, its veths and the masquerade table go with the namespace.
    h = col.state.pop("host", None)
    if h is not None:
        h.remove()


def _enter(run):
    run.col.state["host"].enter()


def _leave(run):
    run.col.state["host"].leave()


def _resident_netns(col) -> str:
    # Named like the harness's own namespaces, so a killed harness's leftovers are removed.
    return "rcni-bench-%d-resident-%s" % (os.getpid(), col.kind)


def _prepare_resident(col):
    """A container attached with ipMasq for the column's whole life (not for the floor)."""
    _prepare(col)
    if col.kind == "floor":
        return
    ns = _resident_netns(col)
    col.sh("ip", "netns", "add", ns)
    col.state["resident_conf"] = _col_conf(col, True, False)
    host = col.state["host"]
    host.enter()
    try:
        col.exec(Exec("bridge", "ADD", col.state["resident_conf"], netns="/run/netns/" + ns,
                      containerid="resident-%s" % col.kind))
    finally:
        host.leave()


def _cleanup_resident(col):
    if "resident_conf" in col.state:
        host = col.state["host"]
        host.enter()
        try:
            col.exec(Exec("bridge", "DEL", col.state["resident_conf"],
                          netns="/run/netns/" + _resident_netns(col), containerid="resident-%s" % col.kind))
        finally:
            host.leave()
        col.sh("ip", "netns", "del", _resident_netns(col), check=False)
    _cleanup(col)


def _conf(run, masq: bool, dual: bool) -> dict:
    return _col_conf(run.col, masq, dual)


def _col_conf(col, masq: bool, dual: bool) -> dict:
    v4, v6 = SUBNETS[col.kind]
    ranges = [[{"subnet": v4}]] + ([[{"subnet": v6}]] if dual else [])
    c = conf("bridge", bridge=_bridge(col),
             ipam={"type": "host-local", "ranges": ranges, "dataDir": col.state["data_dir"]})
    if masq:
        c["ipMasq"] = True
        if masq != "default":
            c["ipMasqBackend"] = "nftables"
    if dual:
        c["enabledad"] = False
    return c


def _fresh(masq: bool, dual: bool):
    def setup(run):
        _enter(run)
        run.state["netns"] = run.netns()
        run.state["conf"] = _conf(run, masq, dual)
    return setup


def _added(masq: bool, dual: bool):
    def setup(run):
        _fresh(masq, dual)(run)
        run.exec(Exec("bridge", "ADD", run.state["conf"], netns=run.state["netns"]))
        run.state["added"] = True
    return setup


def _release(run):
    # After an ADD run: DEL it (untimed). After a DEL run: DEL again is a no-op.
    try:
        if "conf" in run.state and run.kind != "floor":
            run.exec(Exec("bridge", "DEL", run.state["conf"], netns=run.state["netns"]))
    finally:
        _leave(run)


def _add(run):
    return [Exec("bridge", "ADD", run.state["conf"], netns=run.state["netns"])]


def _del(run):
    return [Exec("bridge", "DEL", run.state["conf"], netns=run.state["netns"])]


def _verify_add(run, results):
    out = results[-1].json()
    names = [i.get("name") for i in out.get("interfaces", [])]
    if len(names) < 3 or names[0] != _bridge(run.col) or not (names[1] or "").startswith("veth"):
        return "unexpected interfaces: %s" % names
    if not out.get("ips"):
        return "no ips in result"
    return None


def _scenario(name, desc, masq, dual, verb, targets, resident=False):
    return Scenario(
        name=name,
        description=desc,
        setup=_fresh(masq, dual) if verb == "add" else _added(masq, dual),
        timed=_add if verb == "add" else _del,
        teardown=_release,
        verify=_verify_add if verb == "add" else None,
        prepare=_prepare_resident if resident else _prepare,
        cleanup=_cleanup_resident if resident else _cleanup,
        plugins=["bridge", "host-local"],
        runs=60,
        targets=targets,
    )


# -- concurrency: N containers attached to (detached from) one network at once ------------

CONC_NET = "rcni-bench-conc"
CONC_SUBNETS = {"rcni": "10.222.64.0/24", "go": "10.222.65.0/24", "floor": "10.222.66.0/24"}


def _conc_bridge(col) -> str:
    return "rcnic%d%s" % (os.getpid() % 100000, col.kind[0])


def _conc_conf(col) -> dict:
    return conf("bridge", name=CONC_NET, bridge=_conc_bridge(col),
                ipam={"type": "host-local", "subnet": CONC_SUBNETS[col.kind], "dataDir": col.state["data_dir"]})


def _conc_store(run) -> list:
    """Addresses host-local holds for the network (its store: one file per address)."""
    d = os.path.join(run.col.state["data_dir"], CONC_NET)
    try:
        return sorted(n for n in os.listdir(d) if n[0].isdigit() and n.count(".") == 3)
    except FileNotFoundError:
        return []


def _conc_addrs(results) -> list:
    return [(r.json().get("ips") or [{}])[0].get("address") for r in results]


def _concurrent(n: int, verb: str) -> Scenario:
    def setup(run):
        _enter(run)
        run.state["conf"] = _conc_conf(run.col)
        run.state["ctrs"] = [(run.netns(), "%s-c%d" % (run.id, i)) for i in range(n)]
        if verb == "del" and run.kind != "floor":
            run.state["adds"] = [run.exec(Exec("bridge", "ADD", run.state["conf"], netns=ns, containerid=cid))
                                 for ns, cid in run.state["ctrs"]]

    def timed(run):
        return [Parallel([Exec("bridge", verb.upper(), run.state["conf"], netns=ns, containerid=cid)
                          for ns, cid in run.state["ctrs"]])]

    def verify(run, results):
        # Every exec exited 0 (Parallel checks that); now the addresses.
        if len(results) != n:
            return "%d results for %d containers" % (len(results), n)
        addrs = _conc_addrs(results if verb == "add" else run.state["adds"])
        if None in addrs:
            return "a result without an address: %s" % addrs
        dup = sorted({a for a in addrs if addrs.count(a) > 1})
        if dup:
            return "%d containers, %d distinct addresses; duplicates: %s" % (n, len(set(addrs)), dup)
        held = _conc_store(run)
        if verb == "add" and len(held) != n:
            return "host-local holds %d addresses after %d ADDs: %s" % (len(held), n, held)
        if verb == "del" and held:
            return "host-local still holds %s after %d DELs" % (held, n)
        run.state["verified"] = True
        return None

    def teardown(run):
        # Release (untimed): after an ADD run, and after a DEL run that did not get through.
        try:
            if run.kind != "floor" and "ctrs" in run.state and (verb == "add" or not run.state.get("verified")):
                for ns, cid in run.state["ctrs"]:
                    run.exec(Exec("bridge", "DEL", run.state["conf"], netns=ns, containerid=cid, ok=False))
        finally:
            _leave(run)

    return Scenario(
        name="bridge-concurrent-%d-%s" % (n, verb),
        description="%d bridge+host-local %ss at once into one network (wall time, first spawn to last exit)"
                    % (n, verb.upper()),
        setup=setup, timed=timed, teardown=teardown, verify=verify, verify_every_run=True,
        prepare=_prepare, cleanup=_cleanup, plugins=["bridge", "host-local"],
        runs=20 if n <= 16 else 10, default=n <= 16, targets={})


SCENARIOS = [
    _scenario("bridge-add", "bridge+host-local ADD, v4", False, False, "add",
              {"min_ratio": 2.5, "max_rss_kb": RSS_KB}),
    _scenario("bridge-del", "bridge+host-local DEL, v4", False, False, "del", {"min_ratio": 1.5}),
    _scenario("bridge-masq-add", "bridge+host-local ADD with ipMasq (rcni: nftables in-process; Go: iptables)",
              True, False, "add", {"min_ratio": 8.0}),
    _scenario("bridge-masq-del", "bridge+host-local DEL with ipMasq", True, False, "del", {}),
    _scenario("bridge-masq-ipt-add", "bridge+host-local ADD with ipMasq, default backends (both Go's iptables layout;"
              " rcni in-process on iptables-nft)", "default", False, "add", {"min_ratio": 8.0}),
    _scenario("bridge-masq-ipt-del", "bridge+host-local DEL with ipMasq, default backends (both iptables layout)",
              "default", False, "del", {"min_ratio": 10.0}),
    _scenario("bridge-masq-add-busy", "bridge+host-local ADD with ipMasq, another masqueraded container attached",
              True, False, "add", {}, resident=True),
    _scenario("bridge-dual-add", "bridge+host-local ADD, dual stack, enabledad=false", False, True, "add", {}),
    _scenario("bridge-dual-del", "bridge+host-local DEL, dual stack", False, True, "del", {}),
    _concurrent(16, "add"),
    _concurrent(16, "del"),
    _concurrent(64, "add"),
    _concurrent(64, "del"),
]
