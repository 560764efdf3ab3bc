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

Host mode (`scripts/bench --host`, bench_lib/hostmode.py): after use_own_host(), every
HostNetns(tag) is the harness's own network namespace instead (a HostView: enter/leave do
nothing, sh runs the command directly, foreign is ignored because hostmode put the foreign
state into the host once). Scenario modules need no change for that, except that their
host-wide objects must have names that cannot clash on a real host. Links they leave behind
in the host (bridges the plugins created) are deleted when the last HostView of a scenario is
removed: links not there when host mode started, named rcni* with the harness's pid (% 100000)
in the name. A namespace that stands for a container, never the host, is a ContainerNetns.
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


class HostView:
    """The machine's own network namespace, standing in for a HostNetns in host mode."""

    def __init__(self, own):
        self.name = "host"
        self.path = "/proc/%d/ns/net" % os.getpid()
        self._own = own
        own.views += 1
        self._live = True

    def sh(self, *argv: str, check: bool = True, input: bytes | None = None):
        p = subprocess.run(list(argv), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stderr.decode(errors="replace").strip()))
        return p

    def enter(self) -> None:
        pass

    def leave(self) -> None:
        pass

    def remove(self) -> None:
        if self._live:
            self._live = False
            self._own.views -= 1
            if self._own.views == 0:
                self._own.sweep_links()


class OwnHost:
    """Bookkeeping of host mode: the links there before, and the HostViews in use."""

    def __init__(self):
        self.views = 0
        self.tag = str(os.getpid() % 100000)
        self.links_before = set(link_names())

    def ours(self, name: str) -> bool:
        return name.startswith("rcni") and self.tag in name and name not in self.links_before

    def sweep_links(self) -> list:
        gone = [n for n in link_names() if self.ours(n)]
        for n in gone:
            _ip("link", "del", n, check=False)
        return gone


_own_host: OwnHost | None = None


def use_own_host() -> OwnHost:
    """Host mode from now on: HostNetns(...) gives HostViews of the harness's own namespace."""
    global _own_host
    if _own_host is None:
        _own_host = OwnHost()
    return _own_host


def link_names() -> list:
    out = _ip("-o", "link", "show", check=False).stdout.decode(errors="replace")
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


class HostNetns:
    def __new__(cls, tag: str = "", foreign=None):
        # Host mode: the host itself (a HostView; __init__ is then not called). Subclasses
        # (ContainerNetns) always get a namespace of their own.
        if _own_host is not None and cls is HostNetns:
            return HostView(_own_host)
        return super().__new__(cls)

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


class ContainerNetns(HostNetns):
    """A namespace standing for a container that a plugin never enters (portmap's CNI_NETNS):
    made and removed like a HostNetns, but a namespace of its own in host mode too."""

    def __init__(self, tag: str):
        super().__init__(tag)


@atexit.register
def _remove_all() -> None:
    for h in list(_live.values()):
        try:
            h.remove()
        except (OSError, RuntimeError):
            pass
