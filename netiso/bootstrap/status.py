"""Compare the rendered bundle with what the cluster holds, per target namespace. Read-only.

Design decisions:

* **Read-only on purpose.** Status needs only get/list, so it can run under a read-only
  identity (an auditor, a CI check). Hence drift is computed locally instead of by server-side
  dry-run: both sides are normalised the way the API server defaults a NetworkPolicy (a port
  without protocol is TCP; ``policyTypes`` derived from the rules; empty lists and nulls are the
  same as absent) and then compared field by field. The labels netiso sets must be present;
  labels or annotations others add are not drift.
* **Three reads for the whole cluster**: namespaces, NetworkPolicies and pods, each one LIST.
* **Ownership is apply's.** A policy is netiso's (and, outside the bundle, "stale") only by
  ``is_netiso_created``, the two marks prune and uninstall require: the managed-by label *and*
  field manager ``netiso``. A policy someone labelled by hand is not pruned, so calling it
  stale would promise a removal that never comes; it is a foreign policy.
* **Foreign policies** are NetworkPolicies that are neither netiso's nor named like a bundle
  policy (those are compared above) and whose podSelector selects at least one pod of the
  namespace: they widen or narrow what the bundle allows, so an operator reading "in sync"
  should see them beside it.
* **Enforcement** is reported as "unknown": whether the dataplane enforces policies is the
  providers' answer (``netiso detect``), not something the policy objects can show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netiso.bootstrap.apply import is_netiso_created
from netiso.kube import Kube


class PolicyState(StrEnum):
    IN_SYNC = "in sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    STALE = "stale"  # written by netiso but no longer in the bundle: `apply --prune` removes it


# --- pure helpers ---------------------------------------------------------------------------


def _prune_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            pv = _prune_empty(v)
            if pv is None or pv == []:
                continue
            out[k] = pv
        return out
    if isinstance(value, list):
        return [_prune_empty(v) for v in value]
    return value


def normalize_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A NetworkPolicy spec as the API server would store it (for comparison)."""
    norm: dict[str, Any] = _prune_empty(dict(spec or {}))
    for direction in ("ingress", "egress"):
        for rule in norm.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    if "policyTypes" not in norm:
        # The API server's defaulting (SetDefaults_NetworkPolicy): Ingress always, Egress when
        # egress rules are present.
        types = ["Ingress"]
        if norm.get("egress"):
            types.append("Egress")
        norm["policyTypes"] = types
    norm.setdefault("podSelector", {})
    return norm


def spec_differences(desired: Mapping[str, Any], live: Mapping[str, Any], path: str = "spec"
                     ) -> list[str]:
    """The paths where two normalised values differ (for a one-line drift reason)."""
    if isinstance(desired, Mapping) and isinstance(live, Mapping):
        out: list[str] = []
        for key in sorted(set(desired) | set(live)):
            if key not in live:
                out.append(f"{path}.{key} missing")
            elif key not in desired:
                out.append(f"{path}.{key} added")
            else:
                out.extend(spec_differences(desired[key], live[key], f"{path}.{key}"))
        return out
    if isinstance(desired, list) and isinstance(live, list):
        if len(desired) != len(live):
            return [f"{path} has {len(live)} entries, bundle has {len(desired)}"]
        out = []
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            out.extend(spec_differences(d, v, f"{path}[{i}]"))
        return out
    return [] if desired == live else [f"{path} changed"]


def policy_state(desired: Mapping[str, Any], live: Mapping[str, Any] | None
                 ) -> tuple[PolicyState, list[str]]:
    if live is None:
        return PolicyState.MISSING, []
    reasons = spec_differences(normalize_spec(desired.get("spec")),
                               normalize_spec(live.get("spec")))
    want_labels = (desired.get("metadata") or {}).get("labels") or {}
    have_labels = (live.get("metadata") or {}).get("labels") or {}
    for key, value in sorted(want_labels.items()):
        if have_labels.get(key) != value:
            reasons.append(f"label {key} is {have_labels.get(key)!r}, bundle has {value!r}")
    want_notes = (desired.get("metadata") or {}).get("annotations") or {}
    have_notes = (live.get("metadata") or {}).get("annotations") or {}
    for key, value in sorted(want_notes.items()):
        if have_notes.get(key) != value:
            reasons.append(f"annotation {key} differs from the bundle")
    return (PolicyState.DRIFTED, reasons) if reasons else (PolicyState.IN_SYNC, [])


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels; {} selects everything."""
    sel = selector or {}
    for key, value in (sel.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


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
    skipped: list[tuple[str, str]]
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
            "skipped": [{"namespace": n, "reason": r} for n, r in self.skipped],
        }


def build_status(
    desired: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    skipped: Sequence[tuple[str, str]],
    policies: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    server: str,
    context: str | None,
) -> StatusReport:
    """The status report from already-read cluster state. Pure."""
    from netiso.kube import field_managers

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
            selector = (pol.get("spec") or {}).get("podSelector")
            selected = sum(1 for lab in pod_labels[ns] if selector_matches(selector, lab))
            if selected:
                foreign.append(ForeignPolicy(name, selected, field_managers(pol)))
        namespaces.append(NamespaceStatus(ns, rows, foreign, len(pod_labels[ns])))
    return StatusReport(server, context, namespaces, list(skipped))


def read_status(kube: Kube, desired: Sequence[Mapping[str, Any]], targets: Sequence[str],
                skipped: Sequence[tuple[str, str]]) -> StatusReport:
    policies = kube.list_network_policies() if targets else []
    pods = kube.list_pods() if targets else []
    return build_status(desired, targets, skipped, policies, pods,
                        server=kube.server, context=kube.context)
