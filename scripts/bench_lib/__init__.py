"""rcni benchmark harness (stdlib only). Scenario modules import from here."""

from .api import Column, Exec, ExecResult, Run, Scenario  # noqa: F401
