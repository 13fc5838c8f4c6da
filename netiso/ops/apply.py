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
  netiso's labels and annotations; ``ops.drift``), records a server-side apply by ``netiso``,
  *and* whose fields owned by netiso (its managedFields entry) are all still rendered: applying
  it again could not change it. A field an earlier bundle set and this one does not (an
  annotation, a label) is owned by netiso, so the object is applied and server-side apply
  removes the field. A rerun over 500 namespaces is then three LISTs, not 2,000 PATCHes.
  Anything that differs, or was written by someone else, still goes to the server.
* **"Created" is the server's word.** An object counts as created only when the API server
  answered the apply with 201 Created; two applies racing on a new namespace both saw it
  empty, but only one of them created each object.
* **Safe order within a namespace** (``ops.order``): allows first, default-denies last, prune
  in the reverse order, one object after the other, so a run that stops half-way never leaves
  a namespace closed without its allows.
* **A write whose answer was lost is "unknown", not failed.** When the connection drops with a
  request in flight (the API server killed, a network cut, a timeout), the client cannot tell
  whether the server acted. Such an object is reported ``unknown`` and its namespace too; after
  the run, one LIST reads back what is there (in place, absent, different) and a namespace whose
  objects all read back in place is reported applied. When the server still cannot be reached
  the report says the read-back failed. Namespaces the run never started are "not applied",
  apart from those that failed.
* **Namespaces are the unit of work and of failure.** A bounded thread pool applies
  namespaces concurrently (the API server, not the client, is the bottleneck, and a pool keeps
  it busy while Python waits on sockets). A namespace is "applied" only when all its objects
  are. An error every namespace would hit alike (the server unreachable, credentials rejected,
  an RBAC refusal, a resource type not served) stops the run: no further namespace starts, the
  rest are reported "not applied" (never started), and the error names what was and was not
  applied.
  Server-side apply is idempotent by name, so a rerun converges without duplicates.
* **Prune is narrow.** Only NetworkPolicies netiso wrote (``ownership.is_netiso_created``: the
  managed-by label *and* field manager ``netiso``, the test status and uninstall use too), in a
  namespace this run targets, and absent from the rendered bundle, are deleted, with a uid
  precondition so a same-named object created meanwhile is never hit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from netiso.config import Skipped
from netiso.console import Progress as RunProgress
from netiso.errors import ExitCode, Interrupted, NetisoError, OperationFailed
from netiso.kube import (
    NETWORK_POLICY,
    Applied,
    ResourceType,
    Unreachable,
)
from netiso.ops.drift import PolicyState, comparable, object_diff, policy_state
from netiso.ops.order import apply_order, delete_order
from netiso.ops.ownership import (
    applied_by_netiso,
    is_managed_labelled,
    is_netiso_created,
    unset_owned_fields,
)
from netiso.ops.pool import RunInterrupted, run_bounded, summarize_names

LATER_NAMESPACES_NOTE = (
    "namespaces created after this run are not covered until the next `netiso apply`; "
    "run it again (from CI or a CronJob) or target namespaces by label with --selector"
)

Obj = dict[str, Any]


class ApplyClient(Protocol):
    """What apply needs of a cluster connection (``netiso.kube.Kube`` is one)."""

    server: str

    @property
    def context(self) -> str | None: ...

    def list_network_policies(self, namespace: str | None = None) -> list[Obj]: ...

    def list_pods(self, namespace: str | None = None) -> list[Obj]: ...

    def server_side_apply(self, obj: Mapping[str, Any], *, dry_run: bool = False,
                          force: bool = False) -> Applied: ...

    def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool: ...


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    PRUNE = "prune"
    UNKNOWN = "unknown"  # the request was in flight when the connection dropped


class NamespaceState(StrEnum):
    APPLIED = "applied"  # every object applied (or, in a dry run, computed)
    PARTIAL = "partial"  # some objects applied, then an error
    FAILED = "failed"  # nothing applied, an error
    UNKNOWN = "unknown"  # a write's answer was lost and reading back did not settle it
    NOT_ATTEMPTED = "not-attempted"  # the run stopped before reaching it


class ReadBack(StrEnum):
    """What reading an object back found, after its write's answer was lost."""

    IN_PLACE = "in place"  # present and as rendered (or, for a prune, gone)
    ABSENT = "absent"  # not there (the apply did not happen)
    DIFFERS = "differs"  # there, but not as rendered
    STILL_THERE = "still there"  # a prune that did not happen
    FAILED = "could not read back"  # the server was still unreachable


