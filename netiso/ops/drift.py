"""How a live NetworkPolicy compares with the rendered one: normalise, compare, state. Pure.

Design decisions:

* **Compared as the API server stores it.** Both sides are normalised the way the API server
  defaults a NetworkPolicy (a port without protocol is TCP; ``policyTypes`` derived from the
  rules, by the evaluator's one rule ``policy.default_policy_types``; empty lists and nulls are
  the same as absent) and then compared field by field, so a rendered object and its stored copy
  are "in sync" without a server round trip. Status runs read-only on this; apply uses it to skip
  objects already in place.
* **netiso's labels and annotations must be there; others' are not drift.** A label another
  tool adds (a cost-centre label, an admission controller's annotation) does not make a policy
  drifted. Fields netiso set earlier and no longer renders are the other direction, and need the
  server's record of what netiso owns: see ``ownership.unset_owned_fields``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import yaml

from netiso.kube import strip_server_fields
from netiso.policy import default_policy_types


class PolicyState(StrEnum):
    IN_SYNC = "in sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    STALE = "stale"  # written by netiso but no longer in the bundle: `apply --prune` removes it


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
        norm["policyTypes"] = [d.value for d in default_policy_types(bool(norm.get("egress")))]
    norm.setdefault("podSelector", {})
    return norm


def spec_differences(desired: Any, live: Any, path: str = "spec") -> list[str]:
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
    """In sync, drifted (with the reasons) or missing: the live object against the rendered."""
    if live is None:
        return PolicyState.MISSING, []
    reasons = spec_differences(normalize_spec(desired.get("spec")),
                               normalize_spec(live.get("spec")))
    want_labels = (desired.get("metadata") or {}).get("labels") or {}
    have_labels = (live.get("metadata") or {}).get("labels") or {}
    for key, value in sorted(want_labels.items()):
        if key not in have_labels:
            reasons.append(f"label {key} missing, bundle has {value!r}")
        elif have_labels[key] != value:
            reasons.append(f"label {key} is {have_labels[key]!r}, bundle has {value!r}")
    want_notes = (desired.get("metadata") or {}).get("annotations") or {}
    have_notes = (live.get("metadata") or {}).get("annotations") or {}
    for key, value in sorted(want_notes.items()):
        if have_notes.get(key) != value:
            reasons.append(f"annotation {key} differs from the bundle")
    return (PolicyState.DRIFTED, reasons) if reasons else (PolicyState.IN_SYNC, [])


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a diff shows: the object without server bookkeeping."""
    return strip_server_fields(obj)


def object_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any], label: str) -> str:
    """A unified YAML diff between the live object and what it becomes ('' when equal)."""
    # libyaml's dumper when present: the pure-Python one costs ~2 ms per object, which is
    # most of the client's CPU when applying thousands of objects.
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    old = yaml.dump(comparable(before), Dumper=dumper, sort_keys=True) if before else ""
    new = yaml.dump(comparable(after), Dumper=dumper, sort_keys=True)
    if old == new:
        return ""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"live/{label}", tofile=f"bundle/{label}",
    )
    return "".join(lines)
