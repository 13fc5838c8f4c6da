"""What makes an object netiso's: the managed-by label and the field manager ``netiso``.

Design decisions:

* **Two marks, both required.** The label ``app.kubernetes.io/managed-by=netiso`` is what the
  bundle renders and what a LIST can select on; the field manager ``netiso`` in managedFields is
  recorded by the API server on every write netiso makes (server-side apply or create with that
  manager). Requiring both keeps a policy someone labelled by hand, or a copy of a netiso
  manifest applied with kubectl, out of prune and uninstall. It guards against accidents, not a
  hostile writer: anyone allowed to write the object can send ``--field-manager=netiso`` too.
* **The fields netiso owns come from the server.** netiso's own ``Apply`` entry in managedFields
  lists every field its last apply set (fieldsV1). That, not the rendered object, is what a
  later apply must compare against: a field a newer bundle no longer sets is still owned, and
  only a real apply removes it (``owned_paths``).
* **Pure.** Functions take and return plain objects; the constants come from the bundle (the
  labels) and the Kubernetes seam (the field manager name), so each is spelled once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from netiso.bundle import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from netiso.kube import FIELD_MANAGER, field_managers

__all__ = [
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MANAGED_SELECTOR",
    "applied_by_netiso",
    "field_managers",
    "is_managed_labelled",
    "is_netiso_created",
    "owned_paths",
    "unset_owned_fields",
]

#: The LIST selector for everything carrying netiso's label (then filtered by the field manager).
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"


def is_managed_labelled(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) \
        == MANAGED_BY_VALUE


def is_netiso_created(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(written by netiso?, why not). Both marks: the label, and the field manager the API
    server recorded."""
    if not is_managed_labelled(obj):
        return False, f"not labelled {MANAGED_SELECTOR}"
    managers = field_managers(obj)
    if FIELD_MANAGER not in managers:
        return False, (f"labelled {MANAGED_SELECTOR} but not written by netiso "
                       f"(managers: {', '.join(managers) or 'none'}); left alone")
    return True, ""


def _netiso_apply_entry(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    entry: Mapping[str, Any]
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        # A subresource entry (status, scale) is not what an apply of the object sets.
        if (entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
                and not entry.get("subresource")):
            return entry
    return None


def applied_by_netiso(obj: Mapping[str, Any]) -> bool:
    """True when the API server recorded a server-side apply by ``netiso`` on the object."""
    return _netiso_apply_entry(obj) is not None


def _walk(fields: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for key, sub in fields.items():
        if key == ".":  # "the field itself", already implied by the path leading here
            continue
        path = (*prefix, key)
        if isinstance(sub, Mapping) and any(k != "." for k in sub):
            yield from _walk(sub, path)
        else:
            yield path


def owned_paths(obj: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The leaf paths netiso's last apply owns, as fieldsV1 spells them (``f:spec``,
    ``f:podSelector``, ...; ``k:``/``v:``/``i:`` for list items). [] when it owns none."""
    entry = _netiso_apply_entry(obj)
    fields = (entry or {}).get("fieldsV1")
    return list(_walk(fields, ())) if isinstance(fields, Mapping) else []


def unset_owned_fields(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """Fields netiso owns on ``live`` that ``desired`` no longer sets, as dotted paths.

    Applying ``desired`` removes each of them (server-side apply drops fields a manager stops
    sending, unless another manager owns them too), so while any exists the object is not
    "already applied". List items (``k:``/``v:``/``i:``) are not followed: the lists of a
    NetworkPolicy are atomic (one owner for the whole list), and a list ``desired`` still sets is
    compared by content elsewhere.
    """
    out: list[str] = []
    for path in owned_paths(live):
        node: Any = desired
        names: list[str] = []
        for segment in path:
            if not segment.startswith("f:"):
                break  # a list item: the list itself is set, its content compared elsewhere
            name = segment[2:]
            names.append(name)
            if not isinstance(node, Mapping) or name not in node:
                out.append(".".join(names))
                break
            node = node[name]
            if isinstance(node, list):
                break
    return sorted(set(out))
