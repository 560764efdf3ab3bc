"""scripts/bench command line."""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import binaries, netns, report
from .foreign import Foreign
from .hostmode import HostMode
from .proc import have_gnu_time
from .runner import Harness

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SCRIPTS)
GO_DIR = "/usr/lib/cni"


def parse(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark rcni plugins side by side with the Go reference plugins "
                    "(interleaved runs, fresh netns per container, /bin/true floor). Needs root.")
    p.add_argument("--json", action="store_true", help="print one JSON document with every figure")
    p.add_argument("--runs", type=int, help="timed runs per column (default: per scenario)")
    p.add_argument("--scenario", nargs="+", action="extend", metavar="NAME",
                   help="scenario names or globs (e.g. 'loopback-*', host-local-add-10000); default: all defaults")
    p.add_argument("--rcni-dir", help="dir with our binaries (default: where scripts/build-release.sh puts them, target/<triple>/release, built if missing)")
    p.add_argument("--go-dir", default=GO_DIR, help="dir with the Go plugins (default: %(default)s)")
    p.add_argument("--no-go", action="store_true", help="skip the Go column")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per column first (default: %(default)s)")
    p.add_argument("--rss-runs", type=int, default=5,
                   help="extra runs per column under GNU time for peak RSS (default: %(default)s)")
    p.add_argument("--no-rss", action="store_true", help="do not measure RSS")
    p.add_argument("--build", action="store_true", help="always run scripts/build-release.sh first")
    p.add_argument("--no-build", action="store_true", help="never build, even if binaries are missing")
    p.add_argument("--list", action="store_true", help="list registered scenarios and exit")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--busy", action="store_true",
                      help="each column's throw-away host namespace first gets a busy host's foreign "
                           "state: 1,000 iptables nat rules of another owner, 20 other nftables "
                           "tables, 100,000 conntrack entries (bench_lib/foreign.py)")
    mode.add_argument("--host", action="store_true",
                      help="run in this machine's own network namespace instead of throw-away ones, "
                           "with a busy node's foreign state that the harness adds first and removes "
                           "afterwards (1,000 foreign nat rules, 1,000 portmap and 1,000 bridge ipMasq "
                           "attachments in Go's layout, 20 nftables tables, 100,000 conntrack entries), "
                           "then checks the host is as before (bench_lib/hostmode.py)")
    p.add_argument("--busy-conntrack", type=int, default=100_000, metavar="N",
                   help="conntrack entries for --busy and --host (default: %(default)s)")
    return p.parse_args(argv)


