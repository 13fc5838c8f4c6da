"""The typer application: global options, command registration, and the one abort path.

Each command lives in its own module under ``netiso.commands`` and keeps heavy imports (cloud
SDKs, the Kubernetes client, YAML) inside its function body, so ``netiso --help`` stays fast.
``main`` is the only place that turns an exception into an exit code; nothing else calls
``sys.exit``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

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
    # Credentials live in local variables of the SDK frames: never print them.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    kubeconfig: Annotated[
        str | None,
        typer.Option("--kubeconfig", help="Kubeconfig file(s); default $KUBECONFIG or ~/.kube/config."),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Kubeconfig context to use.")
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="Result format on stdout.", case_sensitive=False),
    ] = OutputFormat.TABLE,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr (repeatable).")
    ] = 0,
    quiet: Annotated[
        int, typer.Option("--quiet", "-q", count=True, help="Less detail on stderr.")
    ] = 0,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour (also when NO_COLOR is set).")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Assume yes for disruptive steps; required without a TTY."),
    ] = False,
) -> None:
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


def _verbosity(argv: list[str]) -> int:
    return sum(a.count("v") for a in argv if a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"}) + argv.count("--verbose")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, map every error to the exit-code contract."""
    from typer._click import exceptions as click_exc
    from typer.exceptions import Abort, Exit

    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="netiso", standalone_mode=False)
    except NetisoError as exc:
        if _verbosity(args) > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(f"netiso: error: {exc.one_line()}\n")
        sys.exit(int(exc.exit_code))
    except click_exc.NoArgsIsHelpError as exc:
        # Bare `netiso` / bare group: help is the useful answer, exit 0.
        if exc.ctx is not None:
            sys.stdout.write(exc.ctx.get_help() + "\n")
        sys.exit(0)
    except click_exc.UsageError as exc:
        sys.stderr.write(f"netiso: error: {exc.format_message().splitlines()[0]}\n")
        sys.exit(int(ExitCode.USAGE))
    except click_exc.ClickException as exc:
        sys.stderr.write(f"netiso: error: {exc.format_message().splitlines()[0]}\n")
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
        # `netiso render | head`: the reader left; that is not a failure of ours.
        sys.exit(0)
    except Exception as exc:  # the last line of defence: one line, traceback only with -v
        if _verbosity(args) > 0:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(
            f"netiso: error: internal error: {type(exc).__name__}: {exc} "
            "(rerun with -v for a traceback and report it)\n"
        )
        sys.exit(int(ExitCode.FAILED))
    sys.exit(0)