@dataclass
class ObjectChange:
    namespace: str
    kind: str
    name: str
    action: Action
    diff: str = ""
    attempted: Action | None = None  # for UNKNOWN: the write that was in flight
    read_back: ReadBack | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": self.namespace, "kind": self.kind,
                               "name": self.name, "action": self.action.value}
        if self.diff:
            out["diff"] = self.diff
        if self.action is Action.UNKNOWN:
            out["attempted"] = self.attempted.value if self.attempted else None
            out["readBack"] = self.read_back.value if self.read_back else None
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
    skipped: list[Skipped]
    read_back_error: str | None = None  # why reading back unknown outcomes failed

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
                "partial": len(self.in_state(NamespaceState.PARTIAL)),
                "failed": len(self.in_state(NamespaceState.FAILED)),
                "unknown": len(self.in_state(NamespaceState.UNKNOWN)),
                "notApplied": len(self.in_state(NamespaceState.NOT_ATTEMPTED)),
                "created": self.count(Action.CREATE),
                "updated": self.count(Action.UPDATE),
                "unchanged": self.count(Action.UNCHANGED),
                "pruned": self.count(Action.PRUNE),
                "unknownObjects": self.count(Action.UNKNOWN),
                "changed": self.changed,
            },
            "namespaces": [ns.to_json() for ns in self.namespaces],
            "skipped": [s.to_json() for s in self.skipped],
            "readBackError": self.read_back_error,
            "note": LATER_NAMESPACES_NOTE,
        }


# --- pure helpers ---------------------------------------------------------------------------


def classify(before: Mapping[str, Any] | None, after: Mapping[str, Any], *, dry_run: bool,
             created: bool | None = None) -> Action:
    """create / update / unchanged, from the live object, the server's apply answer and (when
    known) whether the server answered 201 Created."""
    if created:
        return Action.CREATE
    if before is None:
        # Without the server's word, a create; with it (not 201), someone else created the
        # object between our LIST and our apply, and whether ours changed it is not known.
        return Action.CREATE if created is None else Action.UPDATE
    if dry_run:
        return Action.UNCHANGED if comparable(before) == comparable(after) else Action.UPDATE
    rv_before = (before.get("metadata") or {}).get("resourceVersion")
    rv_after = (after.get("metadata") or {}).get("resourceVersion")
    return Action.UNCHANGED if rv_before == rv_after else Action.UPDATE


