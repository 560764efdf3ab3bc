"""Order statistics over ns samples, reported in ms."""

from __future__ import annotations

import math
import statistics


def pct(sorted_ns: list, p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_ns:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_ns)))
    return sorted_ns[k - 1]


def summarize(ns: list) -> dict:
    if not ns:
        return {"n": 0}
    s = sorted(ns)
    ms = 1e6
    return {
        "n": len(s),
        "median_ms": round(statistics.median(s) / ms, 4),
        "p90_ms": round(pct(s, 90) / ms, 4),
        "mean_ms": round(statistics.fmean(s) / ms, 4),
        "min_ms": round(s[0] / ms, 4),
        "max_ms": round(s[-1] / ms, 4),
        "stdev_ms": round(statistics.pstdev(s) / ms, 4),
        "samples_us": [round(x / 1000, 1) for x in ns],  # in run order
    }
