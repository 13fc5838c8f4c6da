"""A provider for the lab, to drive bootstrap's runner through every enable path on real parts.

The clouds' providers (EKS, GKE, AKS) are not what these tests are about: the runner is. This
provider does on the lab what a cloud's does on its cluster, through the same seam
(``plan_enable`` / ``enable`` / ``wait``): its one enable step creates the ``kube-router``
DaemonSet in kube-system (server-side apply through ``netiso.kube``), the shape in which a
cluster shows its policy engine; its wait polls that DaemonSet until every pod is Ready. The
lab's kube-router processes do the enforcing, and bootstrap's verify step proves it with real
traffic. Evidence and the rest come from the generic provider, so detection is unchanged.

``install()`` puts it in the registry in place of the generic provider; a CLI process picks it
up with ``python -c "import tests.cluster.lab_provider as p; p.install(); ..."``. Environment:
``LAB_PROVIDER_DISRUPTIVE=1`` marks the step as recreating nodes (consent needed);
``LAB_PROVIDER_KILL_AFTER_ENABLE=1`` SIGKILLs the process right after the step's write, before
the wait, as a crash or a killed CI job would.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from netiso.errors import OperationFailed
from netiso.kube import DAEMONSET
from netiso.profiles import Profile, Provider
from netiso.providers.base import (
    ClusterFacts,
    EnableContext,
    EnablePlan,
    EnforcementState,
    EngineSeen,
    Signal,
    Step,
)
from netiso.providers.generic import PROVIDER as GENERIC

BUSYBOX_IMAGE = "busybox:1.36"
NAME, NAMESPACE = "kube-router", "kube-system"
CLI = ("import tests.cluster.lab_provider as p; p.install(); "
       "from netiso.cli import main; main()")


def daemonset() -> dict[str, Any]:
    labels = {"app": "kube-router-lab"}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "kube-router", "image": BUSYBOX_IMAGE,
                "command": ["sleep", "86400"]}]}}},
    }


class LabProvider:
    name = Provider.GENERIC
    issue = "lab"

    @property
    def profile(self) -> Profile:
        return GENERIC.profile

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        return GENERIC.evidence(facts)

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        return GENERIC.identity(facts)

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        return GENERIC.describe(facts)

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        running = [e for e in ctx.state.engines if e.ready > 0]
        if running:
            return EnablePlan(Provider.GENERIC, running[0].engine, already=running[0].engine)
        exists = bool(ctx.facts.daemonsets_named(NAME, NAMESPACE))
        step = Step("install-engine", f"create DaemonSet {NAMESPACE}/{NAME}",
                    disruptive=os.environ.get("LAB_PROVIDER_DISRUPTIVE") == "1",
                    call={"serverSideApply": f"apps/v1 DaemonSet {NAMESPACE}/{NAME}"},
                    done=exists)
        return EnablePlan(Provider.GENERIC, "kube-router", (step,),
                          disruption="every node (lab)" if step.disruptive else None)

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        for step in plan.pending:
            ctx.log(f"{step.name}: {step.description}")
            ctx.kube.server_side_apply(daemonset())
        if os.environ.get("LAB_PROVIDER_KILL_AFTER_ENABLE") == "1":
            os.kill(os.getpid(), signal.SIGKILL)

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        deadline = time.monotonic() + min(ctx.request.timeout, 120)
        while True:
            found = [d for d in ctx.kube.list_objects(DAEMONSET, NAMESPACE)
                     if d["metadata"]["name"] == NAME]
            status = found[0].get("status") or {} if found else {}
            desired, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
            if desired and ready == desired:
                return EnforcementState((EngineSeen("kube-router", f"{NAMESPACE}/{NAME}",
                                                    desired, ready),))
            if time.monotonic() > deadline:
                raise OperationFailed(f"DaemonSet {NAMESPACE}/{NAME}: ready {ready}/{desired}")
            time.sleep(0.5)


PROVIDER = LabProvider()


def install() -> None:
    from netiso import providers

    providers._MODULES[Provider.GENERIC] = __name__
