"""The typer application: global options, command registration, and the one abort path.

Each command lives in its own module under ``netiso.commands`` and keeps heavy imports (cloud
SDKs, the Kubernetes client, YAML) inside its function body, so ``netiso --help`` stays fast.
``main`` is the only place that turns an exception into an exit code; nothing else calls
``sys.exit``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Annotated

import typer
import typer.main
from typer.core import TyperGroup

from netiso.commands import (
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
from netiso.console import GlobalOptions, OutputFormat, Reporter
from netiso.errors import ExitCode, NetisoError

app = typer.Typer(
    name="netiso",
    help=(
        "Turn on NetworkPolicy enforcement, apply a baseline isolation bundle, "
        "and prove it with real traffic."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help, not typer's rich panels: importing typer.rich_utils (rich.markdown,
    # markdown_it) doubled the cost of `netiso --help`, and plain text has no colour for
    # --no-color/NO_COLOR to remove.
    rich_markup_mode=None,
    # Credentials live in local variables of the SDK frames: never print them.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class _Parsed:
    """What the global callback parsed, kept for ``main``'s error handling.

    Once a command fails, click's context is gone; the raw argv cannot say whether "-v" was the
    verbose flag or the value of another option (`render -f -v`), but the parser could.
    """

    verbose: int = 0


_parsed = _Parsed()


@app.callback()
def _global_options(
    ctx: typer.Context,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="One kubeconfig file; default $KUBECONFIG (a :-separated list) or ~/.kube/config.",
            metavar="FILE",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Kubeconfig context to use.", metavar="NAME"),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output",
            "-o",
            help="Result format on stdout: table, json or yaml.",
            case_sensitive=False,
            metavar="FORMAT",
        ),
    ] = OutputFormat.TABLE,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More detail on stderr (repeatable).",
            metavar="",
            show_default=False,
        ),
    ] = 0,
    quiet: Annotated[
        int,
        typer.Option(
            "--quiet",
            "-q",
            count=True,
            help="Less detail on stderr.",
            metavar="",
            show_default=False,
        ),
    ] = 0,
    no_color: Annotated[
        bool,
        typer.Option("--no-color", help="No colour (also when NO_COLOR is set).", metavar=""),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Assume yes for disruptive steps (no command has one yet).",
            metavar="",
        ),
    ] = False,
) -> None:
    _parsed.verbose = verbose
    ctx.obj = Reporter(
        GlobalOptions(
            kubeconfig=kubeconfig,
            context=context,
            output=output,
            verbosity=verbose - quiet,
            no_color=no_color or bool(os.environ.get("NO_COLOR")),
            yes=yes,
        )
    )


for _module in (
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
    _module.register(app)


# Global options, so they may also follow the subcommand (`netiso render -n x -o json`).
_GLOBAL_VALUED = frozenset({"--kubeconfig", "--context", "--output", "-o"})
_GLOBAL_FLAGS = frozenset({"--verbose", "--quiet", "--no-color", "--yes", "-y"})
_SHORT_COUNTS = re.compile(r"-[vq]+")


def _is_global(arg: str) -> tuple[bool, bool]:
    """(is a global option, consumes the next argument)."""
    name = arg.split("=", 1)[0]
    if name in _GLOBAL_VALUED:
        return True, "=" not in arg
    if arg.startswith("-o") and not arg.startswith("--"):
        return True, False  # -ojson
    return arg in _GLOBAL_FLAGS or bool(_SHORT_COUNTS.fullmatch(arg)), False


def hoist_global_options(group: TyperGroup, args: list[str]) -> list[str]:
    """Move global options found after the subcommand in front of it.

    Click only accepts a group's options before the subcommand; people type
    `netiso render -n prod -o json`. Options the subcommand defines itself stay where they are,
    and so does everything after `--`. A valued global option that ends the line without its
    value raises click's "requires an argument" error.
    """
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        is_global, takes_value = _is_global(args[i])
        i += 2 if is_global and takes_value else 1
    if i >= len(args) or args[i] not in group.commands:
        return args
    command = group.commands[args[i]]
    own: dict[str, bool] = {}
    for param in command.params:
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for opt in (*param.opts, *param.secondary_opts):
            own[opt] = takes_value
    moved: list[str] = []
    rest: list[str] = []
    tail = args[i + 1 :]
    j = 0
    while j < len(tail):
        arg = tail[j]
        if arg == "--":
            rest += tail[j:]
            break
        name = arg.split("=", 1)[0]
        if name in own:
            step = 2 if own[name] and "=" not in arg else 1
            rest += tail[j : j + step]
            j += step
            continue
        is_global, takes_value = _is_global(arg)
        if is_global and takes_value and j + 1 == len(tail):
            # Moved in front, it would take the subcommand as its value and the error would name
            # the wrong option; left in place, click would call it unknown. Say what is wrong.
            from typer._click.exceptions import BadOptionUsage

            raise BadOptionUsage(name, f"Option '{name}' requires an argument.")
        if is_global:
            step = 2 if takes_value else 1
            moved += tail[j : j + step]
            j += step
        else:
            rest.append(arg)
            j += 1
    return [*args[:i], *moved, args[i], *rest]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, map every error to the exit-code contract."""
    from typer._click import exceptions as click_exc
    from typer.exceptions import Abort, Exit

    args = sys.argv[1:] if argv is None else list(argv)
    _parsed.verbose = 0  # tests call main() repeatedly in one process
    try:
        group = typer.main.get_command(app)
        assert isinstance(group, TyperGroup)
        args = hoist_global_options(group, args)
        code = group.main(args=args, prog_name="netiso", standalone_mode=False)
        if code == 130:
            # typer turns Ctrl-C (KeyboardInterrupt) into Exit(130) and, not standalone,
            # returns that code instead of raising: without this, an interrupted run exits 0.
            raise KeyboardInterrupt
    except NetisoError as exc:
        if _parsed.verbose > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(f"netiso: error: {exc.one_line()}\n")
        sys.exit(int(exc.exit_code))
    except click_exc.NoArgsIsHelpError as exc:
        # Bare `netiso`: help is the useful answer, exit 0. (Were typer's rich formatter back,
        # it would print while formatting and return "": print only what formatting returned.)
        text = exc.format_message()
        if text.strip():
            sys.stdout.write(text + "\n")
        sys.exit(0)
    except click_exc.ClickException as exc:
        message = exc.format_message().strip().splitlines()
        sys.stderr.write(f"netiso: error: {message[0] if message else type(exc).__name__}\n")
        sys.exit(int(ExitCode.USAGE))
    except Exit as exc:
        sys.exit(exc.exit_code)
    except Abort:
        sys.stderr.write("netiso: aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("netiso: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # `netiso render | head`: the reader left; that is not a failure of ours. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:  # the last line of defence: one line, traceback only with -v
        if _parsed.verbose > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(
            f"netiso: error: internal error: {type(exc).__name__}: {exc} "
            "(rerun with -v for a traceback and report it)\n"
        )
        sys.exit(int(ExitCode.FAILED))
    sys.exit(0)
