"""A throw-away "host" network namespace that the harness itself enters, so that
plugins which change the host's firewall (portmap) are spawned inside it with
no extra exec in the timed region.

Python 3.11 has no os.setns, and posix_spawn cannot switch namespaces, so the
harness's own (single) thread calls libc setns(2) through ctypes before the
spawn and switches back after: the spawned plugin inherits the namespace of
the thread that spawned it. Both switches happen in untimed setup/teardown.

    h = HostNetns("pm-rcni")       # ip netns add rcni-bench-host-<pid>-pm-rcni
    h.enter(); ...spawn plugins...; h.leave()
    h.remove()                     # also done at exit, and for dead pids on the next start
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import subprocess

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
PREFIX = "rcni-bench-host-"

_libc = ctypes.CDLL(None, use_errno=True)
_live: dict = {}


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


def _ip(*args: str, check: bool = True):
    p = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    return p


def remove_stale() -> None:
    """Deletes host namespaces left by harness processes that no longer exist."""
    rx = re.compile(r"^%s(\d+)-" % re.escape(PREFIX))
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return
    for name in names:
        m = rx.match(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/%s" % m.group(1)):
            _ip("netns", "del", name, check=False)


class HostNetns:
    def __init__(self, tag: str, foreign=None):
        """`foreign` (a bench_lib.foreign.Foreign, from `col.foreign`): a busy host's
        foreign state to put in first (`scripts/bench --busy`)."""
        remove_stale()
        self.name = "%s%d-%s" % (PREFIX, os.getpid(), tag)
        self.path = os.path.join(NETNS_DIR, self.name)
        self._orig = -1
        _ip("netns", "add", self.name)
        _live[self.name] = self
        _ip("-n", self.name, "link", "set", "lo", "up")
        if foreign is not None:
            foreign.populate(self)

    def sh(self, *argv: str, check: bool = True, input: bytes | None = None):
        """Runs a command inside the namespace (untimed helper)."""
        p = subprocess.run(["ip", "netns", "exec", self.name] + list(argv), input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stderr.decode(errors="replace").strip()))
        return p

    def enter(self) -> None:
        """Moves the calling thread (and so everything it spawns) into the namespace."""
        if self._orig >= 0:
            return
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        except OSError:
            os.close(orig)
            raise
        finally:
            os.close(fd)
        self._orig = orig

    def leave(self) -> None:
        """Back to the namespace the thread was in before enter()."""
        if self._orig < 0:
            return
        try:
            _setns(self._orig)
        finally:
            os.close(self._orig)
            self._orig = -1

    def remove(self) -> None:
        self.leave()
        if _live.pop(self.name, None) is not None:
            _ip("netns", "del", self.name, check=False)


@atexit.register
def _remove_all() -> None:
    for h in list(_live.values()):
        try:
            h.remove()
        except (OSError, RuntimeError):
            pass
