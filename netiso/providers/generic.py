"""Any conformant cluster: the engines every provider may run, and no cloud side.

Calico, Cilium and kube-router are installed on clusters of every kind, so their DaemonSets are
engine evidence only, never provider evidence (GKE's legacy network policy is Calico in
kube-system; AKS offers Calico and Cilium too). A generic cluster has nothing to enable through
a cloud API: enforcement there is whatever CNI the owner installed.
"""

from __future__ import annotations

from netiso.errors import PreconditionFailed
from netiso.profiles import Provider
from netiso.providers.base import (
    ClusterFacts,
    ClusterSideOnly,
    EnableContext,
    EnablePlan,
    EnforcementState,
    Signal,
    engine_signal,
    flag_value,
    state_from,
)


class Generic(ClusterSideOnly):
    name = Provider.GENERIC
    issue = "no cloud side: install a NetworkPolicy-enforcing CNI"

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        out: list[Signal] = []
        for ds in facts.daemonsets:
            if ds.name == "calico-node":
                out.append(engine_signal(ds, "calico", "Calico (calico-node) enforces "
                                         "NetworkPolicy on the nodes it runs on"))
            elif ds.name == "cilium":
                out.append(engine_signal(ds, "cilium", "Cilium enforces NetworkPolicy on the "
                                         "nodes it runs on"))
            elif ds.name == "kube-router":
                argv = next((c.argv for c in ds.containers if c.name == "kube-router"), ())
                # kube-router can run as a router or proxy only; its firewall is what enforces.
                if flag_value(argv, "--run-firewall") == "false":
                    continue
                out.append(engine_signal(ds, "kube-router", "kube-router's firewall enforces "
                                         "NetworkPolicy on the nodes it runs on"))
        return out

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        return {}

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        return state_from(self.evidence(facts))

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        running = [e for e in ctx.state.engines if e.ready > 0]
        if running:
            # Whatever the owner installed already enforces: nothing to turn on, on any cluster.
            return EnablePlan(Provider.GENERIC, running[0].engine, already=running[0].engine)
        raise PreconditionFailed(
            "a generic cluster has no cloud API netiso can turn enforcement on with",
            hint="install a NetworkPolicy-enforcing CNI (Calico, Cilium), or pass --provider",
        )


PROVIDER = Generic()
