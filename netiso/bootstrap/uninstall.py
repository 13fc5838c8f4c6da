"""Remove everything netiso created, and nothing else.

Design decisions:

* **Two marks, both required.** An object is netiso's when it carries
  ``app.kubernetes.io/managed-by=netiso`` *and* its managedFields record the field manager
  ``netiso`` (every netiso write goes through server-side apply or create with that manager).
  A label alone is a claim anyone can copy by hand; the field manager is written by the API
  server. Objects with only the label are reported as skipped, not deleted.
* **Every namespace, not just today's targets.** What netiso created earlier may sit in a
  namespace that a later values file no longer targets; uninstall finds it by label everywhere.
  ``--namespace``/``--selector`` narrow it to some namespaces (taking netiso out of one team's
  namespaces while leaving the rest isolated).
* **Kinds**: the bundle's NetworkPolicies, and verification leftovers (probe pods, services,
  config maps, and probe namespaces netiso created). Namespaces go last, each deletion guarded by
  the object's uid so a same-named object created meanwhile is never hit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from netiso.bootstrap.apply import MANAGED_BY, MANAGED_SELECTOR
from netiso.kube import (
    CONFIGMAP,
    FIELD_MANAGER,
    NAMESPACE,
    NETWORK_POLICY,
    POD,
    SERVICE,
    Kube,
    ResourceType,
    field_managers,
)

# Deletion order: what lives inside namespaces first, the namespaces netiso created last.
UNINSTALL_KINDS: tuple[ResourceType, ...] = (NETWORK_POLICY, POD, SERVICE, CONFIGMAP, NAMESPACE)


@dataclass
class Target:
    kind: str
    namespace: str | None
    name: str
    uid: str | None
    rt: ResourceType

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass
class UninstallReport:
    dry_run: bool
    server: str
    context: str | None
    deleted: list[Target] = field(default_factory=list)
    skipped: list[tuple[Target, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "UninstallResult",
            "dryRun": self.dry_run,
            "server": self.server,
            "context": self.context,
            "summary": {"deleted": len(self.deleted), "skipped": len(self.skipped)},
            "deleted": [t.to_json() for t in self.deleted],
            "skipped": [{**t.to_json(), "reason": why} for t, why in self.skipped],
        }


def is_netiso_created(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(created by netiso?, why not). Pure."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) != "netiso":
        return False, "not labelled managed-by netiso"
    if FIELD_MANAGER not in field_managers(obj):
        return False, (f"labelled {MANAGED_BY}=netiso but not written by netiso "
                       f"(managers: {', '.join(field_managers(obj)) or 'none'}); left alone")
    return True, ""


def find_targets(kube: Kube, scope: Collection[str] | None = None
                 ) -> tuple[list[Target], list[tuple[Target, str]]]:
    """netiso's objects (and labelled look-alikes it will not touch), optionally only those in
    (or, for a Namespace, named) one of ``scope``."""
    found: list[Target] = []
    skipped: list[tuple[Target, str]] = []
    for rt in UNINSTALL_KINDS:
        for obj in kube.list_objects(rt, label_selector=MANAGED_SELECTOR):
            meta = obj["metadata"]
            target = Target(rt.kind, meta.get("namespace"), meta["name"], meta.get("uid"), rt)
            where = target.namespace if rt.namespaced else target.name
            if scope is not None and where not in scope:
                continue
            ok, why = is_netiso_created(obj)
            if ok:
                found.append(target)
            else:
                skipped.append((target, why))
    return found, skipped


def uninstall(kube: Kube, *, dry_run: bool = False, workers: int = 8,
              scope: Collection[str] | None = None) -> UninstallReport:
    report = UninstallReport(dry_run, kube.server, kube.context)
    found, report.skipped = find_targets(kube, scope)
    netiso_namespaces = {t.name for t in found if t.rt is NAMESPACE}

    def delete(t: Target) -> Target | None:
        gone = kube.delete(t.rt, t.name, t.namespace, dry_run=dry_run, uid=t.uid)
        return t if gone else None

    for rt in UNINSTALL_KINDS:
        batch: Sequence[Target] = [t for t in found if t.rt is rt]
        if rt is not NAMESPACE:
            # Objects inside a namespace netiso created go with the namespace; deleting them
            # one by one first would only be slower.
            inside = [t for t in batch if t.namespace in netiso_namespaces]
            batch = [t for t in batch if t.namespace not in netiso_namespaces]
            report.deleted.extend(inside)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for done in pool.map(delete, batch):
                if done is not None:
                    report.deleted.append(done)
    return report
