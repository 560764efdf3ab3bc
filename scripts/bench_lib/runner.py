"""Runs scenarios: columns interleaved run by run, floor replayed, RSS on extra runs."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import time
from typing import Optional

from . import proc
from .api import Column, Exec, ExecResult, Parallel, Run, Scenario, to_stdin
from .netns import NetnsTracker
from .stats import summarize

TRUE = "/bin/true"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class ExecFailed(RuntimeError):
    pass


def _cpu_snapshot():
    """(busy s, steal s) of the whole machine from /proc/stat, and our own + children's cpu s."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        v = []
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal
    busy = (sum(v[0:3]) + sum(v[5:7])) / hz if len(v) >= 7 else 0.0
    steal = v[7] / hz if len(v) >= 8 else 0.0
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return busy, steal, own, time.monotonic()


def _background(a, b) -> dict:
    """CPU used by everything but the harness and its children while a scenario ran,
    in % of the machine (kernel work we cause, e.g. netns teardown, counts as background)."""
    wall = (b[3] - a[3]) * (os.cpu_count() or 1)
    if wall <= 0:
        return {}
    return {"background_cpu_pct": round(max(0.0, (b[0] - a[0]) - (b[2] - a[2])) / wall * 100, 1),
            "steal_pct": round((b[1] - a[1]) / wall * 100, 1)}


def _fmt_fail(path: str, e: Exec, status: int, out: bytes, err: bytes) -> str:
    def clip(b: bytes) -> str:
        s = b.decode(errors="replace").strip()
        return s if len(s) < 400 else s[:400] + "..."

    return "%s %s exited %d: stdout=%r stderr=%r" % (path, e.command, status, clip(out), clip(err))


def _per_exec(per: list, labels: Optional[list]) -> Optional[list]:
    """Median/p90 of each exec of a multi-exec step (only when every run had the same count)."""
    if not per or len(per[0]) < 2 or any(len(x) != len(per[0]) for x in per):
        return None
    out = []
    for i in range(len(per[0])):
        st = {"exec": labels[i] if labels and i < len(labels) else str(i)}
        st.update(summarize([x[i] for x in per]))
        st.pop("samples_us", None)
        out.append(st)
    return out


