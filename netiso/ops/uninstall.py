"""Remove everything netiso created, and nothing else.

Design decisions:

* **Two marks, both required** (``ops.ownership``). An object is netiso's when it carries
  ``app.kubernetes.io/managed-by=netiso`` *and* its managedFields record the field manager
  ``netiso`` (every netiso write goes through server-side apply or create with that manager).
  A label alone is easily copied with a manifest; the field manager is recorded by the API
  server. Objects with only the label are reported as skipped, not deleted. This guards against
  accidents, not a hostile writer: anyone who may write the object can send the field manager.
* **Every namespace, not just today's targets.** What netiso created earlier may sit in a
  namespace that a later values file no longer targets, or that was labelled
  ``netiso.io/exclude=true`` after an apply; uninstall finds it by label everywhere, exclusions
  included (it removes only netiso's own objects, so opting a namespace out never protects
  anything from it). ``--namespace``/``--selector`` narrow it to some namespaces (taking netiso
  out of one team's namespaces while leaving the rest isolated).
* **Kinds**: the bundle's NetworkPolicies, and verification leftovers (probe pods, services,
  config maps, and probe namespaces netiso created). Namespaces go last, each deletion guarded by
  the object's uid so a same-named object created meanwhile is never hit.
* **Never more closed than before** (``ops.order``). A namespace's NetworkPolicies are deleted
  one after the other, default-denies first and the allows after them, each only once the one
  before is gone: a run that stops half-way (Ctrl-C, the API server gone) leaves a namespace
  isolated with its allows, or open, never holding a deny without its allows. Namespaces are
  worked on in parallel.
* **A deletion whose answer was lost is "unknown", not failed.** When the connection drops with
  a DELETE in flight, the server may well have deleted the object. Such objects are reported
  ``unknown`` and read back once the run is over (a LIST of their kind and namespace, the role's
  verb; no GET): gone, still there, or "could not read back" when the server is still
  unreachable.
* **The report says what happened, object by object.** An object inside a namespace netiso
  created is not deleted on its own (the namespace takes it along), so it is reported deleted
  only once its namespace's deletion was accepted. A failed deletion is reported with its error
  and the run goes on (in that namespace, the allows a failed deny deletion protects stay), except
  after an error every deletion would hit (unreachable server, rejected credentials, RBAC): then
  the rest is reported as not attempted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from netiso.errors import NetisoError, OperationFailed
from netiso.kube import (
    CONFIGMAP,
    NAMESPACE,
    NETWORK_POLICY,
    POD,
    SERVICE,
    ResourceType,
    Unreachable,
)
from netiso.ops.order import safety_rank
from netiso.ops.ownership import MANAGED_SELECTOR, is_netiso_created
from netiso.ops.pool import ends_the_run, run_bounded, summarize_names

__all__ = ["Target", "UninstallClient", "UninstallReport", "find_targets", "uninstall"]

# Deletion order: what lives inside namespaces first, the namespaces netiso created last.
UNINSTALL_KINDS: tuple[ResourceType, ...] = (NETWORK_POLICY, POD, SERVICE, CONFIGMAP, NAMESPACE)


class UninstallClient(Protocol):
    """What uninstall needs of a cluster connection (``netiso.kube.Kube`` is one)."""

    server: str

    @property
    def context(self) -> str | None: ...

    def list_objects(self, rt: ResourceType, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[dict[str, Any]]: ...

    def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool: ...


class ReadBack(StrEnum):
    """What reading an object back found, after its deletion's answer was lost."""

    GONE = "gone"  # absent, or its deletion under way
    STILL_THERE = "still there"
    FAILED = "could not read back"


@dataclass
class Target:
    kind: str
    namespace: str | None
    name: str
    uid: str | None
    rt: ResourceType
    rank: int = 0  # ops.order.safety_rank: default-denies are deleted first

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    def describe(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass
class UninstallReport:
    dry_run: bool
    server: str
    context: str | None
    deleted: list[Target] = field(default_factory=list)
    skipped: list[tuple[Target, str]] = field(default_factory=list)
    failed: list[tuple[Target, NetisoError]] = field(default_factory=list)
    unknown: list[tuple[Target, ReadBack]] = field(default_factory=list)
    not_attempted: list[Target] = field(default_factory=list)
    read_back_error: str | None = None
    lost: NetisoError | None = None  # the first error that lost a deletion's answer

    @property
    def complete(self) -> bool:
        return (not self.failed and not self.not_attempted
                and all(rb is ReadBack.GONE for _, rb in self.unknown))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "UninstallResult",
            "dryRun": self.dry_run,
            "server": self.server,
            "context": self.context,
            "summary": {"deleted": len(self.deleted), "skipped": len(self.skipped),
                        "failed": len(self.failed), "unknown": len(self.unknown),
                        "notAttempted": len(self.not_attempted)},
            "deleted": [t.to_json() for t in self.deleted],
            "skipped": [{**t.to_json(), "reason": why} for t, why in self.skipped],
            "failed": [{**t.to_json(), "error": err.one_line()} for t, err in self.failed],
            "unknown": [{**t.to_json(), "readBack": rb.value} for t, rb in self.unknown],
            "notAttempted": [t.to_json() for t in self.not_attempted],
            "readBackError": self.read_back_error,
        }


