"""rcni benchmark harness (stdlib only). Scenario modules import from here."""

from .api import Column, Exec, ExecResult, Parallel, Run, Scenario  # noqa: F401
