"""Derived figures, the human-readable table and the JSON document."""

from __future__ import annotations

import json


BIN_TARGET = 1536 * 1024  # DESIGN.md: stripped release binaries under 1.5 MB


def derive(res: dict) -> dict:
    cols = res["columns"]

    def med(k):
        c = cols.get(k) or {}
        return c.get("median_ms") if c.get("n") and not c.get("error") else None

    r, g, f = med("rcni"), med("go"), med("floor")
    res["ratio_go_rcni"] = round(g / r, 3) if r and g else None
    res["rcni_minus_floor_ms"] = round(r - f, 4) if r is not None and f is not None else None
    res["go_minus_floor_ms"] = round(g - f, 4) if g is not None and f is not None else None
    checks = []
    t = res.get("targets") or {}
    if "min_ratio" in t:
        v = res["ratio_go_rcni"]
        checks.append({"what": "go/rcni >= %.2fx" % t["min_ratio"], "actual": v,
                       "ok": None if v is None else v >= t["min_ratio"]})
    if "max_over_floor_ms" in t:
        v = res["rcni_minus_floor_ms"]
        checks.append({"what": "rcni-floor <= %.2f ms" % t["max_over_floor_ms"], "actual": v,
                       "ok": None if v is None else v <= t["max_over_floor_ms"]})
    if "max_rss_kb" in t:
        rss = (cols.get("rcni") or {}).get("rss_kb")
        v = max(rss.values()) if rss else None
        checks.append({"what": "rcni peak RSS <= %d KB" % t["max_rss_kb"], "actual": v,
                       "ok": None if v is None else v <= t["max_rss_kb"]})
    res["target_checks"] = checks
    return res


def _verdict(ok) -> str:
    return {True: "ok", False: "MISSED", None: "n/a"}[ok]


def _ms(v) -> str:
    return "-" if v is None else "%.3f" % v


def _col(res: dict, kind: str, key: str):
    c = res["columns"].get(kind) or {}
    return c.get(key)


def _table(header: list, rows: list) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = []
    for i, row in enumerate([header] + rows):
        out.append("  ".join(str(x).rjust(w[j]) if j else str(x).ljust(w[j]) for j, x in enumerate(row)))
        if i == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def human(doc: dict) -> str:
    m = doc["meta"]
    lines = [
        "rcni bench  %s  kernel %s  %d cpus  python %s" % (m["date"], m["kernel"], m["cpus"], m["python"]),
        "rcni: %s" % (m["rcni_dir"] or "-"),
        "go:   %s%s" % (m["go_dir"] or "-", ("  (%s)" % m["go_version"]) if m.get("go_version") else ""),
        "host: %s" % m.get("host", "-"),
        "times in ms per timed step (spawn..wait4); floor = /bin/true with the same env+stdin, same runs",
        "",
    ]
    header = ["scenario", "runs", "rcni med", "rcni p90", "go med", "go p90", "go/rcni",
              "floor med", "rcni-floor", "go-floor"]
    rows = []
    notes = []
    for s in doc["scenarios"]:
        ratio = s.get("ratio_go_rcni")
        rows.append([
            s["name"], s["runs"],
            _ms(_col(s, "rcni", "median_ms")), _ms(_col(s, "rcni", "p90_ms")),
            _ms(_col(s, "go", "median_ms")), _ms(_col(s, "go", "p90_ms")),
            "-" if ratio is None else "%.2fx" % ratio,
            _ms(_col(s, "floor", "median_ms")),
            _ms(s.get("rcni_minus_floor_ms")), _ms(s.get("go_minus_floor_ms")),
        ])
        steps = {k: (s["columns"].get(k) or {}).get("execs") for k in ("rcni", "go", "floor")}
        n = max((len(v) for v in steps.values() if v), default=0)
        for i in range(n):
            def st(k, key):
                v = steps.get(k)
                return v[i].get(key) if v and i < len(v) else None
            label = next((v[i]["exec"] for v in steps.values() if v and i < len(v)), str(i))
            rows.append(["  %d. %s" % (i + 1, label), "",
                         _ms(st("rcni", "median_ms")), _ms(st("rcni", "p90_ms")),
                         _ms(st("go", "median_ms")), _ms(st("go", "p90_ms")),
                         "%.2fx" % (st("go", "median_ms") / st("rcni", "median_ms"))
                         if st("go", "median_ms") and st("rcni", "median_ms") else "-",
                         _ms(st("floor", "median_ms")), "", ""])
        for kind, c in s["columns"].items():
            if c.get("skipped"):
                notes.append("%s [%s] skipped: %s" % (s["name"], kind, c["skipped"]))
            if c.get("error"):
                notes.append("%s [%s] FAILED: %s" % (s["name"], kind, c["error"]))
        if s.get("target_checks"):
            notes.append("%s targets: %s" % (s["name"], "; ".join(
                "%s: %s %s" % (c["what"], "-" if c["actual"] is None else c["actual"], _verdict(c["ok"]))
                for c in s["target_checks"])))
        bg = s.get("background_cpu_pct")
        if bg is not None and s.get("elapsed_s", 0) >= 2 and bg + s.get("steal_pct", 0) >= 10:
            notes.append("%s: noisy machine: %.0f%% of the CPUs busy outside the harness, %.0f%% steal"
                         % (s["name"], bg, s.get("steal_pct", 0)))
    lines.append(_table(header, rows))

    rss_rows = []
    for s in doc["scenarios"]:
        for kind in ("rcni", "go", "floor"):
            rss = _col(s, kind, "rss_kb")
            if rss:
                for plugin, kb in rss.items():
                    rss_rows.append([s["name"], kind, plugin, kb])
    if rss_rows:
        lines += ["", "peak RSS per exec (GNU time %%M, max of %d extra runs; /bin/true under GNU time = %s KB)"
                  % (m["rss_runs"], doc.get("floor_rss_kb") or "?"), ""]
        lines.append(_table(["scenario", "column", "plugin", "KB"], rss_rows))
    elif not m.get("rss"):
        lines += ["", "peak RSS: not measured (%s)" % m.get("rss_note", "disabled")]

    brows = []
    for name, d in sorted(doc["binaries"].items()):
        for kind in ("rcni", "go"):
            b = d.get(kind)
            if b:
                sb = b["stripped_bytes"]
                verdict = "" if kind != "rcni" or sb is None else ("  ok" if sb < BIN_TARGET else "  MISSED")
                brows.append([name, kind, b["bytes"], {True: "yes", False: "no"}.get(b["stripped"], "-"),
                              ("-" if sb is None else str(sb)) + verdict])
    if brows:
        lines += ["", "binaries (target: rcni stripped < %d bytes)" % BIN_TARGET, ""]
        lines.append(_table(["binary", "impl", "bytes", "stripped", "stripped bytes"], brows))
    if m.get("host_notes"):
        lines += [""] + ["host: %s" % n for n in m["host_notes"]]
    if m.get("host_check"):
        lines += ["", m["host_check"]]
    if notes:
        lines += [""] + notes
    lines += ["", "total %.1f s" % m["elapsed_s"]]
    return "\n".join(lines)


def as_json(doc: dict) -> str:
    return json.dumps(doc, indent=1)
