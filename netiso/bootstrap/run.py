"""``bootstrap``: detect → preflight → enable → wait → apply → verify, as one resumable run.

Design decisions:

* **No state file: every step's "done" is read from reality.** A run killed anywhere is
  finished by the next one because each step asks the cluster (and the cloud) what already
  holds, never a record of an earlier run: *detect* reads nodes and DaemonSets; *preflight* is
  the provider's read-only ``plan_enable``, which marks each of its steps ``done`` from the
  cloud's and cluster's real state (an operation already applied, Calico already installed);
  *enable* runs only the pending steps; *wait* asks the provider until enforcement holds (an
  engine already enforcing needs no wait); *apply* skips every object whose live copy already
  equals the rendered one (``ops.apply``'s ``already_applied``), so a rerun writes nothing;
  *verify* is a check, run every time (its probes are temporary and removed).
* **Provider-agnostic.** The runner knows only the provider seam (``plan_enable``, ``enable``,
  ``wait``) and the consent rule of ``netiso.bootstrap.enable``; a provider whose cloud side
  has not landed fails the preflight step with its own ``NotImplementedYet`` (exit 2).
* **Every step reports the same way.** A :class:`StepReport` says the step's state (done,
  skipped, failed, not-run), whether it changed anything, a one-line detail and its time.
  The run stops at the first failing step; its error is returned with the report, so the
  caller prints the summary first and exits with that step's code.
* **Dry run stops before writes.** Detect and preflight run; enable says which steps would
  run; apply asks the API server (server-side dry run); wait and verify are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from netiso.bootstrap.detect import choose_provider, decide, read_facts
from netiso.bootstrap.enable import require_consent
from netiso.bootstrap.plan import plural
from netiso.bundle import render_bundle
from netiso.errors import Interrupted, NetisoError, OperationFailed
from netiso.ops.apply import apply_bundle, incomplete_error
from netiso.ops.targets import select_targets
from netiso.providers import get
from netiso.providers.base import (
    CloudProvider,
    EnableContext,
    EnablePlan,
    EnableRequest,
    Enforcement,
    EnforcementState,
)

if TYPE_CHECKING:
    from netiso.config import Values
    from netiso.kube import ClusterRef, Kube
    from netiso.profiles import Provider
    from netiso.verify.run import Options as VerifyOptions

STEPS = ("detect", "preflight", "enable", "wait", "apply", "verify")


class StepState(StrEnum):
    DONE = "done"  # ran to the end (``changed`` says whether it wrote anything)
    SKIPPED = "skipped"  # not run on purpose (--skip-verify, --dry-run)
    FAILED = "failed"
    NOT_RUN = "not-run"  # an earlier step failed


@dataclass
class StepReport:
    name: str
    state: StepState = StepState.NOT_RUN
    changed: bool = False
    detail: str = ""
    seconds: float = 0.0
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state.value, "changed": self.changed,
                "detail": self.detail, "seconds": round(self.seconds, 1),
                "exitCode": self.exit_code}


@dataclass(frozen=True)
class Request:
    """What the user asked bootstrap for, as plain values."""

    requested: Provider | None
    enable: EnableRequest
    load: Callable[[str], Values]  # the values for a provider (flags and file already valid)
    verify: Callable[[Values], VerifyOptions] | None  # None: --skip-verify
    force: bool = False
    dry_run: bool = False


@dataclass
class BootstrapResult:
    server: str
    context: str | None
    dry_run: bool
    steps: list[StepReport] = field(default_factory=lambda: [StepReport(n) for n in STEPS])
    provider: Provider | None = None
    engine: str | None = None
    plan: EnablePlan | None = None
    ran: tuple[str, ...] = ()
    apply: Mapping[str, Any] | None = None  # ApplyResult's summary
    verify: Mapping[str, Any] | None = None  # VerifyResult's verdict and summary
    seconds: float = 0.0

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.name == name)

    @property
    def failed(self) -> StepReport | None:
        return next((s for s in self.steps if s.state is StepState.FAILED), None)

    @property
    def outcome(self) -> str:
        if self.failed is not None:
            return "failed"
        if self.dry_run:
            return "dry-run"
        return "changed" if any(s.changed for s in self.steps) else "unchanged"

    def to_json(self) -> dict[str, Any]:
        failed = self.failed
        plan = self.plan
        return {
            "kind": "BootstrapResult",
            "server": self.server,
            "context": self.context,
            "dryRun": self.dry_run,
            "provider": self.provider.value if self.provider else None,
            "engine": self.engine,
            "outcome": self.outcome,
            "failedStep": failed.name if failed else None,
            "exitCode": failed.exit_code if failed else 0,
            "changed": [s.name for s in self.steps if s.changed],
            "steps": [s.to_json() for s in self.steps],
            "enableSteps": [dict(s.to_json(), ran=s.name in self.ran)
                            for s in (plan.steps if plan else ())],
            "apply": dict(self.apply) if self.apply is not None else None,
            "verify": dict(self.verify) if self.verify is not None else None,
            "seconds": round(self.seconds, 1),
        }


class StepFailed(Exception):
    """Internal: carries the failing step's NetisoError out of the step block."""


