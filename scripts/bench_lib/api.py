"""The scenario API: what a module in scripts/bench_scenarios/ declares.

A Scenario is run once per *column*: "rcni" (our binaries), "go" (Debian's Go
plugins) and "floor" (the same execs with every binary replaced by /bin/true,
replaying the exact argv/env/stdin of the last rcni or go run).

Per run of a column:
    setup(run)         untimed: make netns, dirs, pre-state (may call run.exec())
    timed(run)         returns the list of Exec to time, in sequence (one timed step); an
                       item may also be a Parallel: execs started together, timed from the
                       first spawn to the last exit (concurrent ADDs into one network)
    verify(run, res)   untimed, first few runs only: return an error string or None
    teardown(run)      untimed, always called; netns made by run.netns() are removed
                       after it automatically
Per column, once: prepare(col) before its first run, cleanup(col) after its last
(e.g. 10,000 host-local reservations for host-local-add-10000).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

Config = Union[bytes, str, dict, list, None, Callable[[list], Union[bytes, str, dict, list]]]


@dataclass
class Exec:
    """One plugin exec, done exactly as a runtime does it.

    plugin:   binary name, resolved in the column's plugin dir (an absolute path is used as is)
    command:  CNI_COMMAND (ADD, DEL, CHECK, VERSION, GC, STATUS)
    config:   stdin. dict/list -> JSON; str/bytes as is; a callable gets the list of
              ExecResult of the execs before it in the same step (e.g. to build prevResult
              for a conflist chain) and returns one of the above. It is called between
              execs, outside the timed region.
    netns, containerid, ifname, args (CNI_ARGS): the usual CNI env. containerid defaults
              to the run's id. An empty netns is passed as an empty CNI_NETNS.
    env:      extra environment variables.
    cni_path: CNI_PATH; default is the column's plugin dir (so bridge delegates to the
              same column's host-local). Use run.dirs["go"] etc. for mixed setups.
    impl:     force "rcni" or "go" for this exec regardless of the column (mixed scenarios).
    ok:       the exec is expected to exit 0; anything else fails the column.
    """

    plugin: str
    command: str
    config: Config = None
    netns: str = ""
    containerid: Optional[str] = None
    ifname: str = "eth0"
    args: Optional[str] = None
    env: dict = field(default_factory=dict)
    cni_path: Optional[str] = None
    impl: Optional[str] = None
    ok: bool = True


@dataclass
class Parallel:
    """Execs started together, as one item of a timed step.

    A runtime that starts many pods at once runs their plugin chains concurrently, and what
    it waits for is the last of them; contention (host-local's lock, the bridge, the
    firewall) only shows when the execs overlap. One Exec per step item cannot express that,
    so this item spawns every exec back to back (posix_spawn each, configs already in their
    stdin pipes), then reaps them all; its time is the wall time from the first spawn to
    the last exit. Every exec must succeed (when `ok`). Configs may not be callables (there
    is no earlier exec of the same item to chain from); they may use the step's earlier items.
    The floor replays the same number of /bin/true spawned together.
    """

    execs: Sequence[Exec]
    label: Optional[str] = None  # per-item label in the report (default "<n> x plugin COMMAND")


@dataclass
class ExecResult:
    plugin: str
    command: str
    path: str
    ns: int  # wall time of spawn + wait, nanoseconds
    status: int  # exit code (or -signal)
    stdout: bytes
    stderr: bytes
    maxrss_kb: Optional[int] = None  # only on RSS runs (GNU time)

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Scenario:
    name: str
    timed: Callable[["Run"], Sequence[Union[Exec, Parallel]]]
    setup: Optional[Callable[["Run"], None]] = None
    teardown: Optional[Callable[["Run"], None]] = None
    verify: Optional[Callable[["Run", list], Optional[str]]] = None
    prepare: Optional[Callable[["Column"], None]] = None
    cleanup: Optional[Callable[["Column"], None]] = None
    plugins: Sequence[str] = ()  # binaries the scenario needs (missing -> column skipped)
    runs: int = 100  # default timed runs per column (--runs overrides)
    description: str = ""
    columns: Sequence[str] = ("rcni", "go", "floor")
    default: bool = True  # part of a plain `scripts/bench` run (else only when named)
    verify_every_run: bool = False  # verify after every run, not only the first few
    # DESIGN.md targets checked in the report: min_ratio (go/rcni median), max_over_floor_ms
    # (rcni median - floor median), max_rss_kb (every rcni exec of the step)
    targets: dict = field(default_factory=dict)


def to_stdin(config: Any) -> bytes:
    if config is None:
        return b""
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode()
    return json.dumps(config, separators=(",", ":")).encode()


class Column:
    """One column of one scenario: its plugin dir and state kept across its runs."""

    def __init__(self, kind: str, scenario: Scenario, dirs: dict, tmpdir: str, harness):
        self.kind = kind  # "rcni" | "go" | "floor"
        self.scenario = scenario
        self.dirs = dirs  # {"rcni": dir, "go": dir}
        self.dir = dirs.get(kind, "")
        self.tmpdir = tmpdir  # private scratch dir for this column, removed at the end
        self.state: dict = {}  # anything prepare() wants to keep for the runs / cleanup()
        # The busy host's foreign state for the column's host namespace (None: an empty host;
        # the floor column never needs it).
        self.foreign = harness.foreign if kind != "floor" else None
        self._h = harness

    def exec(self, e: Exec) -> ExecResult:
        """Untimed exec with this column's binaries; raises on unexpected failure."""
        return self._h.exec_untimed(self, e, None)

    def sh(self, *argv: str, check: bool = True, input: Optional[bytes] = None):
        return self._h.sh(list(argv), check=check, input=input)


class Run:
    """Context of one run of one column. Scenario code uses:

    run.netns()        -> path of a NEW netns (/run/netns/rcni-bench-<pid>-<n>), removed after teardown
    run.netns_name(p)  -> the name of a netns path made by run.netns()
    run.exec(Exec)     -> ExecResult, untimed (raises if it fails and Exec.ok)
    run.sh(*argv)      -> untimed helper command (e.g. "ip", "-n", name, ...)
    run.id             -> unique container id for this run
    run.index          -> run number (warmup runs are negative)
    run.state          -> dict shared by setup/timed/verify/teardown of this run
    run.col            -> the Column (col.state from prepare, col.tmpdir, col.dir)
    run.kind, run.dir, run.dirs
    """

    def __init__(self, col: Column, index: int, rid: str, harness):
        self.col = col
        self.kind = col.kind
        self.dir = col.dir
        self.dirs = col.dirs
        self.index = index
        self.id = rid
        self.state: dict = {}
        self._h = harness
        self._netns: list = []

    def netns(self) -> str:
        name = self._h.netns.add()
        self._netns.append(name)
        return "/run/netns/" + name

    @staticmethod
    def netns_name(path: str) -> str:
        return os.path.basename(path)

    def exec(self, e: Exec) -> ExecResult:
        return self._h.exec_untimed(self.col, e, self)

    def sh(self, *argv: str, check: bool = True, input: Optional[bytes] = None):
        return self._h.sh(list(argv), check=check, input=input)
