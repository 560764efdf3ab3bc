"""Network namespaces named rcni-bench-<pid>-<n>, always removed.

Every netns the harness makes is recorded here before `ip netns add` runs and
removed by remove()/remove_all(); remove_all() runs from a finally block, from
atexit and on SIGTERM/SIGHUP (turned into SystemExit). Namespaces left by a
harness that was SIGKILLed (its pid no longer exists) are removed at start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

PREFIX = "rcni-bench-"
NETNS_DIR = "/run/netns"


def _ip(args: list, check: bool = True, input: bytes | None = None):
    p = subprocess.run(["ip"] + args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return p


class NetnsTracker:
    """Deleting a netns returns at once but the kernel tears it down afterwards
    (cleanup_net on a workqueue), which on 2 cores lands in the next timed exec.
    So used namespaces are queued by release() and deleted in one `ip -batch`
    every `batch` of them by flush(), between rounds, followed by a short settle."""

    def __init__(self, batch: int = 100, settle: float = 0.1):
        self.pid = os.getpid()
        self.n = 0
        self.live: set = set()
        self.pending: list = []
        self.batch = batch
        self.settle = settle

    def release(self, name: str) -> None:
        if name in self.live and name not in self.pending:
            self.pending.append(name)

    def flush(self, force: bool = False) -> None:
        if not self.pending or (not force and len(self.pending) < self.batch):
            return
        names, self.pending = self.pending, []
        script = "".join("netns del %s\n" % n for n in names).encode()
        _ip(["-force", "-batch", "-"], check=False, input=script)
        for n in names:
            if not os.path.exists(os.path.join(NETNS_DIR, n)):
                self.live.discard(n)
            else:
                self.remove(n)
        if self.settle:
            time.sleep(self.settle)

    def add(self) -> str:
        self.n += 1
        name = "%s%d-%d" % (PREFIX, self.pid, self.n)
        self.live.add(name)
        _ip(["netns", "add", name])
        return name

    def remove(self, name: str) -> None:
        if name not in self.live:
            return
        p = _ip(["netns", "del", name], check=False)
        if p.returncode == 0 or not os.path.exists(os.path.join(NETNS_DIR, name)):
            self.live.discard(name)
        else:
            print("warning: cannot delete netns %s: %s" % (name, p.stderr.decode(errors="replace").strip()),
                  file=sys.stderr)

    def remove_all(self) -> None:
        self.pending = []
        for name in sorted(self.live):
            self.remove(name)
        # Anything with our pid that escaped the bookkeeping (e.g. Ctrl-C between
        # `ip netns add` finishing and the bookkeeping; cannot happen today, cheap to check).
        for name in list_ours(self.pid):
            self.live.add(name)
            self.remove(name)


def list_all() -> list:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def list_ours(pid: int) -> list:
    pre = "%s%d-" % (PREFIX, pid)
    return [n for n in list_all() if n.startswith(pre)]


def remove_stale() -> list:
    """Remove rcni-bench-<pid>-* of harness processes that no longer exist."""
    removed = []
    rx = re.compile(r"^%s(\d+)-\d+$" % re.escape(PREFIX))
    for name in list_all():
        m = rx.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or os.path.exists("/proc/%d" % pid):
            continue
        if _ip(["netns", "del", name], check=False).returncode == 0:
            removed.append(name)
    return removed
