"""Scenario registry: every module here (not starting with "_") may define

    SCENARIOS = [Scenario(...), ...]      # registered scenarios, in report order
    def make(name) -> Scenario | None     # optional: parametrised names, e.g. host-local-add-10000

`common` comes first (the floor), then the other modules in alphabetical order.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil

_mods = None


def modules() -> list:
    global _mods
    if _mods is None:
        names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
        names.sort(key=lambda n: (n != "common", n))
        _mods = [importlib.import_module("%s.%s" % (__name__, n)) for n in names]
    return _mods


def registered() -> list:
    out = []
    for m in modules():
        out.extend(getattr(m, "SCENARIOS", []))
    return out


def defaults() -> list:
    return [s for s in registered() if s.default]


def select(patterns: list) -> list:
    """Scenarios for names/globs, in the order given; unknown names go to make()."""
    out, seen = [], set()
    reg = registered()
    for pat in patterns:
        hits = [s for s in reg if fnmatch.fnmatchcase(s.name, pat)]
        if not hits:
            for m in modules():
                mk = getattr(m, "make", None)
                sc = mk(pat) if mk else None
                if sc is not None:
                    hits = [sc]
                    break
        if not hits:
            raise KeyError(pat)
        for s in hits:
            if s.name not in seen:
                seen.add(s.name)
                out.append(s)
    return out
