"""Target namespaces of `apply` and `status`, chosen against the live namespace list.

Design decisions:

* **Skip reasons are values** (``config.SkipReason`` and a detail text): commands decide how to
  show each kind of skip by the enum, never by matching the text.
* **One LIST of namespaces** gives both what the values' rules need (names and labels, judged by
  ``config.select_namespaces``, which stays pure) and each namespace's phase.
* **A namespace being deleted is no target.** The API server refuses every new object in it
  ("unable to create new content in namespace … because it is being terminated") and it will
  be gone with everything in it; applying there could only fail. It is skipped with the reason
  "terminating", even when named explicitly: the next run sees whether it came back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netiso.config import Skipped, SkipReason, Values, select_namespaces
from netiso.errors import UsageError
from netiso.kube import Kube

TERMINATING = "terminating"


def is_terminating(namespace: Mapping[str, Any]) -> bool:
    """A namespace whose deletion has begun (phase Terminating, or a deletionTimestamp)."""
    if ((namespace.get("status") or {}).get("phase")) == "Terminating":
        return True
    return bool((namespace.get("metadata") or {}).get("deletionTimestamp"))


def labels_by_name(namespaces: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """name -> labels of Namespace objects (what label selectors are matched against). Pure."""
    return {str(ns["metadata"]["name"]): dict(ns["metadata"].get("labels") or {})
            for ns in namespaces}


def choose_targets(values: Values, namespaces: Sequence[Mapping[str, Any]]
                   ) -> tuple[list[str], list[Skipped]]:
    """(targets, skipped with reasons), both sorted by name, from Namespace objects. Pure."""
    targets, skipped = select_namespaces(values, labels_by_name(namespaces))
    terminating = {str(ns["metadata"]["name"]) for ns in namespaces if is_terminating(ns)}
    kept = [name for name in targets if name not in terminating]
    gone = [Skipped(name, SkipReason.TERMINATING, TERMINATING)
            for name in targets if name in terminating]
    return kept, sorted([*skipped, *gone], key=lambda s: s.namespace)


def select_targets(kube: Kube, values: Values) -> tuple[list[str], list[Skipped]]:
    """The cluster's target namespaces for ``values`` (one LIST)."""
    return choose_targets(values, kube.list_namespaces())


def uninstall_scope(values: Values, namespaces: Sequence[Mapping[str, Any]]
                    ) -> set[str] | None:
    """The namespaces ``uninstall`` is narrowed to (None: everywhere), from Namespace objects.

    A name given with --namespace must exist, as for apply and status: the same typo gets the
    same answer (exit 2) instead of a run that finds nothing and exits 0. Exclusions do not
    apply: uninstall removes only netiso's own objects, wherever they are. Pure."""
    t = values.namespaces
    labels = labels_by_name(namespaces)
    if t.include:
        for name in sorted(t.include):
            if name not in labels:
                raise UsageError(
                    f"namespace {name!r} not found in the cluster",
                    hint="fix --namespace; `kubectl get namespaces` lists them",
                )
        return set(t.include)
    if t.selector is not None:
        return {name for name, lab in labels.items() if t.selector.matches(lab)}
    return None
