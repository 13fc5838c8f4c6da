"""The reporter: progress and logs on stderr, results on stdout.

On a TTY progress is drawn by rich; otherwise each message is one plain, timestamped line so
runbook logs stay greppable. Results go to stdout only: a table for people, or exactly one JSON
(or YAML) document for scripts. Colour honours ``--no-color`` and the NO_COLOR convention.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class Status(StrEnum):
    """The fixed status vocabulary shown on screen."""

    DETECTED = "detected"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    INFO = "info"
    WARNING = "warning"


_STATUS_STYLE = {
    Status.DETECTED: "cyan",
    Status.DONE: "green",
    Status.SKIPPED: "yellow",
    Status.FAILED: "red",
    Status.INFO: "blue",
    Status.WARNING: "yellow",
}


@dataclass
class GlobalOptions:
    """Options every command shares (set by the top-level callback in ``netiso.cli``)."""

    kubeconfig: str | None = None
    context: str | None = None
    output: OutputFormat = OutputFormat.TABLE
    verbosity: int = 0
    no_color: bool = False
    yes: bool = False


@dataclass
class Reporter:
    """Writes progress to stderr and results to stdout, per the global options."""

    options: GlobalOptions = field(default_factory=GlobalOptions)
    _err: Console | None = None
    _out: Console | None = None

    @property
    def color(self) -> bool:
        return not (self.options.no_color or os.environ.get("NO_COLOR"))

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty()

    def _stderr(self) -> Console:
        if self._err is None:
            from rich.console import Console

            self._err = Console(
                stderr=True, no_color=not self.color, highlight=False, soft_wrap=True
            )
        return self._err

    def _stdout(self) -> Console:
        if self._out is None:
            from rich.console import Console

            self._out = Console(no_color=not self.color, highlight=False, soft_wrap=True)
        return self._out

    # --- progress (stderr) -------------------------------------------------------------

    def status(self, status: Status, message: str) -> None:
        """One progress line; -q hides all but failures and warnings."""
        if self.options.verbosity < 0 and status not in (Status.FAILED, Status.WARNING):
            return
        if self.interactive:
            style = _STATUS_STYLE[status]
            from rich.markup import escape

            self._stderr().print(f"[{style}]{status.value:>8}[/{style}] {escape(message)}")
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            sys.stderr.write(f"{stamp} {status.value} {message}\n")
            sys.stderr.flush()

    def info(self, message: str) -> None:
        self.status(Status.INFO, message)

    def warn(self, message: str) -> None:
        self.status(Status.WARNING, message)

    def debug(self, message: str) -> None:
        if self.options.verbosity > 0:
            self.status(Status.INFO, message)

    # --- results (stdout) --------------------------------------------------------------

    def result(self, data: Any, table: Callable[[Console], None] | None = None) -> None:
        """Print the command's result: one JSON/YAML document, or the table for people."""
        fmt = self.options.output
        if fmt is OutputFormat.JSON:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        elif fmt is OutputFormat.YAML:
            import yaml

            sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        elif table is not None:
            table(self._stdout())
        else:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()

    def write(self, text: str) -> None:
        """Raw text to stdout (rendered manifests, RBAC YAML)."""
        sys.stdout.write(text)
        sys.stdout.flush()
