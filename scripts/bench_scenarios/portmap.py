"""portmap: its own exec (ADD, DEL), the bridge + host-local + portmap chain, and the
cost of an ADD with many containers' mappings already present.

portmap changes the host's firewall, so every column gets its own throw-away "host" netns
(bench_lib.hostns): the harness's thread enters it in the untimed setup and leaves it in
the teardown, so the plugins are spawned inside it with nothing extra in the timed region.
The floor replays the same execs with /bin/true (outside that netns, which costs nothing).
With `scripts/bench --host` both columns share the machine's own namespace instead: its link
`rcnipd<pid>` (10.222.208.1/20) and the chain's bridge `rcnipb<pid>` (10.222.205.0/24) are
removed at the end of each scenario, and the timed mappings (host ports 10080, and 20000 up
for portmap-scale-add-N) exist on the host while the scenario runs.

- portmap-add / portmap-del: both with their default backend, which is iptables for both
  (rcni's default is Go's layout, so either can DEL what the other added); one TCP mapping,
  as a runtime sends it (prevResult, runtimeConfig.portMappings). The container address sits
  on a link (an empty bridge) of the host netns.
- portmap-nft-add / portmap-nft-del: rcni's nftables backend (in-process) vs Go 1.1.1
  (iptables, its only backend).
- portmap-iptables-add / -del: the same with rcni's iptables backend (`backend: iptables`,
  ignored by Go 1.1.1).
- portmap-chain-add / -del: bridge + host-local + portmap with one mapping, each column
  with its own plugins (CNI_PATH), DEL in the runtime's order (portmap, then bridge), default
  backends; portmap-chain-nft-add / -del the same with rcni's portmap on nftables.
- portmap-scale-add-N: ADD of a container with 2 mappings (tcp + udp) while N containers
  with 2 mappings each are present. `portmap-scale-add-0` gives the first ADDs,
  `portmap-scale-add-990` the last 10 of 1,000 (not a default: its prepare takes about a
  minute). The N containers are made in prepare with rcni's portmap: nftables for the rcni
  column, the iptables backend for the Go column (its rules are byte for byte Go's, which
  the integration tests check), since N Go execs would take minutes.
"""

from __future__ import annotations

import os
import re

from bench_lib import Exec, Scenario
from bench_lib.hostns import ContainerNetns, HostNetns, HostView

from .common import RSS_KB, conf

NET = "rcni-bench-pm"
# Per column: container addresses on a link of the host netns (portmap) or bridge (chain).
# (Each column has its own host netns, so both use the same addresses; in host mode the
# columns share the host, its link and its bridge, and their runs never overlap.)
BRIDGE_SUBNET = "10.222.205.0/24"
TIMED_PORT = 10080
TAG = os.getpid() % 100000
LINK = "rcnipd%d" % TAG  # the link holding the container addresses (portmap's own scenarios)
BRIDGE = "rcnipb%d" % TAG  # the chain's bridge


def _ip_of(i: int) -> str:
    # 10.222.208.0/20: 4,000 container addresses from 10.222.208.12 (3989: the timed one).
    n = 10 + i
    return "10.222.%d.%d" % (208 + n // 250, n % 250 + 2)


def _prev(ctr: HostNetns, ip: str) -> dict:
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
            "ips": [{"address": ip + "/20", "interface": 0}]}


def _pm_conf(prev: dict, ports: list, backend: str | None) -> dict:
    maps = []
    for port, proto in ports:
        maps.append({"hostPort": port, "containerPort": 80 if proto == "tcp" else 53, "protocol": proto})
    c = conf("portmap", name=NET, runtimeConfig={"portMappings": maps})
    if backend:
        c["backend"] = backend
    c["prevResult"] = prev
    return c


def _host(tag: str):
    def prepare(col):
        h = HostNetns("%s-%s" % (tag, col.kind), foreign=col.foreign)
        col.state["host"] = h
        if h.sh("ip", "link", "show", "dev", LINK, check=False).returncode != 0:  # host mode: shared
            h.sh("ip", "link", "add", LINK, "type", "bridge")  # no dummy module here
            h.sh("ip", "addr", "add", "10.222.208.1/20", "dev", LINK)
            h.sh("ip", "link", "set", LINK, "up")
        # The container's netns (portmap never enters it; it must not be the host's own).
        col.state["ctr"] = ContainerNetns("%s-%s-ctr" % (tag, col.kind))
    return prepare


