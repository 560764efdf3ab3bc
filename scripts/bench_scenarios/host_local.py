"""host-local: ADD and DEL with 0, 1,000, 10,000 and 50,000 existing reservations.

The existing reservations are written once per column in Go's format (one file per
address holding `id\\r\\neth0`, `last_reserved_ip.0` at the last one, as after that many
sequential ADDs) in a /16, then one untimed ADD+DEL lets each implementation settle (for
rcni: the first call after files appeared behind its back rebuilds its index, once).
Each run's ADD is released by an untimed DEL and each DEL's reservation is made by an
untimed ADD, so every run sees the same number of reservations.

`host-local-add-wrapped-N` is the worst case of the round robin: `last_reserved_ip.0` is
reset before each run to just before the N reservations, as after a wrap-around, so the
allocator must get past all of them (Go tries an O_EXCL create on each).

`host-local-{add,del,add-wrapped}-N` works for any N up to 65,000
(`--scenario host-local-add-20000`).
"""

from __future__ import annotations

import ipaddress
import os
import re

from bench_lib import Exec, Scenario

from .common import NET_NAME, RSS_KB, conf

SUBNET = ipaddress.ip_network("10.64.0.0/16")
FIRST = int(SUBNET.network_address) + 2  # .1 is the gateway


def _conf(col) -> dict:
    return conf("bridge", ipam={"type": "host-local", "subnet": str(SUBNET),
                                "dataDir": col.state["data_dir"]})


def _prepare(count: int):
    def prepare(col):
        data = os.path.join(col.tmpdir, "data")
        store = os.path.join(data, NET_NAME)
        os.makedirs(store, mode=0o755)
        for i in range(count):
            ip = str(ipaddress.ip_address(FIRST + i))
            fd = os.open(os.path.join(store, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"pre-%d\r\neth0" % i)
            os.close(fd)
        if count:
            with open(os.path.join(store, "last_reserved_ip.0"), "w") as f:
                f.write(str(ipaddress.ip_address(FIRST + count - 1)))
        col.state["data_dir"] = data
        col.state["store"] = store
        # One netns for every run of the column: host-local never enters it, but
        # CNI_NETNS must name a namespace that is not the plugin's own.
        ns = "rcnibench-hl-%d-%s" % (os.getpid(), col.kind)
        col.sh("ip", "netns", "add", ns)
        col.state["netns"] = "/run/netns/" + ns
        cfg = _conf(col)
        col.exec(Exec("host-local", "ADD", cfg, netns=col.state["netns"], containerid="warmup"))
        col.exec(Exec("host-local", "DEL", cfg, netns=col.state["netns"], containerid="warmup"))
    return prepare


def _rewind(run):
    """Round robin back to just before the existing reservations (file rewritten in
    place, as Go does: the directory itself does not change)."""
    with open(os.path.join(run.col.state["store"], "last_reserved_ip.0"), "w") as f:
        f.write(str(ipaddress.ip_address(FIRST - 1)))


def _cleanup(col):
    ns = col.state.get("netns")
    if ns:
        col.sh("ip", "netns", "del", os.path.basename(ns), check=False)


def _add(run):
    return [Exec("host-local", "ADD", _conf(run.col), netns=run.col.state["netns"])]


def _release(run):
    run.exec(Exec("host-local", "DEL", _conf(run.col), netns=run.col.state["netns"]))


def _verify_add(run, results):
    ips = results[-1].json().get("ips", [])
    if len(ips) != 1:
        return "expected one address: %s" % results[-1].stdout[:200]
    addr = ipaddress.ip_interface(ips[0]["address"])
    if addr.network != SUBNET:
        return "%s is not in %s" % (addr, SUBNET)
    path = os.path.join(run.col.state["store"], str(addr.ip))
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        return "no reservation file for %s: %s" % (addr.ip, e)
    if content != ("%s\r\neth0" % run.id).encode():
        return "reservation %s holds %r" % (addr.ip, content)
    return None


def _reserve(run):
    run.exec(Exec("host-local", "ADD", _conf(run.col), netns=run.col.state["netns"]))


def _del(run):
    return [Exec("host-local", "DEL", _conf(run.col), netns=run.col.state["netns"])]


def _verify_del(run, results):
    for name in os.listdir(run.col.state["store"]):
        path = os.path.join(run.col.state["store"], name)
        if name[0].isdigit() and os.path.isfile(path):
            with open(path, "rb") as f:
                if f.read().startswith(run.id.encode() + b"\r\n"):
                    return "%s still reserved after DEL" % name
    return None


def _runs(count: int) -> int:
    # Go reads every file on each exec (about 9 us per reservation on 2 cores),
    # twice per run (timed + untimed): keep each scenario to seconds.
    if count >= 50000:
        return 10
    if count >= 10000:
        return 30
    if count >= 1000:
        return 100
    return 300


def host_local_add(count: int, default: bool = True) -> Scenario:
    return Scenario(
        name="host-local-add-%d" % count,
        description="host-local ADD with %d existing reservations" % count,
        prepare=_prepare(count),
        cleanup=_cleanup,
        timed=_add,
        teardown=_release,
        verify=_verify_add,
        plugins=["host-local"],
        runs=_runs(count),
        default=default,
        targets={"max_over_floor_ms": 1.0, "max_rss_kb": RSS_KB},
    )


def host_local_del(count: int, default: bool = True) -> Scenario:
    return Scenario(
        name="host-local-del-%d" % count,
        description="host-local DEL with %d other reservations" % count,
        prepare=_prepare(count),
        cleanup=_cleanup,
        setup=_reserve,
        timed=_del,
        verify=_verify_del,
        plugins=["host-local"],
        runs=_runs(count),
        default=default,
        targets={"max_over_floor_ms": 1.0, "max_rss_kb": RSS_KB},
    )


def host_local_add_wrapped(count: int, default: bool = False) -> Scenario:
    return Scenario(
        name="host-local-add-wrapped-%d" % count,
        description="host-local ADD that must skip %d reservations in a row (after a wrap-around)" % count,
        prepare=_prepare(count),
        cleanup=_cleanup,
        setup=_rewind,
        timed=_add,
        teardown=_release,
        verify=_verify_add,
        plugins=["host-local"],
        runs=_runs(count),
        default=default,
        targets={"max_rss_kb": RSS_KB},
    )


def make(name):
    """host-local-add-N / host-local-del-N / host-local-add-wrapped-N: N existing reservations."""
    m = re.fullmatch(r"host-local-(add|del|add-wrapped)-(\d+)", name)
    if not m or int(m.group(2)) > 65000:
        return None
    n = int(m.group(2))
    return {"add": host_local_add, "del": host_local_del, "add-wrapped": host_local_add_wrapped}[m.group(1)](n)


SCENARIOS = [
    host_local_add(0), host_local_add(1000), host_local_add(10000),
    host_local_del(0), host_local_del(1000), host_local_del(10000),
    host_local_add(50000, default=False), host_local_del(50000, default=False),
    host_local_add_wrapped(10000), host_local_add_wrapped(50000),
]
