"""``enable``: detect → plan → consent → run → wait, the same for every provider.

Design decisions:

* **One sequence, providers fill in the steps.** Each provider answers three calls of
  :class:`~netiso.providers.base.CloudProvider` (``plan_enable``, ``enable``, ``wait``); the
  order, the consent rule and the result's shape live here once, so ``netiso enable`` and
  ``bootstrap``'s enable step behave the same on every cloud.
* **Plan before anything changes.** ``plan_enable`` reads the cloud and the cluster and raises
  its preflight refusals (exit 4) before any write. A dry run stops after the plan, showing every
  call with its body; enforcement that already holds stops there too, and says which engine.
* **Consent is one rule.** A pending step that recreates or reimages nodes needs ``--yes``, or
  an interactive "yes" on a TTY; without either it is exit 4 and nothing was sent. The question
  is never asked without a TTY or with ``-o json``: scripts get the error, not a hung prompt.
* **Half-done is resumed, not redone.** Providers mark steps whose effect already holds as
  ``done`` from the cloud's and cluster's real state; only pending steps run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netiso.bootstrap.detect import Detection, choose_provider, decide, read_facts
from netiso.errors import PreconditionFailed
from netiso.providers import get
from netiso.providers.base import (
    EnableContext,
    EnablePlan,
    EnableRequest,
    EnforcementState,
)

if TYPE_CHECKING:
    from netiso.kube import ClusterRef, Kube
    from netiso.profiles import Provider


@dataclass(frozen=True)
class EnableResult:
    """What enable did (or, dry, would do): the ``EnableResult`` document of ``-o json``."""

    provider: Provider
    outcome: str  # already-enforcing | enabled | dry-run
    plan: EnablePlan
    detection: Detection
    identity: dict[str, str]
    enforcement: EnforcementState | None = None  # after the wait (enabled) or as seen (already)
    seconds: float = 0.0
    ran: tuple[str, ...] = field(default_factory=tuple)  # step names run now, in order

    def to_json(self) -> dict[str, Any]:
        state = self.enforcement
        return {
            "kind": "EnableResult",
            "provider": self.provider.value,
            "outcome": self.outcome,
            "engine": self.plan.engine,
            "identity": dict(self.identity),
            "cloud": dict(self.plan.cloud),
            "steps": [dict(s.to_json(), ran=s.name in self.ran) for s in self.plan.steps],
            "disruption": self.plan.disruption,
            "warnings": list(self.plan.warnings),
            "enforcement": None if state is None else {
                "status": state.status.value,
                "engines": [e.to_json() for e in state.engines],
            },
            "seconds": round(self.seconds, 1),
        }


def enable(kube: Kube, ref: ClusterRef | None, requested: Provider | None,
           request: EnableRequest, *, force: bool = False,
           log: Callable[[str], None] = lambda _line: None,
           confirm: Callable[[str], bool] | None = None) -> EnableResult:
    """Turn NetworkPolicy enforcement on for this cluster through its provider.

    ``confirm`` asks the user (a TTY and table output only); ``None`` means no one to ask.
    """
    started = time.monotonic()
    facts = read_facts(kube, ref)
    detection = decide(facts)
    choice = choose_provider(requested, detection, force=force)
    log(choice.message)
    seam = get(choice.provider)
    identity = {**seam.identity(facts), **{k: v for k, v in request.identity.items() if v}}
    ctx = EnableContext(facts=facts, state=seam.describe(facts), identity=identity,
                        request=request, kube=kube, log=log)
    plan = seam.plan_enable(ctx)

    def result(outcome: str, state: EnforcementState | None,
               ran: tuple[str, ...] = ()) -> EnableResult:
        return EnableResult(choice.provider, outcome, plan, detection, identity, state,
                            time.monotonic() - started, ran)

    if plan.already is not None and not plan.pending:
        return result("already-enforcing", ctx.state)
    if request.dry_run:
        return result("dry-run", None)
    if plan.needs_consent and not request.consent:
        what = plan.disruption or "a pending step recreates nodes"
        steps = ", ".join(s.name for s in plan.pending if s.disruptive)
        if confirm is None or not confirm(f"{steps}: {what}. Proceed?"):
            raise PreconditionFailed(
                f"{steps} would change the nodes ({what}); nothing was sent",
                hint="rerun with --yes to allow it, or --dry-run to see every call",
            )
    seam.enable(ctx, plan)
    state = seam.wait(ctx, plan)
    return result("enabled", state, tuple(s.name for s in plan.pending))