def _cleanup(col):
    for key in ("host", "ctr"):
        h = col.state.pop(key, None)
        if h is not None:
            h.remove()


def _enter(run):
    run.col.state["host"].enter()


def _leave(run):
    run.col.state["host"].leave()


# -- portmap's own exec ------------------------------------------------------------------

def _own(verb: str, backend: str | None, ports: list):
    def setup(run):
        _enter(run)
        ctr = run.col.state["ctr"]
        run.state["conf"] = _pm_conf(_prev(ctr, _ip_of(3989)), ports, backend)
        if verb == "DEL" and run.kind != "floor":
            run.exec(Exec("portmap", "ADD", run.state["conf"], netns=ctr.path))

    def timed(run):
        return [Exec("portmap", verb, run.state["conf"], netns=run.col.state["ctr"].path)]

    def teardown(run):
        try:
            if verb == "ADD" and "conf" in run.state and run.kind != "floor":
                run.exec(Exec("portmap", "DEL", run.state["conf"], netns=run.col.state["ctr"].path))
        finally:
            _leave(run)

    return setup, timed, teardown


def _verify_add(run, results):
    out = results[-1].json()
    return None if out.get("ips") else "portmap ADD did not pass the previous result through: %s" % out


def _own_scenario(name, desc, verb, backend, targets):
    setup, timed, teardown = _own(verb, backend, [(TIMED_PORT, "tcp")])
    return Scenario(name=name, description=desc, setup=setup, timed=timed, teardown=teardown,
                    verify=_verify_add if verb == "ADD" else None, prepare=_host(name[8:]),
                    cleanup=_cleanup, plugins=["portmap"], runs=60, targets=targets)


# -- the chain ----------------------------------------------------------------------------

def _chain_prepare(col):
    _host("chain")(col)
    col.state["data"] = col.tmpdir


def _br_conf(run) -> dict:
    return conf("bridge", name=NET, bridge=BRIDGE, isGateway=True,
                ipam={"type": "host-local", "subnet": BRIDGE_SUBNET, "dataDir": run.col.state["data"]})


def _chain_pm(backend: str | None):
    def pm_conf(prev_results):
        prev = prev_results[-1].json()
        return _pm_conf(prev, [(TIMED_PORT, "tcp")], backend)
    return pm_conf


def _chain(verb: str, backend: str | None):
    _chain_pm_conf = _chain_pm(backend)

    def setup(run):
        _enter(run)
        run.state["netns"] = run.netns()
        run.state["br"] = _br_conf(run)
        if verb == "DEL" and run.kind != "floor":
            add = run.exec(Exec("bridge", "ADD", run.state["br"], netns=run.state["netns"]))
            run.state["pm"] = _chain_pm_conf([add])
            run.exec(Exec("portmap", "ADD", run.state["pm"], netns=run.state["netns"]))

    def timed(run):
        ns = run.state["netns"]
        if verb == "ADD":
            return [Exec("bridge", "ADD", run.state["br"], netns=ns),
                    Exec("portmap", "ADD", _chain_pm_conf, netns=ns)]
        return [Exec("portmap", "DEL", run.state["pm"], netns=ns),
                Exec("bridge", "DEL", run.state["br"], netns=ns)]

    def teardown(run):
        try:
            if verb == "ADD" and run.kind != "floor" and "br" in run.state:
                ns = run.state["netns"]
                pm = _pm_conf({}, [(TIMED_PORT, "tcp")], backend)
                del pm["prevResult"]  # both find their rules by container ID
                run.exec(Exec("portmap", "DEL", pm, netns=ns))
                run.exec(Exec("bridge", "DEL", run.state["br"], netns=ns))
        finally:
            _leave(run)

    return setup, timed, teardown


def _chain_scenario(name, desc, verb, targets, backend=None):
    setup, timed, teardown = _chain(verb, backend)
    return Scenario(name=name, description=desc, setup=setup, timed=timed, teardown=teardown,
                    verify=_verify_add if verb == "ADD" else None, prepare=_chain_prepare,
                    cleanup=_cleanup, plugins=["bridge", "host-local", "portmap"], runs=40,
                    targets=targets)


