"""The reporter: progress and logs on stderr, results on stdout.

On a TTY progress is drawn by rich; otherwise each message is one plain, timestamped line so
runbook logs stay greppable. Results go to stdout only: a table for people, or exactly one JSON
(or YAML) document for scripts. Colour honours ``--no-color`` and the NO_COLOR convention.

Long runs (apply, uninstall) report through the small ``Progress`` protocol below rather than
through the reporter itself: ``netiso.ops`` sits above this module and calls ``start`` and
``advance`` without knowing whether a bar is drawn. The reporter picks the drawing: a rich bar on
stderr when stderr is a terminal and nobody asked for less (no ``-q``, no ``-o json``, whose
readers are scripts), plain lines otherwise. A failure is always its own line, above the bar.

A result that cannot be written (a full disk, ``/dev/full``, a closed stdout, a reader that left
the pipe) becomes ``OutputError``: the CLI says so in one line instead of an internal error.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from netiso.errors import OutputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


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
    verbose: int = 0  # the -v count alone: -v also means "tracebacks", whatever -q says


class Progress(Protocol):
    """What a long run reports while it works; ``netiso.ops`` calls it, the reporter draws it."""

    def start(self, total: int) -> None:
        """The number of items the run will work through (called once, before the first)."""

    def advance(self, item: str, outcome: str, *, failed: bool = False, count: int = 1) -> None:
        """``count`` items finished: ``item`` (e.g. "namespace shop") with its ``outcome``."""


class PlainProgress:
    """Progress as plain lines: failures always, each item at -v, a count every 10% of a long
    run (so a CI log shows a long apply moving without one line per namespace)."""

    # Below this many items a run is short enough that counts would only repeat the result.
    COUNT_FROM = 50

    def __init__(self, reporter: Reporter, description: str) -> None:
        self._rep = reporter
        self._description = description
        self._total = 0
        self._done = 0
        self._next_tenth = 1

    def start(self, total: int) -> None:
        self._total = total

    def advance(self, item: str, outcome: str, *, failed: bool = False, count: int = 1) -> None:
        self._done += count
        if failed:
            self._rep.status(Status.FAILED, f"{item}: {outcome}")
        else:
            self._rep.debug(f"{item}: {outcome}")
        if self._total >= self.COUNT_FROM:
            tenth = self._done * 10 // self._total
            if tenth >= self._next_tenth and self._done < self._total:
                self._next_tenth = tenth + 1
                self._rep.info(f"{self._description}: {self._done}/{self._total}")


class BarProgress:
    """Progress as a rich bar on stderr (a terminal only); lines print above it."""

    def __init__(self, reporter: Reporter, bar: RichProgress, task: TaskID) -> None:
        self._rep = reporter
        self._bar = bar
        self._task = task

    def start(self, total: int) -> None:
        self._bar.update(self._task, total=total)

    def advance(self, item: str, outcome: str, *, failed: bool = False, count: int = 1) -> None:
        if failed:
            self._rep.status(Status.FAILED, f"{item}: {outcome}")
        else:
            self._rep.debug(f"{item}: {outcome}")
        self._bar.advance(self._task, count)


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
        return sys.stderr is not None and sys.stderr.isatty()

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

    @contextmanager
    def progress(self, description: str) -> Iterator[Progress]:
        """A ``Progress`` for one long run: a bar on a terminal, plain lines otherwise."""
        if (not self.interactive or self.options.verbosity < 0
                or self.options.output is OutputFormat.JSON):
            yield PlainProgress(self, description)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        # transient: the bar is scaffolding; once the run ends the result stands alone.
        with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=self._stderr(), transient=True) as bar:
            yield BarProgress(self, bar, bar.add_task(description, total=None))

    @contextmanager
    def working(self, text: str) -> Iterator[None]:
        """A spinner on stderr while one step of a run works (bootstrap): only on a terminal,
        for table output and without -q; transient, so the step's own status line stands."""
        if (not self.interactive or self.options.verbosity < 0
                or self.options.output is not OutputFormat.TABLE):
            yield
            return
        with self._stderr().status(text):
            yield

    # --- results (stdout) --------------------------------------------------------------

    def result(self, data: Any, table: Callable[[Console], None] | None = None) -> None:
        """Print the command's result: one JSON/YAML document, or the table for people."""
        fmt = self.options.output
        with _writing_stdout():
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
        with _writing_stdout():
            sys.stdout.write(text)
            sys.stdout.flush()


@contextmanager
def _writing_stdout() -> Iterator[None]:
    """Turn a failed write of the result into ``OutputError`` (one line, not a traceback)."""
    if sys.stdout is None:  # started with fd 1 closed (`netiso ... >&-`)
        raise OutputError("cannot write the result: stdout is closed")
    try:
        yield
    except BrokenPipeError as exc:
        raise OutputError("the reader of stdout left", reader_left=True) from exc
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EBADF:
            why = "stdout is closed"
        raise OutputError(f"cannot write the result to stdout: {why}") from exc
    except ValueError as exc:  # "I/O operation on closed file": sys.stdout closed in-process
        raise OutputError(f"cannot write the result to stdout: {exc}") from exc
