"""Compare the rendered bundle with what the cluster holds, per target namespace. Read-only.

Design decisions:

* **Read-only on purpose.** Status needs only get/list, so it can run under a read-only
  identity (an auditor, a CI check). Hence drift is computed locally instead of by server-side
  dry-run: both sides are normalised the way the API server defaults a NetworkPolicy (a port
  without protocol is TCP; ``policyTypes`` derived from the rules; empty lists and nulls are the
  same as absent) and then compared field by field (``ops.drift``). The labels netiso sets must
  be present; labels or annotations others add are not drift.
* **Three reads for the whole cluster**: namespaces, NetworkPolicies and pods, each one LIST.
* **Ownership is apply's** (``ops.ownership``). A policy is netiso's (and, outside the
  bundle, "stale") only by ``is_netiso_created``, the two marks prune and uninstall require: the
  managed-by label *and* field manager ``netiso``. A policy someone labelled by hand is not
  pruned, so calling it stale would promise a removal that never comes; it is a foreign policy.
* **Foreign policies** are NetworkPolicies that are neither netiso's nor named like a bundle
  policy (those are compared above) and whose podSelector selects at least one pod of the
  namespace: they widen or narrow what the bundle allows, so an operator reading "in sync"
  should see them beside it. "Selects" is the evaluator's label-selector matching
  (``policy.label_selector``), the one implementation netiso has.
* **Enforcement** is reported as "unknown": whether the dataplane enforces policies is the
  providers' answer (``netiso detect``), not something the policy objects can show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netiso.config import Skipped
from netiso.kube import Kube
from netiso.ops.drift import PolicyState, policy_state
from netiso.ops.ownership import field_managers, is_netiso_created
from netiso.policy import LabelSelector, PolicyInputError, label_selector

__all__ = ["NamespaceStatus", "PolicyState", "StatusReport", "build_status", "read_status"]


def _pod_selector(policy: Mapping[str, Any]) -> LabelSelector | None:
    """The policy's podSelector; None (selects no pod) for one the evaluator cannot read,
    which the API server would not have stored."""
    try:
        return label_selector((policy.get("spec") or {}).get("podSelector"))
    except PolicyInputError:
        return None


# --- the report -----------------------------------------------------------------------------


@dataclass
class PolicyStatus:
    name: str
    state: PolicyState
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state.value, "reasons": self.reasons}


@dataclass
class ForeignPolicy:
    name: str
    selected_pods: int
    managers: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "selectedPods": self.selected_pods, "managers": self.managers}


@dataclass
class NamespaceStatus:
    namespace: str
    policies: list[PolicyStatus]
    foreign: list[ForeignPolicy]
    pods: int

    @property
    def state(self) -> PolicyState:
        states = {p.state for p in self.policies}
        if not states or states == {PolicyState.IN_SYNC}:
            return PolicyState.IN_SYNC
        if states <= {PolicyState.MISSING}:
            return PolicyState.MISSING
        return PolicyState.DRIFTED

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "state": self.state.value,
            "pods": self.pods,
            "policies": [p.to_json() for p in self.policies],
            "foreignPolicies": [f.to_json() for f in self.foreign],
        }


@dataclass
class StatusReport:
    server: str
    context: str | None
    namespaces: list[NamespaceStatus]
    skipped: list[Skipped]
    enforcement: str = "unknown"

    @property
    def in_sync(self) -> bool:
        return all(ns.state is PolicyState.IN_SYNC for ns in self.namespaces)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for ns in self.namespaces:
            counts[ns.state.value] += 1
        return {
            "kind": "StatusResult",
            "server": self.server,
            "context": self.context,
            "enforcement": self.enforcement,
            "inSync": self.in_sync,
            "summary": {"inSync": counts.get(PolicyState.IN_SYNC.value, 0),
                        "drifted": counts.get(PolicyState.DRIFTED.value, 0),
                        "missing": counts.get(PolicyState.MISSING.value, 0)},
            "namespaces": [ns.to_json() for ns in self.namespaces],
            "skipped": [s.to_json() for s in self.skipped],
        }


def build_status(
    desired: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    skipped: Sequence[Skipped],
    policies: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    server: str,
    context: str | None,
) -> StatusReport:
    """The status report from already-read cluster state. Pure."""
    target_set = set(targets)
    live: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for pol in policies:
        meta = pol["metadata"]
        if meta["namespace"] in target_set:
            live[meta["namespace"]][meta["name"]] = pol
    pod_labels: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        pod_labels[pod["metadata"]["namespace"]].append(pod["metadata"].get("labels") or {})
    wanted: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for obj in desired:
        if obj.get("kind") == "NetworkPolicy":
            wanted[obj["metadata"]["namespace"]][obj["metadata"]["name"]] = obj

    namespaces: list[NamespaceStatus] = []
    for ns in sorted(targets):
        rows: list[PolicyStatus] = []
        for name, want in sorted(wanted[ns].items()):
            state, reasons = policy_state(want, live[ns].get(name))
            rows.append(PolicyStatus(name, state, reasons))
        foreign: list[ForeignPolicy] = []
        for name, pol in sorted(live[ns].items()):
            if name in wanted[ns]:  # a bundle policy: its row above says how it compares
                continue
            if is_netiso_created(pol)[0]:
                rows.append(PolicyStatus(name, PolicyState.STALE,
                                         ["not in the bundle; `netiso apply` prunes it"]))
                continue
            selector = _pod_selector(pol)
            selected = sum(1 for lab in pod_labels[ns]
                           if selector is not None and selector.matches(lab))
            if selected:
                foreign.append(ForeignPolicy(name, selected, field_managers(pol)))
        namespaces.append(NamespaceStatus(ns, rows, foreign, len(pod_labels[ns])))
    return StatusReport(server, context, namespaces, list(skipped))


def read_status(kube: Kube, desired: Sequence[Mapping[str, Any]], targets: Sequence[str],
                skipped: Sequence[Skipped]) -> StatusReport:
    policies = kube.list_network_policies() if targets else []
    pods = kube.list_pods() if targets else []
    return build_status(desired, targets, skipped, policies, pods,
                        server=kube.server, context=kube.context)