def _cmd_out(argv, cwd=None):
    try:
        p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20)
        return p.stdout.decode().strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _static_release_dir():
    """Where scripts/build-release.sh puts the plugins (target/<triple>/release; it picks the
    triple: musl when installed, else the host's)."""
    try:
        out = subprocess.run([os.path.join(REPO, "scripts", "build-release.sh"), "--dir"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.path.join(REPO, "target", "release")
    return out or os.path.join(REPO, "target", "release")


def _remove_stale_tmp():
    tmp = tempfile.gettempdir()
    for n in os.listdir(tmp):
        m = re.match(r"^rcni-bench-(\d+)-", n)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists("/proc/" + m.group(1)):
            shutil.rmtree(os.path.join(tmp, n), ignore_errors=True)


def _on_signal(signo, _frame):
    raise SystemExit(128 + signo)


def main(argv=None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, SCRIPTS)
    import bench_scenarios as reg

    if a.list:
        for s in reg.registered():
            print("%-28s %s%s" % (s.name, s.description, "" if s.default else "  (not in default run)"))
        for m in reg.modules():
            if getattr(m, "make", None) and m.make.__doc__:
                print("%-28s %s" % ("(%s)" % m.__name__.split(".")[-1], m.make.__doc__.strip().splitlines()[0]))
        return 0

    if os.geteuid() != 0:
        print("scripts/bench must run as root (it creates network namespaces and execs CNI plugins "
              "into them): try `sudo scripts/bench`", file=sys.stderr)
        return 2
    if not shutil.which("ip"):
        print("scripts/bench needs iproute2 (`ip`)", file=sys.stderr)
        return 2

    try:
        scenarios = reg.select(a.scenario) if a.scenario else reg.defaults()
    except KeyError as ex:
        print("unknown scenario %s (see --list)" % ex, file=sys.stderr)
        return 2
    needed = sorted({p for s in scenarios for p in s.plugins})

    rcni_dir = os.path.abspath(a.rcni_dir) if a.rcni_dir else _static_release_dir()
    missing = [p for p in needed if not os.access(os.path.join(rcni_dir, p), os.X_OK)]
    want_build = not a.no_build and not a.rcni_dir and (a.build or missing)
    if want_build and not shutil.which("cargo"):
        print("warning: cargo not in PATH (sudo resets it: try `sudo env PATH=$PATH scripts/bench`); "
              "not building %s" % ", ".join(missing), file=sys.stderr)
    elif want_build:
        print("building: scripts/build-release.sh (missing: %s)" % (", ".join(missing) or "-"), file=sys.stderr)
        p = subprocess.run([os.path.join(REPO, "scripts", "build-release.sh")], cwd=REPO,
                           stdout=subprocess.DEVNULL)
        if p.returncode != 0:
            print("warning: scripts/build-release.sh failed; rcni columns of missing binaries are skipped",
                  file=sys.stderr)
    go_dir = None if a.no_go else (os.path.abspath(a.go_dir) if os.path.isdir(a.go_dir) else None)

    stale = netns.remove_stale()
    if stale:
        print("removed %d netns left by dead bench runs" % len(stale), file=sys.stderr)
    _remove_stale_tmp()

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    tmproot = tempfile.mkdtemp(prefix="rcni-bench-%d-" % os.getpid())
    rss = not a.no_rss
    rss_note = None
    if not rss:
        rss_note = "--no-rss"
    elif not have_gnu_time():
        rss, rss_note = False, "GNU time (/usr/bin/time, Debian package `time`) not found"
    foreign = Foreign(conntrack=a.busy_conntrack) if a.busy else None
    h = Harness({"rcni": rcni_dir, "go": go_dir}, tmproot, warmup=a.warmup, rss_runs=a.rss_runs,
                runs_override=a.runs, progress=not a.quiet and sys.stderr.isatty(), rss=rss,
                foreign=foreign)

    own = HostMode([rcni_dir, go_dir], conntrack=a.busy_conntrack) if a.host else None

    def cleanup():
        h.netns.remove_all()
        if own is not None:
            own.finish()
        shutil.rmtree(tmproot, ignore_errors=True)

    atexit.register(cleanup)
    t0 = time.monotonic()
    results = []
    try:
        if own is not None:
            try:
                own.start()
            except RuntimeError as ex:
                print("host mode: %s" % ex, file=sys.stderr)
                return 2
        for sc in scenarios:
            if not a.quiet:
                print("running %s ..." % sc.name, file=sys.stderr)
            results.append(report.derive(h.run_scenario(sc)))
        floor_rss = None
        if rss:
            from .proc import spawn_rss
            vals = [spawn_rss(["/bin/true"], {"PATH": "/usr/bin:/bin"}, b"", os.path.join(tmproot, "f"))[3]
                    for _ in range(max(1, a.rss_runs))]
            floor_rss = max(v for v in vals if v is not None) if any(vals) else None
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        cleanup()
        if own is not None:
            print(own.check_line(), file=sys.stderr)
        return 130
    finally:
        cleanup()
    host_check = own.check_line() if own is not None else None

    bins = {}
    for p in needed:
        d = {"rcni": binaries.describe(os.path.join(rcni_dir, p))}
        if go_dir:
            d["go"] = binaries.describe(os.path.join(go_dir, p))
        bins[p] = d
    doc = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rcni_dir": rcni_dir,
            "rcni_git": _cmd_out(["git", "describe", "--always", "--dirty"], cwd=REPO),
            "go_dir": go_dir,
            "go_version": _cmd_out(["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"])
            if go_dir == GO_DIR else None,
            "warmup": a.warmup,
            "rss": rss,
            "rss_note": rss_note,
            "rss_runs": a.rss_runs if rss else 0,
            "timing": "perf_counter_ns around os.posix_spawn + os.wait4; stdin pipe, stdout/stderr memfd",
            "elapsed_s": round(time.monotonic() - t0, 1),
            "host": own.describe() if own else
            ("throw-away host namespaces, each with a %s" % foreign.describe() if foreign
             else "empty throw-away host namespaces"),
            "host_check": host_check,
            "host_notes": own.notes if own else [],
        },
        "floor_rss_kb": floor_rss,
        "scenarios": results,
        "binaries": bins,
    }
    print(report.as_json(doc) if a.json else report.human(doc))
    bad = any(c.get("error") for s in results for c in s["columns"].values())
    if own is not None and own.fails:
        bad = True
    return 1 if bad else 0
