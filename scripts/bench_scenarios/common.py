"""The floor, and helpers shared by the plugin modules."""

from __future__ import annotations

import json
import os

from bench_lib import Exec, Scenario

CNI_VERSION = "1.0.0"  # Debian's Go plugins 1.1.1 accept up to 1.0.0
NET_NAME = "rcni-bench"
RSS_KB = 3072  # DESIGN.md: peak RSS per plugin exec under 3 MB


def conf(plugin_type: str, name: str = NET_NAME, **fields) -> dict:
    """A single-plugin network config as a runtime would send it."""
    d = {"cniVersion": CNI_VERSION, "name": name, "type": plugin_type}
    d.update(fields)
    return d


def ip_json(run, *args) -> object:
    """`ip -j ARGS` parsed (untimed helper for setup/verify)."""
    p = run.sh("ip", "-j", *args)
    return json.loads(p.stdout or b"[]")


def link_flags(run, netns_path: str, dev: str) -> list:
    links = ip_json(run, "-n", os.path.basename(netns_path), "link", "show", "dev", dev)
    return links[0].get("flags", []) if links else []


def added_netns(plugin: str, make_conf=None, ifname: str = "eth0"):
    """setup() helper: a fresh netns in which `plugin` ADD already ran (untimed),
    for DEL/CHECK scenarios. Stores run.state["netns"] and run.state["add"]."""
    def setup(run):
        ns = run.netns()
        run.state["netns"] = ns
        cfg = make_conf(run) if make_conf else conf(plugin)
        run.state["conf"] = cfg
        run.state["add"] = run.exec(Exec(plugin, "ADD", cfg, netns=ns, ifname=ifname))
    return setup


def fresh_netns(run):
    """setup() helper: one fresh netns in run.state["netns"]."""
    run.state["netns"] = run.netns()


# The floor: /bin/true spawned exactly like a loopback ADD (same env and stdin size).
# Every scenario also has its own floor column (its own execs replayed with /bin/true);
# this one is the bare figure.
FLOOR = Scenario(
    name="floor",
    description="/bin/true spawned like a plugin (loopback ADD env and stdin)",
    setup=None,
    timed=lambda run: [Exec("loopback", "ADD", conf("loopback"), netns="/run/netns/rcni-bench-floor",
                            ifname="eth0")],
    columns=("floor",),
    runs=500,
)

SCENARIOS = [FLOOR]
