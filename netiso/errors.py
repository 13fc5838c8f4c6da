"""netiso's own error tree.

Every failure the tool can report is one of these. Seams (the Kubernetes module, each cloud
module) translate SDK exceptions into them with ``raise ... from exc`` so nothing above a seam
ever sees a botocore, google.api_core, azure.core or kubernetes exception. The exit code lives on
the class; ``netiso.cli`` is the one place that turns an error into a process exit.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit-code contract (README, "Exit codes")."""

    OK = 0
    FAILED = 1
    USAGE = 2
    VERIFICATION_FAILED = 3
    PRECONDITION = 4
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


class NetisoError(Exception):
    """Base class: one line saying what failed and why, plus an optional hint (what to do)."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single stderr line the CLI prints for this error."""
        text = self.message.strip().replace("\n", " ")
        if self.hint:
            text = f"{text} ({self.hint.strip()})"
        return text


class OperationFailed(NetisoError):
    """An operation failed: API error, timeout, cloud error (exit 1)."""

    exit_code = ExitCode.FAILED


class UsageError(NetisoError):
    """Bad input: flags, values files, kubeconfigs, CIDRs, unknown names (exit 2)."""

    exit_code = ExitCode.USAGE


class NotImplementedYet(UsageError):
    """A command whose capability has not landed yet (exit 2, never fake output)."""

    def __init__(self, command: str) -> None:
        super().__init__(f"netiso {command}: not implemented yet")


class VerificationFailed(NetisoError):
    """Real traffic (or an expectation) disagreed with what the policies say (exit 3)."""

    exit_code = ExitCode.VERIFICATION_FAILED


class PreconditionFailed(NetisoError):
    """Unsupported cluster, conflicting plugin, or a disruptive change without --yes (exit 4)."""

    exit_code = ExitCode.PRECONDITION


class Interrupted(NetisoError):
    """Ctrl-C during a run that reports what it did before stopping (exit 130)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted (Ctrl-C)")


class OutputError(NetisoError):
    """The result could not be written to stdout (exit 1; a reader that left is not an error).

    ``reader_left`` is set for a broken pipe (``netiso render | head``): the CLI exits 0 then,
    as a filter in a pipeline should. A full disk, ``/dev/full`` or a closed stdout is a failure:
    the result the caller asked for is not where it was sent.
    """

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, reader_left: bool = False) -> None:
        super().__init__(message)
        self.reader_left = reader_left