# -- scaling ------------------------------------------------------------------------------

def _scale(n: int) -> Scenario:
    ports = [(TIMED_PORT, "tcp"), (TIMED_PORT + 1, "udp")]

    def prepare(col):
        _host("scale%d" % n)(col)
        h, ctr = col.state["host"], col.state["ctr"]
        backend = "nftables" if col.kind == "rcni" else "iptables"
        h.enter()
        try:
            for i in range(n):
                p = 20000 + 2 * i
                c = _pm_conf(_prev(ctr, _ip_of(i)), [(p, "tcp"), (p + 1, "udp")], backend)
                col.exec(Exec("portmap", "ADD", c, netns=ctr.path, containerid="pm-scale-%s-%d" % (col.kind, i),
                              impl="rcni"))
        finally:
            h.leave()

    def cleanup(col):
        # In host mode the prepared containers are in the host: DEL them (a throw-away
        # host netns takes them with it).
        h, ctr = col.state.get("host"), col.state.get("ctr")
        try:
            if isinstance(h, HostView) and ctr is not None:
                backend = "nftables" if col.kind == "rcni" else "iptables"
                for i in range(n):
                    p = 20000 + 2 * i
                    c = _pm_conf(_prev(ctr, _ip_of(i)), [(p, "tcp"), (p + 1, "udp")], backend)
                    col.exec(Exec("portmap", "DEL", c, netns=ctr.path, containerid="pm-scale-%s-%d" % (col.kind, i),
                                  impl="rcni", ok=False))
        finally:
            _cleanup(col)

    # rcni on nftables, as its prepared containers (Go 1.1.1 ignores `backend`).
    setup, timed, teardown = _own("ADD", "nftables", ports)
    return Scenario(
        name="portmap-scale-add-%d" % n,
        description="portmap ADD (tcp + udp) with %d containers of 2 mappings each present (rcni: nftables)" % n,
        setup=setup, timed=timed, teardown=teardown, verify=_verify_add, prepare=prepare,
        cleanup=cleanup, plugins=["portmap"], runs=10, default=n <= 200,
        targets={})


def make(name):
    m = re.fullmatch(r"portmap-scale-add-(\d+)", name)
    return _scale(int(m.group(1))) if m and int(m.group(1)) <= 3900 else None


SCENARIOS = [
    # The default backend is Go's (iptables layout, one iptables-restore fork) until it is
    # written in-process: no ratio target for it yet.
    _own_scenario("portmap-add", "portmap ADD, 1 tcp mapping, default backends (both iptables)",
                  "ADD", None, {"max_rss_kb": RSS_KB}),
    _own_scenario("portmap-del", "portmap DEL, 1 tcp mapping, default backends (both iptables)",
                  "DEL", None, {}),
    _own_scenario("portmap-nft-add", "portmap ADD, 1 tcp mapping (rcni: nftables in-process; Go: iptables)",
                  "ADD", "nftables", {"min_ratio": 20.0, "max_rss_kb": RSS_KB}),
    _own_scenario("portmap-nft-del", "portmap DEL, 1 tcp mapping (rcni: nftables; Go: iptables)",
                  "DEL", "nftables", {"min_ratio": 20.0}),
    _own_scenario("portmap-iptables-add", "portmap ADD, 1 tcp mapping, both iptables",
                  "ADD", "iptables", {}),
    _own_scenario("portmap-iptables-del", "portmap DEL, 1 tcp mapping, both iptables",
                  "DEL", "iptables", {}),
    _chain_scenario("portmap-chain-add", "bridge + host-local + portmap ADD, 1 mapping, default backends",
                    "ADD", {}),
    _chain_scenario("portmap-chain-del", "portmap + bridge DEL (host-local released), 1 mapping, default backends",
                    "DEL", {}),
    _chain_scenario("portmap-chain-nft-add", "bridge + host-local + portmap ADD, 1 mapping (rcni portmap: nftables)",
                    "ADD", {"min_ratio": 10.0}, "nftables"),
    _chain_scenario("portmap-chain-nft-del", "portmap + bridge DEL, 1 mapping (rcni portmap: nftables)",
                    "DEL", {"min_ratio": 5.0}, "nftables"),
    _scale(0),
    _scale(190),
]