def already_applied(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when applying ``desired`` again cannot change ``live``: same content after the
    API server's defaulting, netiso's own server-side apply recorded on it, and no field netiso
    owns that ``desired`` stops setting (applying would remove it)."""
    return (applied_by_netiso(live)
            and policy_state(desired, live)[0] is PolicyState.IN_SYNC
            and not unset_owned_fields(desired, live))


def group_by_namespace(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        out[str((obj.get("metadata") or {}).get("namespace", ""))].append(dict(obj))
    return dict(out)


def prune_candidates(
    live_managed: Sequence[Mapping[str, Any]], desired_names: set[str]
) -> list[Mapping[str, Any]]:
    """Objects of one namespace netiso wrote (``is_netiso_created``) that the bundle no longer
    has, in deletion order (default-denies first)."""
    return sorted(
        (o for o in live_managed if o["metadata"]["name"] not in desired_names
         and is_netiso_created(o)[0]),
        key=delete_order,
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


def incomplete_error(report: ApplyReport, first: NetisoError) -> ApplyIncomplete:
    applied = report.in_state(NamespaceState.APPLIED)
    partial = report.in_state(NamespaceState.PARTIAL)
    unknown = report.in_state(NamespaceState.UNKNOWN)
    missing = report.in_state(NamespaceState.FAILED, NamespaceState.NOT_ATTEMPTED)
    verb = "computed" if report.dry_run else "applied"
    parts = [f"{verb} {len(applied)} of {len(report.namespaces)} namespaces"]
    parts.append(f"{verb}: {summarize_names(applied)}")
    if partial:
        parts.append(f"partly {verb}: {summarize_names(partial)}")
    if unknown:
        parts.append(f"outcome unknown (could not read back): {summarize_names(unknown)}")
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
    kube: ApplyClient,
    result: NamespaceResult,
    desired: Sequence[Mapping[str, Any]],
    live_by_name: Mapping[str, Mapping[str, Any]],
    live_managed: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool,
    prune: bool,
    force_conflicts: bool,
) -> None:
    ns = result.namespace
    for obj in sorted(desired, key=apply_order):
        name = str(obj["metadata"]["name"])
        kind = str(obj.get("kind"))
        before = live_by_name.get(name) if kind == "NetworkPolicy" else None
        if not dry_run and before is not None and already_applied(obj, before):
            result.changes.append(ObjectChange(ns, kind, name, Action.UNCHANGED))
            continue
        try:
            applied = kube.server_side_apply(obj, dry_run=dry_run, force=force_conflicts)
            after, created = applied.obj, applied.created
        except Unreachable:
            if not dry_run:  # a dry run writes nothing: its lost answer is just a failure
                result.changes.append(ObjectChange(ns, kind, name, Action.UNKNOWN,
                                                   attempted=Action.CREATE if before is None
                                                   else Action.UPDATE))
            raise
        action = classify(before, after, dry_run=dry_run, created=created)
        diff = ""
        if action is Action.UPDATE and before is not None:
            # A create's "diff" would be the whole object: see render.
            diff = object_diff(before, after, f"{ns}/{name}")
        result.changes.append(ObjectChange(ns, kind, name, action, diff))
    if prune:
        desired_names = {str(o["metadata"]["name"]) for o in desired}
        for stale in prune_candidates(live_managed, desired_names):
            meta = stale["metadata"]
            try:
                kube.delete(NETWORK_POLICY, meta["name"], ns, dry_run=dry_run,
                            uid=meta.get("uid"))
            except Unreachable:
                if not dry_run:
                    result.changes.append(ObjectChange(ns, "NetworkPolicy", meta["name"],
                                                       Action.UNKNOWN, attempted=Action.PRUNE))
                raise
            result.changes.append(ObjectChange(ns, "NetworkPolicy", meta["name"], Action.PRUNE))


def _settle(res: NamespaceResult, desired: Sequence[Mapping[str, Any]], prune: bool,
            live: Mapping[str, Mapping[str, Any]]) -> None:
    """Read-back of one namespace whose run lost a write's answer: each unknown object's
    outcome, and the namespace's state from what the server holds."""
    wanted = {str(o["metadata"]["name"]): o for o in desired}
    for change in res.changes:
        if change.action is not Action.UNKNOWN:
            continue
        have = live.get(change.name)
        if change.attempted is Action.PRUNE:
            change.read_back = ReadBack.STILL_THERE if have is not None else ReadBack.IN_PLACE
        elif have is None:
            change.read_back = ReadBack.ABSENT
        elif policy_state(wanted[change.name], have)[0] is PolicyState.IN_SYNC:
            change.read_back = ReadBack.IN_PLACE
        else:
            change.read_back = ReadBack.DIFFERS
    in_place = [name for name, want in wanted.items() if live.get(name) is not None
                and policy_state(want, live[name])[0] is PolicyState.IN_SYNC]
    stale = [name for name, pol in live.items()
             if prune and name not in wanted and is_netiso_created(pol)[0]]
    if len(in_place) == len(wanted) and not stale:
        res.state = NamespaceState.APPLIED
    elif in_place:
        res.state = NamespaceState.PARTIAL
    else:
        res.state = NamespaceState.FAILED


def _read_back(kube: ApplyClient, report: ApplyReport,
               by_ns: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    unsettled = [res for res in report.namespaces if res.state is NamespaceState.UNKNOWN]
    if not unsettled:
        return
    try:
        live = (kube.list_network_policies(unsettled[0].namespace) if len(unsettled) == 1
                else kube.list_network_policies())
    except NetisoError as exc:
        report.read_back_error = exc.one_line()
        for res in unsettled:
            for change in res.changes:
                if change.action is Action.UNKNOWN:
                    change.read_back = ReadBack.FAILED
        return
    by_name: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for pol in live:
        by_name[pol["metadata"]["namespace"]][pol["metadata"]["name"]] = pol
    for res in unsettled:
        _settle(res, by_ns.get(res.namespace, []), report.prune, by_name[res.namespace])


def apply_bundle(
    kube: ApplyClient,
    desired: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    skipped: Sequence[Skipped] = (),
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
        if is_managed_labelled(pol):
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
            if any(c.action is Action.UNKNOWN for c in res.changes):
                res.state = NamespaceState.UNKNOWN
            elif res.changes:
                res.state = NamespaceState.PARTIAL
            else:
                res.state = NamespaceState.FAILED
            if first_error is None:
                first_error = err
        if on_namespace is not None:
            on_namespace(res)
        if progress is not None:
            # An unknown outcome is not a failure: the caller warns about it (on_namespace).
            progress.advance(f"namespace {ns}", res.error or res.state.value,
                             failed=res.error is not None
                             and res.state is not NamespaceState.UNKNOWN)

    if progress is not None:
        progress.start(len(queue))
    # Namespaces the run stopped before stay NOT_ATTEMPTED.
    interrupted: RunInterrupted | None = None
    try:
        run_bounded(queue, run, done, workers=workers)
    except RunInterrupted as exc:
        interrupted = exc
    if not dry_run:
        _read_back(kube, report, by_ns)
        if report.complete:  # every lost answer read back as in place: nothing is missing
            first_error = None
    if interrupted is not None:
        first_error = interrupted  # Ctrl-C decides the exit code (130), whatever failed before
    return report, first_error