def _names(targets: list[Target]) -> str:
    return summarize_names([t.describe() for t in targets], limit=5)


def incomplete_error(report: UninstallReport) -> OperationFailed:
    """The one-line error for a run that did not delete everything it found."""
    verb = "would delete" if report.dry_run else "deleted"
    total = (len(report.deleted) + len(report.failed) + len(report.unknown)
             + len(report.not_attempted))
    parts = [f"{verb} {len(report.deleted)} of {total} objects"]
    if report.failed:
        parts.append(f"failed: {_names([t for t, _ in report.failed])}")
    unsettled = [t for t, rb in report.unknown if rb is not ReadBack.GONE]
    if unsettled:
        parts.append(f"outcome unknown: {_names(unsettled)}")
    if report.not_attempted:
        parts.append(f"not attempted: {_names(report.not_attempted)}")
    first = report.failed[0][1] if report.failed else report.lost
    if first is not None:
        parts.append(f"first error: {first.one_line()}")
    if report.read_back_error:
        parts.append(f"read-back failed: {report.read_back_error}")
    err = OperationFailed("; ".join(parts),
                          hint="fix the cause and rerun `netiso uninstall`: it finds what is left")
    if first is not None:
        err.exit_code = first.exit_code
    return err


BEING_DELETED = "already being deleted"


def find_targets(kube: UninstallClient, scope: Collection[str] | None = None
                 ) -> tuple[list[Target], list[tuple[Target, str]]]:
    """netiso's objects (and labelled look-alikes it will not touch), optionally only those in
    (or, for a Namespace, named) one of ``scope``. Objects already being deleted (a namespace
    netiso created stays Terminating for a while, with its contents) are reported, not deleted
    again, so a rerun finds nothing left to do."""
    found: list[Target] = []
    skipped: list[tuple[Target, str]] = []
    terminating: set[str] = set()
    for rt in reversed(UNINSTALL_KINDS):  # namespaces first: their contents' fate is theirs
        for obj in kube.list_objects(rt, label_selector=MANAGED_SELECTOR):
            meta = obj["metadata"]
            target = Target(rt.kind, meta.get("namespace"), meta["name"], meta.get("uid"), rt,
                            safety_rank(obj) if rt is NETWORK_POLICY else 0)
            where = target.namespace if rt.namespaced else target.name
            if scope is not None and where not in scope:
                continue
            ok, why = is_netiso_created(obj)
            if ok and (meta.get("deletionTimestamp") or where in terminating):
                skipped.append((target, BEING_DELETED))
                if rt is NAMESPACE:
                    terminating.add(target.name)
            elif ok:
                found.append(target)
            else:
                skipped.append((target, why))
    return found, skipped


GONE = "already gone (or recreated since it was listed: the new object is left alone)"


@dataclass
class _Batch:
    """Targets deleted one after the other, in order (one namespace's policies), or one target.
    Filled in by the worker; read by the calling thread once the worker is done."""

    targets: list[Target]
    deleted: list[Target] = field(default_factory=list)
    already_gone: list[Target] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return len(self.deleted) + len(self.already_gone)


def _batches(found: Sequence[Target], netiso_namespaces: set[str]
             ) -> tuple[list[list[_Batch]], dict[str, list[Target]]]:
    """Per kind, in deletion order: the work units, and the contents of netiso's namespaces
    (which go with their namespace)."""
    inside: dict[str, list[Target]] = {}
    stages: list[list[_Batch]] = []
    for rt in UNINSTALL_KINDS:
        own = []
        for t in found:
            if t.rt is not rt:
                continue
            if rt is not NAMESPACE and t.namespace in netiso_namespaces:
                inside.setdefault(str(t.namespace), []).append(t)
            else:
                own.append(t)
        if rt is NETWORK_POLICY:
            per_ns: dict[str, list[Target]] = {}
            for t in own:
                per_ns.setdefault(str(t.namespace), []).append(t)
            stages.append([_Batch(sorted(ts, key=lambda t: (-t.rank, t.name)))
                           for _, ts in sorted(per_ns.items())])
        else:
            stages.append([_Batch([t]) for t in own])
    return stages, inside


