"""The safety order of netiso's objects in one namespace: what opens traffic before what closes it.

Design decisions:

* **Never more closed than before or after.** A namespace holding ``default-deny-ingress``
  without its allows cuts traffic the bundle means to keep (same namespace, app ports, allowed
  namespaces): more closed than before netiso and than with the whole bundle. Writes that stop
  half-way (Ctrl-C, the API server gone, a refusal) must never leave that state, so within a
  namespace apply writes the allows first and the default-denies last, and uninstall (and prune)
  deletes in the reverse order, default-denies first, each only after the one before succeeded.
  An interrupted apply then leaves a namespace open as before; an interrupted uninstall leaves
  it isolated with its allows, or open.
* **Ranked by the policy key label**, ``netiso.io/policy``, which every bundle object carries
  (by its name when a label is missing). The metadata deny sits between: it isolates egress but
  allows everything except the metadata endpoints, so it closes one destination, not a
  namespace.
* **Pure.**
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netiso.bundle import NAME_PREFIX, POLICY_LABEL
from netiso.config import PolicyKey

OPENS = 0  # allows: never cut anything
NARROWS = 1  # the metadata deny: closes one destination
CLOSES = 2  # default-denies: isolate every pod of the namespace

_RANK = {
    PolicyKey.DEFAULT_DENY_INGRESS.value: CLOSES,
    PolicyKey.DEFAULT_DENY_EGRESS.value: CLOSES,
    PolicyKey.DENY_METADATA_EGRESS.value: NARROWS,
}


def safety_rank(obj: Mapping[str, Any]) -> int:
    """How much a NetworkPolicy of netiso's closes (OPENS < NARROWS < CLOSES)."""
    if obj.get("kind", "NetworkPolicy") != "NetworkPolicy":
        return OPENS
    meta = obj.get("metadata") or {}
    key = (meta.get("labels") or {}).get(POLICY_LABEL)
    if key is None:
        name = str(meta.get("name", ""))
        key = name.removeprefix(NAME_PREFIX) if name.startswith(NAME_PREFIX) else name
    return _RANK.get(str(key), OPENS)


def apply_order(obj: Mapping[str, Any]) -> tuple[int, str, str]:
    """Sort key for writes in one namespace: allows, then the metadata deny, then default-denies."""
    meta = obj.get("metadata") or {}
    return (safety_rank(obj), str(obj.get("kind")), str(meta.get("name")))


def delete_order(obj: Mapping[str, Any]) -> tuple[int, str, str]:
    """Sort key for deletions in one namespace: the reverse of ``apply_order``."""
    meta = obj.get("metadata") or {}
    return (-safety_rank(obj), str(obj.get("kind")), str(meta.get("name")))