def bootstrap(kube: Kube, ref: ClusterRef | None, request: Request, *,
              log: Callable[[str], None] = lambda _line: None,
              on_step: Callable[[StepReport], None] = lambda _s: None,
              running: Callable[[str], Any] | None = None,
              confirm: Callable[[str], bool] | None = None,
              progress: Callable[[str], Any] | None = None,
              ) -> tuple[BootstrapResult, NetisoError | None]:
    """Run bootstrap's steps in order; the report and the first failing step's error.

    ``on_step`` hears of each step as it ends; ``running(text)`` returns a context manager the
    caller shows while a step runs (a spinner on a TTY); ``progress(text)`` one for apply's
    per-namespace progress. Ctrl-C ends the run with ``Interrupted`` (exit 130) and a report.
    """
    result = BootstrapResult(kube.server, kube.context, request.dry_run)
    started = time.monotonic()
    error: NetisoError | None = None

    @contextmanager
    def step(name: str) -> Iterator[StepReport]:
        nonlocal error
        rep = result.step(name)
        t0 = time.monotonic()
        try:
            with (running(name) if running is not None else _nothing()):
                yield rep
            if rep.state is StepState.NOT_RUN:
                rep.state = StepState.DONE
        except KeyboardInterrupt:
            error = Interrupted()
        except NetisoError as exc:
            error = exc
        finally:
            rep.seconds = time.monotonic() - t0
            if error is not None:
                rep.state = StepState.FAILED
                rep.exit_code = int(error.exit_code)
                rep.detail = error.one_line()
            on_step(rep)
        if error is not None:
            raise StepFailed

    with suppress(StepFailed):
        _run(kube, ref, request, result, step, log, confirm, progress)
    result.seconds = time.monotonic() - started
    return result, error


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _run(kube: Kube, ref: ClusterRef | None, request: Request, result: BootstrapResult,
         step: Callable[[str], Any], log: Callable[[str], None],
         confirm: Callable[[str], bool] | None, progress: Callable[[str], Any] | None) -> None:
    with step("detect") as rep:
        facts = read_facts(kube, ref)
        choice = choose_provider(request.requested, decide(facts), force=request.force)
        log(choice.message)
        seam: CloudProvider = get(choice.provider)
        result.provider = choice.provider
        rep.detail = choice.message

    with step("preflight") as rep:
        identity = {**seam.identity(facts),
                    **{k: v for k, v in request.enable.identity.items() if v}}
        ctx = EnableContext(facts=facts, state=seam.describe(facts), identity=identity,
                            request=request.enable, kube=kube, log=log)
        plan = seam.plan_enable(ctx)
        result.plan, result.engine = plan, plan.engine
        pending = plan.pending
        # Enforcement holds when the provider says so *and* the cluster shows a ready engine:
        # a run killed in its wait left every step done (the cloud already says "on", GKE's
        # plan then names the engine) while the engine's pods may not be ready yet.
        holds = (plan.already is not None and not pending
                 and ctx.state.status is Enforcement.ENFORCING)
        rep.detail = (f"{plan.engine} already enforces NetworkPolicy" if holds
                      else f"{len(pending)} of {len(plan.steps)} enable step(s) pending"
                           + (": " + ", ".join(s.name for s in pending) if pending else ""))
        for warning in plan.warnings:
            log(warning)

    with step("enable") as rep:
        if holds:
            rep.detail = f"already enforcing ({plan.engine}): nothing to do"
        elif not pending:
            rep.detail = "every step already done (an earlier run): nothing to run"
        elif request.dry_run:
            rep.state = StepState.SKIPPED
            rep.detail = f"dry run: would run {', '.join(s.name for s in pending)}"
        else:
            require_consent(plan, request.enable, confirm)
            seam.enable(ctx, plan)
            result.ran = tuple(s.name for s in pending)
            rep.changed = any(s.writes for s in pending)
            rep.detail = f"ran {', '.join(result.ran)}"

    with step("wait") as rep:
        if request.dry_run and not holds:
            rep.state = StepState.SKIPPED
            rep.detail = "dry run"
        else:
            state = ctx.state if holds else seam.wait(ctx, plan)
            _require_enforcing(state, plan.engine)
            rep.detail = "enforcing: " + ", ".join(
                f"{e.engine} ({e.daemonset}, ready {e.ready}/{e.desired})"
                for e in state.engines if e.ready > 0)

    values = request.load(choice.provider.value)
    with step("apply") as rep:
        targets, skipped = select_targets(kube, values)
        desired = render_bundle(values, targets)
        with (progress("applying") if progress is not None else _nothing()) as bar:
            report, failure = apply_bundle(kube, desired, targets, skipped,
                                           dry_run=request.dry_run, progress=bar,
                                           before_write=lambda first: _first_apply(first, log))
        summary = report.to_json()["summary"]
        result.apply = summary
        rep.changed = not request.dry_run and report.changed > 0
        would = "would change" if request.dry_run else "changed"
        rep.detail = (f"{plural(summary['namespaces'], 'namespace')}: "
                      f"{summary['created']} created, "
                      f"{summary['updated']} updated, {summary['unchanged']} unchanged, "
                      f"{summary['pruned']} pruned; {report.changed} {would}")
        if failure is not None:
            raise incomplete_error(report, failure)

    with step("verify") as rep:
        if request.dry_run or request.verify is None:
            rep.state = StepState.SKIPPED
            rep.detail = "dry run" if request.dry_run else "skipped with --skip-verify"
        else:
            from netiso.verify.run import verify

            found = verify(kube, request.verify(values), log)
            data = found.to_json()
            result.verify = {"verdict": data["verdict"], "enforcement": data["enforcement"]
                             ["state"], "summary": data["summary"]}
            s = data["summary"]
            rep.detail = (f"{data['verdict']}: {s['flows']} flows, {s['passed']} passed, "
                          f"{s['failed']} failed, {s['probeErrors']} probe errors")
            failure = found.error()
            if failure is not None:
                raise failure


def _first_apply(first: list[Any], log: Callable[[str], None]) -> None:
    """Say which running pods a namespace's first apply isolates (as ``netiso apply`` does)."""
    for ns in first:
        if ns.isolated_pods:
            shown = ", ".join(ns.isolated_pods[:20])
            more = len(ns.isolated_pods) - 20
            log(f"namespace {ns.namespace}: first apply; {len(ns.isolated_pods)} running "
                f"pod(s) become isolated: {shown}" + (f" (+{more} more)" if more > 0 else ""))


def _require_enforcing(state: EnforcementState, engine: str) -> None:
    if state.status is not Enforcement.ENFORCING:
        raise OperationFailed(f"enforcement does not hold after enable ({engine}: "
                              f"{state.status.value})",
                              hint="rerun bootstrap: done steps are not redone")

