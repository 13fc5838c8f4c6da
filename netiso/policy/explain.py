"""Verdicts in words, and cluster-wide portability notes.

Plain strings only (no rich markup): the command decides how to draw them, and ``verify``
reuses the same sentences when real traffic disagrees with the evaluator.
"""

from __future__ import annotations

from netiso.policy.engine import NOTE_IPBLOCK_POD, Cluster, SideVerdict, Verdict
from netiso.policy.model import Direction


def explain_side(side: SideVerdict, endpoint: str) -> str:
    word = "egress of" if side.direction is Direction.EGRESS else "ingress of"
    head = f"{word} {endpoint}: "
    if not side.isolated:
        return head + f"not isolated ({side.reason}) -> allowed"
    iso = "isolated by " + ", ".join(side.policies)
    if side.allowed_by:
        rules = "; ".join(str(m) for m in side.allowed_by)
        return head + f"{iso}; allowed by {rules}"
    if side.allowed:
        return head + f"{iso}; allowed: {side.reason}"
    return head + f"{iso}; denied: {side.reason}"


def explain(verdict: Verdict) -> list[str]:
    """One line per side, then warnings about the question, then the non-portable notes."""
    lines = [explain_side(verdict.egress, verdict.src),
             explain_side(verdict.ingress, verdict.dst)]
    lines.extend(f"warning: {w}" for w in verdict.warnings)
    lines.extend(verdict.notes)
    return lines


def portability_notes(cluster: Cluster) -> list[str]:
    """Policies whose meaning depends on the plugin, independent of any one flow."""
    out = []
    for cp in cluster._compiled:
        if cp.ipblock_covers_pods:
            out.append(f"{cp.policy.key}: {NOTE_IPBLOCK_POD}")
    hostnet = [p.key for p in cluster.pods if p.host_network]
    if hostnet:
        shown = ", ".join(hostnet[:5]) + (" ..." if len(hostnet) > 5 else "")
        out.append(f"hostNetwork pods ({shown}): policy on them is implementation-defined")
    return out
