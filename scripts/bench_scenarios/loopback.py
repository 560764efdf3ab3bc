"""loopback: ADD into a fresh netns, DEL of a netns that had ADD, bare VERSION."""

from __future__ import annotations

from bench_lib import Exec, Scenario

from .common import RSS_KB, added_netns, conf, fresh_netns, link_flags


def _add(run):
    return [Exec("loopback", "ADD", conf("loopback"), netns=run.state["netns"], ifname="eth0")]


def _verify_add(run, results):
    if "UP" not in link_flags(run, run.state["netns"], "lo"):
        return "lo is not UP after ADD"
    out = results[-1].json()
    if not any(i.get("name") == "lo" for i in out.get("interfaces", [])):
        return "ADD result has no lo interface: %s" % results[-1].stdout[:200]
    return None


def _del(run):
    return [Exec("loopback", "DEL", run.state["conf"], netns=run.state["netns"], ifname="eth0")]


def _verify_del(run, results):
    if "UP" in link_flags(run, run.state["netns"], "lo"):
        return "lo still UP after DEL"
    return None


SCENARIOS = [
    Scenario(
        name="loopback-add",
        description="loopback ADD into a fresh netns",
        setup=fresh_netns,
        timed=_add,
        verify=_verify_add,
        plugins=["loopback"],
        runs=500,
        targets={"min_ratio": 1.5, "max_over_floor_ms": 0.5, "max_rss_kb": RSS_KB},
    ),
    Scenario(
        name="loopback-del",
        description="loopback DEL of a netns that had ADD (same implementation)",
        setup=added_netns("loopback"),
        timed=_del,
        verify=_verify_del,
        plugins=["loopback"],
        runs=500,
        targets={"max_rss_kb": RSS_KB},
    ),
    Scenario(
        name="loopback-version",
        description="bare VERSION: process start, parse, print",
        timed=lambda run: [Exec("loopback", "VERSION", {"cniVersion": "1.0.0"})],
        plugins=["loopback"],
        runs=300,
        targets={"max_rss_kb": RSS_KB},
    ),
]
