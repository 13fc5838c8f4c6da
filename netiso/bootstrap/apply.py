"""Apply the rendered bundle to a live cluster: server-side apply, per namespace, in parallel.

Design decisions:

* **Read once, write per object.** One cluster-wide LIST of NetworkPolicies (and one of running
  pods) gives the before-state of every namespace: whether an object is a create, whether a
  namespace gets netiso's policies for the first time (so its running pods are about to be
  isolated), and which managed objects the bundle no longer contains (prune). Writes are one
  server-side apply per object; nothing is read back.
* **The server decides what changes.** ``--dry-run`` sends the very same apply with
  ``dryRun=All`` and compares the answer with the live object, so defaulting, admission and
  field ownership are the API server's, not a client-side guess. A real apply reports "update"
  only when the object's resourceVersion moved: a no-op apply does not bump it, which is what
  makes a rerun say "0 changed".
* **No request for what is already in place.** A real apply skips an object whose live copy
  already equals the rendered one (spec compared after the API server's defaulting, plus
  netiso's labels and annotations) *and* records a server-side apply by ``netiso``: applying
  it again could not change it. A rerun over 500 namespaces is then three LISTs, not 2,000
  PATCHes. Anything that differs, or was written by someone else, still goes to the server.
* **Namespaces are the unit of work and of failure.** A bounded thread pool applies
  namespaces concurrently (the API server, not the client, is the bottleneck, and a pool keeps
  it busy while Python waits on sockets). A namespace is "applied" only when all its objects
  are. An error every namespace would hit alike (the server unreachable, credentials rejected,
  an RBAC refusal, a resource type not served) stops the run: no further namespace starts, the
  rest are reported "not attempted", and the error names what was and was not applied.
  Server-side apply is idempotent by name, so a rerun converges without duplicates.
* **Prune is narrow.** Only NetworkPolicies netiso wrote (``is_netiso_created``: the managed-by
  label *and* field manager ``netiso``, the test status and uninstall use too), in a namespace
  this run targets, and absent from the rendered bundle, are deleted, with a uid precondition
  so a same-named object created meanwhile is never hit.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from netiso.bootstrap.pool import RunInterrupted, run_bounded
from netiso.console import Progress as RunProgress
from netiso.errors import ExitCode, Interrupted, NetisoError, OperationFailed
from netiso.kube import (
    FIELD_MANAGER,
    NETWORK_POLICY,
    Kube,
    field_managers,
    strip_server_fields,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_SELECTOR = f"{MANAGED_BY}=netiso"

LATER_NAMESPACES_NOTE = (
    "namespaces created after this run are not covered until the next `netiso apply`; "
    "run it again (from CI or a CronJob) or target namespaces by label with --selector"
)


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    PRUNE = "prune"


class NamespaceState(StrEnum):
    APPLIED = "applied"  # every object applied (or, in a dry run, computed)
    PARTIAL = "partial"  # some objects applied, then an error
    FAILED = "failed"  # nothing applied, an error
    NOT_ATTEMPTED = "not-attempted"  # the run stopped before reaching it


@dataclass
class ObjectChange:
    namespace: str
    kind: str
    name: str
    action: Action
    diff: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": self.namespace, "kind": self.kind,
                               "name": self.name, "action": self.action.value}
        if self.diff:
            out["diff"] = self.diff
        return out


@dataclass
class NamespaceResult:
    namespace: str
    state: NamespaceState = NamespaceState.NOT_ATTEMPTED
    changes: list[ObjectChange] = field(default_factory=list)
    first_apply: bool = False
    isolated_pods: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "state": self.state.value,
            "firstApply": self.first_apply,
            "podsBecomingIsolated": self.isolated_pods,
            "objects": [c.to_json() for c in self.changes],
            "error": self.error,
        }


@dataclass
class ApplyReport:
    dry_run: bool
    server: str
    context: str | None
    prune: bool
    namespaces: list[NamespaceResult]
    skipped: list[tuple[str, str]]

    def count(self, action: Action) -> int:
        return sum(1 for ns in self.namespaces for c in ns.changes if c.action is action)

    @property
    def changed(self) -> int:
        return sum(self.count(a) for a in (Action.CREATE, Action.UPDATE, Action.PRUNE))

    def in_state(self, *states: NamespaceState) -> list[str]:
        return [ns.namespace for ns in self.namespaces if ns.state in states]

    @property
    def complete(self) -> bool:
        return all(ns.state is NamespaceState.APPLIED for ns in self.namespaces)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "ApplyResult",
            "dryRun": self.dry_run,
            "server": self.server,
            "context": self.context,
            "prune": self.prune,
            "summary": {
                "namespaces": len(self.namespaces),
                "applied": len(self.in_state(NamespaceState.APPLIED)),
                "notApplied": len(self.namespaces) - len(self.in_state(NamespaceState.APPLIED)),
                "created": self.count(Action.CREATE),
                "updated": self.count(Action.UPDATE),
                "unchanged": self.count(Action.UNCHANGED),
                "pruned": self.count(Action.PRUNE),
                "changed": self.changed,
            },
            "namespaces": [ns.to_json() for ns in self.namespaces],
            "skipped": [{"namespace": n, "reason": r} for n, r in self.skipped],
            "note": LATER_NAMESPACES_NOTE,
        }


# --- pure helpers ---------------------------------------------------------------------------


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


def classify(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, dry_run: bool
             ) -> Action:
    """create / update / unchanged, from the live object and the server's apply answer."""
    if before is None:
        return Action.CREATE
    if dry_run:
        return Action.UNCHANGED if comparable(before) == comparable(after) else Action.UPDATE
    rv_before = (before.get("metadata") or {}).get("resourceVersion")
    rv_after = (after.get("metadata") or {}).get("resourceVersion")
    return Action.UNCHANGED if rv_before == rv_after else Action.UPDATE


