"""The click application: global options, command registration, and the one abort path.

Each command lives in its own module under ``netiso.commands`` and keeps heavy imports (cloud
SDKs, the Kubernetes client, YAML) inside its function body, so ``netiso --help`` stays fast.
Global options are click parameters of the group *and* (hidden) of every command
(``netiso.commands._options``), so click itself parses them on either side of the command.
``main`` is the only place that turns an exception into an exit code; nothing else calls
``sys.exit``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from dataclasses import dataclass, field

import click

from netiso.commands import (
    _options,
    apply,
    bootstrap,
    detect,
    enable,
    plan,
    render,
    simulate,
    status,
    uninstall,
    verify,
    version,
)
from netiso.console import GlobalOptions, Reporter
from netiso.errors import ExitCode, NetisoError, OutputError


@dataclass
class _Parsed:
    """The options the global callback parsed, kept for ``main``'s error handling.

    Once a command fails, click's context is gone; the raw argv cannot say whether "-v" was the
    verbose flag or the value of another option (`render -f -v`), but the parser could. The
    command-level copies of the global options update this same object.
    """

    options: GlobalOptions = field(default_factory=GlobalOptions)


_parsed = _Parsed()


def _global_options(**given: object) -> None:
    ctx = click.get_current_context()
    _parsed.options = _options.make_options(**given)  # type: ignore[arg-type]
    ctx.obj = Reporter(_parsed.options)


def build() -> click.Group:
    """The `netiso` group with every command and the global options on both sides."""
    group = click.Group(
        name="netiso",
        help=(
            "Turn on NetworkPolicy enforcement, apply a baseline isolation bundle, "
            "and prove it with real traffic."
        ),
        callback=_global_options,
        params=_options.group_params(),
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        epilog="Global options may also follow the command: netiso render -n prod -o json",
    )
    for module in (
        detect,
        enable,
        apply,
        render,
        verify,
        bootstrap,
        plan,
        status,
        uninstall,
        simulate,
        version,
    ):
        command = module.command()
        command.params.extend(_options.command_params(command))
        group.add_command(command)
    return group


def _stdout_to_devnull() -> None:
    """After a failed write, the interpreter's final flush of stdout would fail again (and exit
    120 with a traceback-like note): point fd 1 at /dev/null and drop what is buffered."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    if sys.stdout is not None:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, map every error to the exit-code contract."""
    args = sys.argv[1:] if argv is None else list(argv)
    _parsed.options = GlobalOptions()  # tests call main() repeatedly in one process
    rc: object = 0
    try:
        rc = build().main(args=args, prog_name="netiso", standalone_mode=False)
    except OutputError as exc:
        _stdout_to_devnull()
        if exc.reader_left:
            # `netiso render | head`: the reader left; that is not a failure of ours.
            sys.exit(0)
        sys.stderr.write(f"netiso: error: {exc.one_line()}\n")
        sys.exit(int(exc.exit_code))
    except NetisoError as exc:
        if _parsed.options.verbose > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(f"netiso: error: {exc.one_line()}\n")
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort:
        # click turns KeyboardInterrupt (and EOF at a prompt) into Abort.
        sys.stderr.write("netiso: interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        sys.stderr.write("netiso: interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.exceptions.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # Bare `netiso` (click >= 8.2 raises; older click prints help and exits 0 itself):
            # help is the useful answer, exit 0.
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        message = exc.format_message().strip().splitlines()
        sys.stderr.write(f"netiso: error: {message[0] if message else type(exc).__name__}\n")
        sys.exit(int(ExitCode.USAGE))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # Help or an error line to a reader that left.
        _stdout_to_devnull()
        sys.exit(0)
    except Exception as exc:  # the last line of defence: one line, traceback only with -v
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EBADF):
            # Help (written by click itself, not the reporter) to a full or closed stdout.
            _stdout_to_devnull()
            sys.stderr.write(f"netiso: error: cannot write to stdout: {exc.strerror or exc}\n")
            sys.exit(int(ExitCode.FAILED))
        if _parsed.options.verbose > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(
            f"netiso: error: internal error: {type(exc).__name__}: {exc} "
            "(rerun with -v for a traceback and report it)\n"
        )
        sys.exit(int(ExitCode.FAILED))
    # In non-standalone mode click returns what ctx.exit() was given (help: 0) instead of
    # exiting; a non-zero one is kept, never dropped.
    sys.exit(rc if isinstance(rc, int) else 0)