class Harness:
    def __init__(self, dirs: dict, tmproot: str, warmup: int = 3, rss_runs: int = 5, verify_runs: int = 2,
                 runs_override: Optional[int] = None, progress: bool = True, rss: bool = True,
                 foreign=None):
        self.dirs = dirs  # {"rcni": dir or None, "go": dir or None}
        self.tmproot = tmproot
        self.warmup = warmup
        self.rss_runs = rss_runs if rss else 0
        self.verify_runs = verify_runs
        self.runs_override = runs_override
        self.progress = progress
        self.netns = NetnsTracker()
        self.rid = 0
        # Last timed step of a rcni/go column, one entry per step item:
        # ([(env, stdin)], started together?, label)
        self._record: Optional[list] = None
        self._labels: dict = {}  # column kind -> ["plugin COMMAND", ...] of its timed step
        self._gnu_time = proc.have_gnu_time() if rss else False
        self.floor_rss_kb: Optional[int] = None
        self.foreign = foreign  # bench_lib.foreign.Foreign for --busy, else None

    # -- helpers used by scenario code -------------------------------------------------
    def sh(self, argv: list, check: bool = True, input: Optional[bytes] = None):
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stderr.decode(errors="replace").strip()))
        return p

    def resolve(self, col: Column, e: Exec) -> str:
        if col.kind == "floor":
            return TRUE
        if os.path.isabs(e.plugin):
            return e.plugin
        kind = e.impl or col.kind
        d = self.dirs.get(kind)
        if not d:
            raise RuntimeError("no plugin dir for %s (needed by %s)" % (kind, e.plugin))
        return os.path.join(d, e.plugin)

    def env_for(self, col: Column, e: Exec, run: Optional[Run]) -> dict:
        kind = e.impl or (col.kind if col.kind != "floor" else "rcni")
        env = dict(BASE_ENV)
        env["CNI_COMMAND"] = e.command
        env["CNI_CONTAINERID"] = e.containerid if e.containerid is not None else (run.id if run else "")
        env["CNI_NETNS"] = e.netns
        env["CNI_IFNAME"] = e.ifname
        env["CNI_PATH"] = e.cni_path if e.cni_path is not None else (self.dirs.get(kind) or "")
        if e.args is not None:
            env["CNI_ARGS"] = e.args
        env.update(e.env)
        return env

    def _one(self, col: Column, e: Exec, run: Optional[Run], prev: list, rss_file: Optional[str] = None):
        cfg = e.config(prev) if callable(e.config) else e.config
        stdin = to_stdin(cfg)
        path = self.resolve(col, e)
        env = self.env_for(col, e, run)
        if rss_file:
            status, out, err, rss = proc.spawn_rss([path], env, stdin, rss_file)
            ns = 0
        else:
            ns, status, out, err = proc.spawn([path], env, stdin)
            rss = None
        r = ExecResult(e.plugin, e.command, path, ns, status, out, err, rss)
        if e.ok and status != 0:
            raise ExecFailed(_fmt_fail(path, e, status, out, err))
        return r, env, stdin

    def _group(self, col: Column, g: Parallel, run: Optional[Run], prev: list, rss_dir: Optional[str] = None):
        """A Parallel item: returns ([ExecResult], wall ns, [(env, stdin)])."""
        children, meta = [], []
        for k, e in enumerate(g.execs):
            if callable(e.config):
                cfg = e.config(prev)
            else:
                cfg = e.config
            stdin = to_stdin(cfg)
            path = self.resolve(col, e)
            env = self.env_for(col, e, run)
            argv = [path]
            rss_file = None
            if rss_dir:
                rss_file = os.path.join(rss_dir, "rss-%d.txt" % k)
                argv = [proc.GNU_TIME, "-f", "%M", "-o", rss_file, path]
            children.append((argv, env, stdin))
            meta.append((e, path, env, stdin, rss_file))
        ns, outs = proc.spawn_many(children)
        results, bad = [], []
        for (e, path, env, stdin, rss_file), (status, out, err) in zip(meta, outs):
            rss = proc.read_rss(rss_file) if rss_file else None
            results.append(ExecResult(e.plugin, e.command, path, ns, status, out, err, rss))
            if e.ok and status != 0:
                bad.append(_fmt_fail(path, e, status, out, err))
        if bad:
            raise ExecFailed("%d of %d parallel execs failed; first: %s" % (len(bad), len(meta), bad[0]))
        return results, ns, [(m[2], m[3]) for m in meta]

    def exec_untimed(self, col: Column, e: Exec, run: Optional[Run]) -> ExecResult:
        try:
            return self._one(col, e, run, [])[0]
        except ExecFailed as ex:
            raise ExecFailed("untimed %s" % ex) from None

    # -- one run of one column -----------------------------------------------------------
    def _replay_floor(self, rss_file: Optional[str]) -> tuple:
        total, rss, per = 0, None, []
        self._labels["floor"] = [x[2] for x in self._record]
        for pairs, parallel, _label in self._record:
            if parallel:
                argv = [TRUE] if not rss_file else [proc.GNU_TIME, "-f", "%M", "-o", rss_file, TRUE]
                ns, outs = proc.spawn_many([(argv, env, stdin) for env, stdin in pairs])
                statuses = [o[0] for o in outs]
                if rss_file:
                    rss = max(rss or 0, proc.read_rss(rss_file) or 0)
                else:
                    total += ns
                    per.append(ns)
            else:
                env, stdin = pairs[0]
                if rss_file:
                    status, out, err, r = proc.spawn_rss([TRUE], env, stdin, rss_file)
                    rss = max(rss or 0, r or 0)
                else:
                    ns, status, out, err = proc.spawn([TRUE], env, stdin)
                    total += ns
                    per.append(ns)
                statuses = [status]
            if any(st != 0 for st in statuses):
                raise ExecFailed("/bin/true exited %s" % statuses)
        return total, ({TRUE: rss} if rss_file else None), per

    def _run(self, sc: Scenario, col: Column, index: int, rss: bool = False) -> tuple:
        """Returns (ns total of the timed step, {plugin: maxrss_kb} or None, [ns per exec])."""
        rss_file = os.path.join(self.tmproot, "rss.txt") if rss else None
        if col.kind == "floor" and tuple(sc.columns) != ("floor",):
            if self._record is None:
                raise ExecFailed("no rcni/go run to replay for the floor")
            return self._replay_floor(rss_file)
        self.rid += 1
        run = Run(col, index, "rcni-bench-%d-%d" % (os.getpid(), self.rid), self)
        interrupted = False
        try:
            if sc.setup:
                sc.setup(run)
            items = list(sc.timed(run))
            results, record, step_ns = [], [], []
            for e in items:
                if isinstance(e, Parallel):
                    rs, ns, pairs = self._group(col, e, run, results, self.tmproot if rss else None)
                    results.extend(rs)
                    step_ns.append(ns)
                    first = e.execs[0]
                    record.append((pairs, True, e.label or "%d x %s %s" % (len(rs), first.plugin, first.command)))
                else:
                    r, env, stdin = self._one(col, e, run, results, rss_file)
                    results.append(r)
                    step_ns.append(r.ns)
                    record.append(([(env, stdin)], False, "%s %s" % (e.plugin, e.command)))
            if col.kind != "floor":
                self._record = record
            self._labels[col.kind] = [x[2] for x in record]
            if sc.verify and (index < self.verify_runs or sc.verify_every_run):
                msg = sc.verify(run, results)
                if msg:
                    raise ExecFailed("verify failed (run %d): %s" % (index, msg))
            total = sum(step_ns)
            rssd = None
            if rss:
                rssd = {}
                for r in results:
                    key = TRUE if col.kind == "floor" else r.plugin
                    rssd[key] = max(rssd.get(key, 0), r.maxrss_kb or 0)
            return total, rssd, step_ns
        except (KeyboardInterrupt, SystemExit):
            interrupted = True
            raise
        finally:
            try:
                if sc.teardown:
                    sc.teardown(run)
            except Exception as ex:  # noqa: BLE001
                # A failing teardown must not turn Ctrl-C / SIGTERM into a failed column.
                if not interrupted:
                    raise
                print("warning: %s teardown after the interruption: %s" % (sc.name, ex), file=sys.stderr)
            finally:
                for path in run._netns:
                    self.netns.release(os.path.basename(path))

    # -- a whole scenario ----------------------------------------------------------------
    def missing(self, sc: Scenario, kind: str) -> Optional[str]:
        if kind == "floor":
            return None
        d = self.dirs.get(kind)
        if not d:
            return "no %s plugin dir" % kind
        for p in sc.plugins:
            path = os.path.join(d, p)
            if not os.access(path, os.X_OK):
                return "%s missing" % path
        return None

    def run_scenario(self, sc: Scenario) -> dict:
        runs = self.runs_override or sc.runs
        res = {"name": sc.name, "description": sc.description, "runs": runs, "columns": {},
               "targets": dict(sc.targets)}
        cols = []
        for kind in sc.columns:
            why = self.missing(sc, kind)
            if why:
                res["columns"][kind] = {"skipped": why}
                continue
            tmp = os.path.join(self.tmproot, "%s-%s" % (sc.name, kind))
            os.makedirs(tmp, exist_ok=True)
            cols.append(Column(kind, sc, self.dirs, tmp, self))
        if not any(c.kind != "floor" for c in cols) and tuple(sc.columns) != ("floor",):
            for c in cols:
                res["columns"][c.kind] = {"skipped": "nothing to compare the floor with"}
            return res
        self._record = None
        self._labels = {}
        samples = {c.kind: [] for c in cols}
        per_exec = {c.kind: [] for c in cols}
        rssd = {c.kind: {} for c in cols}
        failed = {}
        prepared = []
        t_start = time.monotonic()
        cpu0 = _cpu_snapshot()
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for c in cols:
                if sc.prepare and c.kind != "floor":
                    try:
                        sc.prepare(c)
                    except Exception as ex:  # noqa: BLE001 - reported, column dropped
                        failed[c.kind] = "prepare: %s" % ex
                prepared.append(c)
            active = [c for c in cols if c.kind not in failed]

            def attempt(c: Column, i: int, rss: bool = False):
                try:
                    return self._run(sc, c, i, rss)
                except (ExecFailed, RuntimeError, OSError, ValueError, KeyError) as ex:
                    failed[c.kind] = str(ex)
                    active.remove(c)
                    return None

            for w in range(self.warmup):
                for c in list(active):
                    attempt(c, -1 - w)
            for i in range(runs):
                n = len(active)
                if n == 0:
                    break
                order = active[i % n:] + active[:i % n]
                for c in order:
                    if c in active:
                        out = attempt(c, i)
                        if out is not None:
                            samples[c.kind].append(out[0])
                            per_exec[c.kind].append(out[2])
                self.netns.flush()
                if i % 25 == 24:
                    gc.collect()
                    self._progress("%s: %d/%d runs" % (sc.name, i + 1, runs))
            if self._gnu_time:
                for i in range(self.rss_runs):
                    for c in list(active):
                        out = attempt(c, 10 ** 6 + i, rss=True)
                        if out is not None and out[1]:
                            for k, v in out[1].items():
                                rssd[c.kind][k] = max(rssd[c.kind].get(k, 0), v)
        finally:
            self.netns.flush(force=True)
            for c in prepared:
                if sc.cleanup and c.kind != "floor":
                    try:
                        sc.cleanup(c)
                    except Exception as ex:  # noqa: BLE001
                        print("warning: %s cleanup (%s): %s" % (sc.name, c.kind, ex), file=sys.stderr)
                shutil.rmtree(c.tmpdir, ignore_errors=True)
            if gc_was:
                gc.enable()
            self._progress(None)
        for c in cols:
            col = summarize(samples[c.kind])
            steps = _per_exec(per_exec[c.kind], self._labels.get(c.kind))
            if steps:
                col["execs"] = steps
            col["rss_kb"] = rssd[c.kind] or None
            if c.kind in failed:
                col["error"] = failed[c.kind]
            res["columns"][c.kind] = col
        for kind, why in failed.items():
            res["columns"].setdefault(kind, {})["error"] = why
        res["elapsed_s"] = round(time.monotonic() - t_start, 2)
        res.update(_background(cpu0, _cpu_snapshot()))
        return res

    def _progress(self, msg: Optional[str]):
        if not self.progress:
            return
        if msg is None:
            sys.stderr.write("\r\033[K")
        else:
            sys.stderr.write("\r\033[K" + msg)
        sys.stderr.flush()
