"""Remove everything netiso created, and nothing else.

Design decisions:

* **Two marks, both required.** An object is netiso's when it carries
  ``app.kubernetes.io/managed-by=netiso`` *and* its managedFields record the field manager
  ``netiso`` (every netiso write goes through server-side apply or create with that manager).
  A label alone is a claim anyone can copy by hand; the field manager is written by the API
  server. Objects with only the label are reported as skipped, not deleted.
* **Every namespace, not just today's targets.** What netiso created earlier may sit in a
  namespace that a later values file no longer targets, or that was labelled
  ``netiso.io/exclude=true`` after an apply; uninstall finds it by label everywhere, exclusions
  included (it removes only netiso's own objects, so opting a namespace out never protects
  anything from it). ``--namespace``/``--selector`` narrow it to some namespaces (taking netiso
  out of one team's namespaces while leaving the rest isolated).
* **Kinds**: the bundle's NetworkPolicies, and verification leftovers (probe pods, services,
  config maps, and probe namespaces netiso created). Namespaces go last, each deletion guarded by
  the object's uid so a same-named object created meanwhile is never hit.
* **The report says what happened, object by object.** An object inside a namespace netiso
  created is not deleted on its own (the namespace takes it along), so it is reported deleted
  only once its namespace's deletion was accepted. A failed deletion is reported with its error
  and the run goes on, except after an error every deletion would hit (unreachable server,
  rejected credentials, RBAC): then the rest is reported as not attempted.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from netiso.bootstrap.apply import MANAGED_SELECTOR, is_netiso_created, summarize_names
from netiso.bootstrap.pool import RunInterrupted, ends_the_run, run_bounded
from netiso.console import Progress
from netiso.errors import Interrupted, NetisoError, OperationFailed
from netiso.kube import (
    CONFIGMAP,
    NAMESPACE,
    NETWORK_POLICY,
    POD,
    SERVICE,
    Forbidden,
    Kube,
    ResourceType,
)

__all__ = ["Target", "UninstallReport", "find_targets", "is_netiso_created", "uninstall"]

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
    not_attempted: list[Target] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: what was in flight finished, the rest not attempted
    # Kinds of verification leftovers this identity may not list (the day-to-day role does not
    # carry verify's rights): (resource, why). They were not looked for, so not cleaned.
    unchecked: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.not_attempted and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "UninstallResult",
            "dryRun": self.dry_run,
            "server": self.server,
            "context": self.context,
            "summary": {"deleted": len(self.deleted), "skipped": len(self.skipped),
                        "failed": len(self.failed), "notAttempted": len(self.not_attempted)},
            "deleted": [t.to_json() for t in self.deleted],
            "skipped": [{**t.to_json(), "reason": why} for t, why in self.skipped],
            "failed": [{**t.to_json(), "error": err.one_line()} for t, err in self.failed],
            "notAttempted": [t.to_json() for t in self.not_attempted],
            "unchecked": [{"resource": r, "reason": why} for r, why in self.unchecked],
        }


def _names(targets: list[Target]) -> str:
    return summarize_names([t.describe() for t in targets], limit=5)


def incomplete_error(report: UninstallReport) -> OperationFailed:
    """The one-line error for a run that did not delete everything it found."""
    verb = "would delete" if report.dry_run else "deleted"
    total = len(report.deleted) + len(report.failed) + len(report.not_attempted)
    parts = [f"{verb} {len(report.deleted)} of {total} objects"]
    if report.failed:
        parts.append(f"failed: {_names([t for t, _ in report.failed])}")
    if report.not_attempted:
        parts.append(f"not attempted: {_names(report.not_attempted)}")
    first = report.failed[0][1] if report.failed else None
    if first is not None:
        parts.append(f"first error: {first.one_line()}")
    if report.interrupted:
        parts.append(Interrupted().one_line())
        err = OperationFailed("; ".join(parts),
                              hint="rerun `netiso uninstall` to finish: it finds what is left")
        err.exit_code = Interrupted.exit_code
        return err
    err = OperationFailed("; ".join(parts),
                          hint="fix the cause and rerun `netiso uninstall`: it finds what is left")
    if first is not None:
        err.exit_code = first.exit_code
    return err


def find_targets(kube: Kube, scope: Collection[str] | None = None
                 ) -> tuple[list[Target], list[tuple[Target, str]]]:
    """netiso's objects (and labelled look-alikes it will not touch), optionally only those in
    (or, for a Namespace, named) one of ``scope``."""
    found, skipped, _ = find_all(kube, scope)
    return found, skipped


def find_all(kube: Kube, scope: Collection[str] | None = None
             ) -> tuple[list[Target], list[tuple[Target, str]], list[tuple[str, str]]]:
    """``find_targets`` plus the leftover kinds RBAC would not let this identity list.

    The bundle's NetworkPolicies must be listable (that is uninstall's job); the verification
    leftovers (probe pods, services, config maps, namespaces) need the verify role, which the
    day-to-day role deliberately lacks: a refused LIST there is reported, not fatal.
    """
    found: list[Target] = []
    skipped: list[tuple[Target, str]] = []
    unchecked: list[tuple[str, str]] = []
    for rt in UNINSTALL_KINDS:
        try:
            listed = kube.list_objects(rt, label_selector=MANAGED_SELECTOR)
        except Forbidden as exc:
            if rt is NETWORK_POLICY:
                raise
            unchecked.append((rt.plural, exc.one_line()))
            continue
        for obj in listed:
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
    return found, skipped, unchecked


GONE = "already gone (or recreated since it was listed: the new object is left alone)"


def uninstall(kube: Kube, *, dry_run: bool = False, workers: int = 8,
              scope: Collection[str] | None = None,
              progress: Progress | None = None) -> UninstallReport:
    """Delete netiso's objects; the report holds every object's outcome, even after errors
    and after Ctrl-C (``report.interrupted``). ``progress`` hears of each deletion."""
    report = UninstallReport(dry_run, kube.server, kube.context)
    found, report.skipped, report.unchecked = find_all(kube, scope)
    netiso_namespaces = {t.name for t in found if t.rt is NAMESPACE}
    # Objects inside a namespace netiso created go with the namespace; deleting them one by
    # one first would only be slower. Their outcome is their namespace's.
    inside: dict[str, list[Target]] = {}
    batches: list[list[Target]] = []
    for rt in UNINSTALL_KINDS:
        batch: list[Target] = []
        for t in found:
            if t.rt is not rt:
                continue
            if rt is not NAMESPACE and t.namespace in netiso_namespaces:
                inside.setdefault(str(t.namespace), []).append(t)
            else:
                batch.append(t)
        batches.append(batch)

    def delete(t: Target) -> bool:
        return kube.delete(t.rt, t.name, t.namespace, dry_run=dry_run, uid=t.uid)

    stopped = False

    def done(t: Target, gone: bool | None, exc: BaseException | None) -> None:
        nonlocal stopped
        contents = inside.pop(t.name, []) if t.rt is NAMESPACE else []
        if exc is not None:
            stopped = stopped or ends_the_run(exc)
            err = exc if isinstance(exc, NetisoError) else OperationFailed(
                f"{type(exc).__name__}: {exc}")
            report.failed.append((t, err))
            report.not_attempted.extend(contents)
            outcome = f"failed: {err.one_line()}"
        elif gone:
            report.deleted.append(t)
            report.deleted.extend(contents)
            outcome = "would delete" if dry_run else "deleted"
        else:
            report.skipped.append((t, GONE))
            # A namespace already gone took its contents with it; nobody deleted them now.
            report.skipped.extend((c, GONE) for c in contents)
            outcome = "already gone"
        if progress is not None:
            progress.advance(t.describe(), outcome, failed=exc is not None,
                             count=1 + len(contents))

    if progress is not None:
        progress.start(len(found))
    for batch in batches:
        if stopped:
            report.not_attempted.extend(batch)
            continue
        try:
            report.not_attempted.extend(run_bounded(batch, delete, done, workers=workers))
        except RunInterrupted as exc:
            report.not_attempted.extend(t for t in exc.not_started if isinstance(t, Target))
            report.interrupted = stopped = True
    # Contents of namespaces whose deletion was never attempted.
    for contents in inside.values():
        report.not_attempted.extend(contents)
    # Completion order is the thread pool's, not something a reader can follow: deletion
    # order by kind, then namespace and name.
    report.deleted.sort(key=_order)
    report.not_attempted.sort(key=_order)
    report.failed.sort(key=lambda pair: _order(pair[0]))
    report.skipped.sort(key=lambda pair: _order(pair[0]))
    return report


def _order(t: Target) -> tuple[int, str, str]:
    return (UNINSTALL_KINDS.index(t.rt), t.namespace or "", t.name)
