"""`netiso bootstrap`: from an unprotected cluster to a verified isolated one, in one command.

Thin: parse the flags, call ``netiso.bootstrap.run.bootstrap``, show each step as it runs (a
spinner and one status line per step on a TTY, plain timestamped lines otherwise), print the
summary (a table, or the ``BootstrapResult`` document, schema
``netiso/manifests/schemas/bootstrap.schema.json``), then exit with the first failing step's
code. SIGTERM (a CI job's timeout) becomes Ctrl-C for the run, so verify's cleanup happens and
the exit is 130.
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from netiso.commands import _options
from netiso.commands._common import connected_to, reporter
from netiso.commands.enable import add_provider_flags, provider_flags

if TYPE_CHECKING:
    from rich.console import Console

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``1800``, ``90s``, ``30m``, ``1h``, ``1h30m`` -> seconds (at least 1)."""
    from netiso.errors import UsageError

    value = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh]?)", value)
    if not value or "".join(n + u for n, u in parts) != value or not parts:
        raise UsageError(f"--timeout: {text!r} is not a duration (e.g. 1800, 90s, 30m, 1h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise UsageError(f"--timeout: {text!r} is shorter than 1 s")
    return seconds


def table(data: dict[str, Any]) -> Any:
    from netiso.commands.apply import aligned

    def draw(console: Console) -> None:
        rows = [[s["name"], s["state"], "yes" if s["changed"] else "no", f"{s['seconds']:.1f}",
                 s["detail"]] for s in data["steps"]]
        out = [aligned(["STEP", "STATE", "CHANGED", "SECONDS", "WHAT"], rows)]
        changed = ", ".join(data["changed"]) or "nothing"
        out.append(f"bootstrap {data['outcome']} ({data['provider'] or '-'}, "
                   f"{data['seconds']:.1f} s): changed {changed}")
        console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)

    return draw


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def command() -> click.Command:
    @click.command("bootstrap")
    @_options.values
    @_options.provider(help=_options.ENABLE_PROVIDER_HELP)
    @_options.namespace()
    @_options.selector()
    @_options.force
    @_options.engine
    @_options.dry_run("Detect and plan, show the calls and the apply's server-side dry run; "
                      "change nothing.")
    @click.option("--skip-verify", is_flag=True, default=False,
                  help="Do not prove the result with real traffic.")
    @click.option("--timeout", default="30m", show_default=True, metavar="D",
                  help="How long to wait for each cloud operation and for enforcement "
                       "(1800, 90s, 30m, 1h).")
    @click.pass_context
    def bootstrap(ctx: click.Context, /, values: Path | None, provider: str,
                  namespace: tuple[str, ...], selector: str | None, force: bool,
                  engine: str | None, dry_run: bool, skip_verify: bool, timeout: str,
                  **flags: Any) -> None:
        """Enable enforcement, apply the bundle and verify it: detect, preflight, enable,
        wait, apply, verify.

        Idempotent and resumable: each step reads what already holds, so a rerun finishes an
        interrupted run and a complete one changes nothing. Exit 0 when every step held; the
        first failing step's code otherwise (2 bad input, 4 precondition or no consent for a
        node-recreating step, 1 failure, 3 verification, 130 interrupted).
        """
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bootstrap.run import Request, StepState, bootstrap
        from netiso.config import Values, load_values
        from netiso.console import OutputFormat, Status
        from netiso.kube import connect, read_cluster_ref
        from netiso.profiles import Provider
        from netiso.providers.base import EnableRequest
        from netiso.verify.run import Options

        rep = reporter(ctx)
        opts = rep.options
        requested = parse_provider_option(provider)
        seconds = parse_duration(timeout)

        def load(name: str) -> Values:
            return load_values(values, provider=name, namespaces=namespace or (),
                               selector=selector, force=force)

        load((requested or Provider.GENERIC).value)  # bad input fails before connecting
        identity, extra = provider_flags(flags)

        def verify_options(vals: Values) -> Options:
            return Options(values=vals, provider=vals.provider.value)

        request = Request(
            requested=requested,
            enable=EnableRequest(engine=engine, identity=identity, options=extra,
                                 dry_run=dry_run, consent=opts.yes, timeout=seconds),
            load=load, verify=None if skip_verify else verify_options, force=force,
            dry_run=dry_run)
        can_ask = rep.interactive and opts.output is OutputFormat.TABLE

        def confirm(question: str) -> bool:
            return click.confirm(question, default=False, err=True)

        def running(name: str) -> Any:
            if not rep.interactive:
                rep.info(f"{name}: started")
            if name == "apply":
                # apply draws its own bar; rich before 14 allows one live display at a time.
                return contextlib.nullcontext()
            return rep.working(f"{name} ...")

        def on_step(step: Any) -> None:
            status = {StepState.DONE: Status.DONE, StepState.SKIPPED: Status.SKIPPED,
                      StepState.FAILED: Status.FAILED}.get(step.state, Status.INFO)
            rep.status(status, f"{step.name} ({step.seconds:.1f} s): {step.detail}")

        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with connect(opts.kubeconfig, opts.context) as kube:
                rep.info(connected_to(kube))
                result, error = bootstrap(
                    kube, read_cluster_ref(opts.kubeconfig, opts.context), request,
                    log=rep.info, on_step=on_step, running=running,
                    confirm=confirm if can_ask else None, progress=rep.progress)
        finally:
            signal.signal(signal.SIGTERM, previous)
        data = result.to_json()
        rep.result(data, table(data))
        if error is not None:
            raise error

    return add_provider_flags(bootstrap)