def already_applied(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when applying ``desired`` again cannot change ``live``: same content after the
    API server's defaulting, and netiso's own server-side apply recorded on it."""
    from netiso.bootstrap.status import PolicyState, policy_state

    applied_by_netiso = any(
        m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply"
        for m in (live.get("metadata") or {}).get("managedFields") or []
    )
    return applied_by_netiso and policy_state(desired, live)[0] is PolicyState.IN_SYNC


def is_netiso_created(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(written by netiso?, why not). Both marks: the label can be copied by hand, the field
    manager is recorded by the API server. Pure."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) != "netiso":
        return False, "not labelled managed-by netiso"
    if FIELD_MANAGER not in field_managers(obj):
        return False, (f"labelled {MANAGED_BY}=netiso but not written by netiso "
                       f"(managers: {', '.join(field_managers(obj)) or 'none'}); left alone")
    return True, ""


def group_by_namespace(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        out[str((obj.get("metadata") or {}).get("namespace", ""))].append(dict(obj))
    return dict(out)


def prune_candidates(
    live_managed: Sequence[Mapping[str, Any]], desired_names: set[str]
) -> list[Mapping[str, Any]]:
    """Objects of one namespace netiso wrote (``is_netiso_created``) that the bundle no longer
    has."""
    return sorted(
        (o for o in live_managed if o["metadata"]["name"] not in desired_names
         and is_netiso_created(o)[0]),
        key=lambda o: str(o["metadata"]["name"]),
    )


def running_pods_by_namespace(pods: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Running" and not (
            pod.get("spec") or {}
        ).get("hostNetwork"):
            # hostNetwork pods share the node's network namespace: NetworkPolicy never
            # isolates them, so they are not "about to be isolated".
            out[pod["metadata"]["namespace"]].append(pod["metadata"]["name"])
    return {ns: sorted(names) for ns, names in out.items()}


class ApplyIncomplete(OperationFailed):
    """Some namespaces were not (fully) applied; the exit code follows the first cause."""

    def __init__(self, message: str, *, exit_code: ExitCode, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def summarize_names(items: Sequence[str], limit: int = 8) -> str:
    """`a, b, c (+N more)` for an error line; `none` when empty."""
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def incomplete_error(report: ApplyReport, first: NetisoError) -> ApplyIncomplete:
    applied = report.in_state(NamespaceState.APPLIED)
    partial = report.in_state(NamespaceState.PARTIAL)
    missing = report.in_state(NamespaceState.FAILED, NamespaceState.NOT_ATTEMPTED)
    verb = "computed" if report.dry_run else "applied"
    parts = [f"{verb} {len(applied)} of {len(report.namespaces)} namespaces"]
    parts.append(f"{verb}: {summarize_names(applied)}")
    if partial:
        parts.append(f"partly {verb}: {summarize_names(partial)}")
    parts.append(f"not {verb}: {summarize_names(missing)}")
    if isinstance(first, Interrupted):
        return ApplyIncomplete("; ".join([*parts, first.one_line()]), exit_code=first.exit_code,
                               hint="rerun `netiso apply` to finish: it is idempotent")
    return ApplyIncomplete(
        "; ".join(parts) + f"; first error: {first.one_line()}",
        exit_code=first.exit_code,
        hint="fix the cause and rerun `netiso apply`: it is idempotent and converges",
    )


# --- the engine -----------------------------------------------------------------------------


Progress = Callable[[NamespaceResult], None]


def _apply_namespace(
    kube: Kube,
    result: NamespaceResult,
    desired: Sequence[Mapping[str, Any]],
    live_by_name: Mapping[str, Mapping[str, Any]],
    live_managed: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool,
    prune: bool,
    force_conflicts: bool,
) -> None:
    for obj in sorted(desired, key=lambda o: (str(o.get("kind")), str(o["metadata"]["name"]))):
        name = str(obj["metadata"]["name"])
        before = live_by_name.get(name) if obj.get("kind") == "NetworkPolicy" else None
        if not dry_run and before is not None and already_applied(obj, before):
            result.changes.append(
                ObjectChange(result.namespace, str(obj.get("kind")), name, Action.UNCHANGED)
            )
            continue
        after = kube.apply(obj, dry_run=dry_run, force=force_conflicts)
        action = classify(before, after, dry_run=dry_run)
        diff = ""
        if action is Action.UPDATE:  # a create's "diff" would be the whole object: see render
            diff = object_diff(before, after, f"{result.namespace}/{name}")
        result.changes.append(
            ObjectChange(result.namespace, str(obj.get("kind")), name, action, diff)
        )
    if prune:
        desired_names = {str(o["metadata"]["name"]) for o in desired}
        for stale in prune_candidates(live_managed, desired_names):
            meta = stale["metadata"]
            kube.delete(NETWORK_POLICY, meta["name"], result.namespace, dry_run=dry_run,
                        uid=meta.get("uid"))
            result.changes.append(
                ObjectChange(result.namespace, "NetworkPolicy", meta["name"], Action.PRUNE)
            )


def apply_bundle(
    kube: Kube,
    desired: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    skipped: Sequence[tuple[str, str]] = (),
    *,
    dry_run: bool = False,
    prune: bool = True,
    force_conflicts: bool = False,
    workers: int = 8,
    on_namespace: Progress | None = None,
    before_write: Callable[[list[NamespaceResult]], None] | None = None,
    progress: RunProgress | None = None,
) -> tuple[ApplyReport, NetisoError | None]:
    """Apply ``desired`` (the rendered bundle for ``targets``) and report per namespace.

    Returns the report and the first error (None when every namespace was applied). The
    caller decides how to surface the error, after printing the report.
    ``before_write`` sees the namespaces about to get their first netiso policies (with their
    running pods) before any write, so a caller can list or confirm them. ``progress`` hears
    of each namespace as it finishes. After Ctrl-C the namespaces in flight finish, the report
    says what was done and the error is ``Interrupted`` (exit 130).
    """
    by_ns = group_by_namespace(desired)
    target_set = set(targets)
    stray = sorted(set(by_ns) - target_set)
    if stray:
        raise OperationFailed(
            f"rendered objects outside the target namespaces: {summarize_names(stray)}"
        )

    live = kube.list_network_policies()
    live_by_ns: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    managed_by_ns: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for pol in live:
        meta = pol["metadata"]
        if meta["namespace"] not in target_set:
            continue
        live_by_ns[meta["namespace"]][meta["name"]] = pol
        if (meta.get("labels") or {}).get(MANAGED_BY) == "netiso":
            managed_by_ns[meta["namespace"]].append(pol)

    results = {ns: NamespaceResult(ns) for ns in sorted(targets)}
    first_time = [ns for ns in results if not managed_by_ns.get(ns) and by_ns.get(ns)]
    if first_time:
        pods = running_pods_by_namespace(
            kube.list_pods(None) if len(first_time) > 1 else kube.list_pods(first_time[0])
        )
        for ns in first_time:
            results[ns].first_apply = True
            results[ns].isolated_pods = pods.get(ns, [])
    report = ApplyReport(dry_run, kube.server, kube.context, prune,
                         list(results.values()), list(skipped))
    if before_write is not None:
        before_write([results[ns] for ns in first_time])

    first_error: NetisoError | None = None
    queue = [ns for ns in results if by_ns.get(ns) or (prune and managed_by_ns.get(ns))]
    for ns, res in results.items():
        if ns not in queue:  # nothing to render and nothing to prune: trivially in place
            res.state = NamespaceState.APPLIED

    def run(ns: str) -> None:
        _apply_namespace(
            kube, results[ns], by_ns.get(ns, []), live_by_ns.get(ns, {}),
            managed_by_ns.get(ns, []), dry_run=dry_run, prune=prune,
            force_conflicts=force_conflicts,
        )

    def done(ns: str, _: None, exc: BaseException | None) -> None:
        nonlocal first_error
        res = results[ns]
        if exc is None:
            res.state = NamespaceState.APPLIED
        else:
            err = exc if isinstance(exc, NetisoError) else OperationFailed(
                f"{type(exc).__name__}: {exc}")
            res.error = err.one_line()
            res.state = NamespaceState.PARTIAL if res.changes else NamespaceState.FAILED
            if first_error is None:
                first_error = err
        if on_namespace is not None:
            on_namespace(res)
        if progress is not None:
            progress.advance(f"namespace {ns}", res.error or res.state.value,
                             failed=res.error is not None)

    if progress is not None:
        progress.start(len(queue))
    # Namespaces the run stopped before stay NOT_ATTEMPTED.
    try:
        run_bounded(queue, run, done, workers=workers)
    except RunInterrupted as exc:
        first_error = exc  # Ctrl-C decides the exit code (130), whatever failed before it
    return report, first_error