def uninstall(kube: UninstallClient, *, dry_run: bool = False, workers: int = 8,
              scope: Collection[str] | None = None) -> UninstallReport:
    """Delete netiso's objects; the report holds every object's outcome, even after errors."""
    report = UninstallReport(dry_run, kube.server, kube.context)
    found, report.skipped = find_targets(kube, scope)
    netiso_namespaces = {t.name for t in found if t.rt is NAMESPACE}
    # Objects inside a namespace netiso created go with the namespace; deleting them one by
    # one first would only be slower. Their outcome is their namespace's.
    stages, inside = _batches(found, netiso_namespaces)

    def work(batch: _Batch) -> None:
        for t in batch.targets:
            if kube.delete(t.rt, t.name, t.namespace, dry_run=dry_run, uid=t.uid):
                batch.deleted.append(t)
            else:
                batch.already_gone.append(t)

    stopped = False

    def done(batch: _Batch, _: None, exc: BaseException | None) -> None:
        nonlocal stopped
        for t in batch.deleted:
            report.deleted.append(t)
            if t.rt is NAMESPACE:
                report.deleted.extend(inside.pop(t.name, []))
        for t in batch.already_gone:
            report.skipped.append((t, GONE))
            if t.rt is NAMESPACE:
                # A namespace already gone took its contents with it; nobody deleted them now.
                report.skipped.extend((c, GONE) for c in inside.pop(t.name, []))
        if exc is None:
            return
        current, rest = batch.targets[batch.reached], batch.targets[batch.reached + 1:]
        contents = inside.pop(current.name, []) if current.rt is NAMESPACE else []
        stopped = stopped or ends_the_run(exc)
        if isinstance(exc, Unreachable) and not dry_run:
            # The request may have reached the server: read back after the run.
            report.unknown.append((current, ReadBack.FAILED))
            report.lost = report.lost or exc
            inside.setdefault(current.name, []).extend(contents)
        else:
            err = exc if isinstance(exc, NetisoError) else OperationFailed(
                f"{type(exc).__name__}: {exc}")
            report.failed.append((current, err))
            report.not_attempted.extend(contents)
        # The rest of this namespace's policies (its allows, after a deny that did not go)
        # are left in place on purpose.
        report.not_attempted.extend(rest)

    for stage in stages:
        if stopped:
            for batch in stage:
                report.not_attempted.extend(batch.targets)
            continue
        for batch in run_bounded(stage, work, done, workers=workers):
            report.not_attempted.extend(batch.targets)
    _read_back(kube, report, inside)
    # Contents of namespaces whose deletion was never attempted.
    for contents in inside.values():
        report.not_attempted.extend(contents)
    # Completion order is the thread pool's, not something a reader can follow: deletion
    # order by kind, then namespace, then the safety order, then name.
    report.deleted.sort(key=_order)
    report.not_attempted.sort(key=_order)
    report.failed.sort(key=lambda pair: _order(pair[0]))
    report.skipped.sort(key=lambda pair: _order(pair[0]))
    report.unknown.sort(key=lambda pair: _order(pair[0]))
    return report


def _read_back(kube: UninstallClient, report: UninstallReport,
               inside: dict[str, list[Target]]) -> None:
    """Settle each deletion whose answer was lost: one LIST per kind and namespace (what the
    role grants; no GET), stopping at the first failure (the server is still unreachable, the
    others would fail alike)."""
    lists: dict[tuple[str, str | None], dict[str, Mapping[str, Any]] | None] = {}
    settled: list[tuple[Target, ReadBack]] = []
    for t, _ in list(report.unknown):
        key = (t.kind, t.namespace)
        if key not in lists and report.read_back_error is None:
            try:
                objs = kube.list_objects(t.rt, t.namespace, label_selector=MANAGED_SELECTOR)
                lists[key] = {o["metadata"]["name"]: o for o in objs}
            except NetisoError as exc:
                report.read_back_error = exc.one_line()
        found = lists.get(key)
        if found is None:
            answer = ReadBack.FAILED
        else:
            meta = (found.get(t.name) or {}).get("metadata") or {}
            gone = meta.get("uid") != t.uid or bool(meta.get("deletionTimestamp"))
            answer = ReadBack.GONE if gone else ReadBack.STILL_THERE
        settled.append((t, answer))
        if t.rt is NAMESPACE and answer is not ReadBack.STILL_THERE:
            # Its contents share its fate (they go with it), whoever sent the deletion.
            settled.extend((c, answer) for c in inside.pop(t.name, []))
    report.unknown = settled


def _order(t: Target) -> tuple[int, str, int, str]:
    return (UNINSTALL_KINDS.index(t.rt), t.namespace or "", -t.rank, t.name)
