"""netiso.ops: ownership from managedFields, safety order, lost answers, "created" from 201,
uninstall's scope, and the small truths of status' table. Pure logic and an in-memory fake
typed by the Protocols the engines are written against."""

from __future__ import annotations

import copy
import io
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from rich.console import Console

from netiso.bundle import render_bundle, to_yaml
from netiso.commands.status import _table as status_table
from netiso.config import load_values
from netiso.errors import UsageError
from netiso.kube import Applied, Denied, ResourceType, Unreachable
from netiso.ops.apply import (
    Action,
    ApplyClient,
    NamespaceState,
    ReadBack,
    already_applied,
    apply_bundle,
)
from netiso.ops.drift import normalize_spec
from netiso.ops.order import CLOSES, NARROWS, OPENS, apply_order, delete_order, safety_rank
from netiso.ops.ownership import owned_paths, unset_owned_fields
from netiso.ops.status import build_status
from netiso.ops.targets import uninstall_scope
from netiso.ops.uninstall import ReadBack as UninstallReadBack
from netiso.ops.uninstall import UninstallClient, uninstall
from netiso.policy import Direction, load_objects

NS = "team-a"


def _bundle(ns: str = NS, **kwargs: Any) -> list[dict[str, Any]]:
    return render_bundle(load_values(None, namespaces=[ns], **kwargs), [ns])


def _fields_of(obj: dict[str, Any]) -> dict[str, Any]:
    """fieldsV1 the way the API server records an apply of ``obj`` (NetworkPolicy lists and
    the podSelector are atomic: owned as a whole)."""
    meta = obj["metadata"]
    out: dict[str, Any] = {"f:metadata": {}}
    for part in ("labels", "annotations"):
        if meta.get(part):
            out["f:metadata"][f"f:{part}"] = {".": {}, **{f"f:{k}": {} for k in meta[part]}}
    out["f:spec"] = {f"f:{k}": {} for k in obj["spec"]}
    return out


def _stored(obj: dict[str, Any], *, rv: str = "1") -> dict[str, Any]:
    """``obj`` as the API server stores it after netiso's apply."""
    live = copy.deepcopy(obj)
    live["spec"] = normalize_spec(obj["spec"])
    live["metadata"].update(uid=f"uid-{obj['metadata']['name']}", resourceVersion=rv,
                            managedFields=[{"manager": "netiso", "operation": "Apply",
                                            "fieldsV1": _fields_of(obj)}])
    return live


# --- one rule each ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"podSelector": {}},
    {"podSelector": {}, "ingress": [{}]},
    {"podSelector": {}, "egress": [{}]},
    {"podSelector": {}, "egress": []},
    {"podSelector": {}, "policyTypes": [], "egress": [{"ports": [{"port": 53}]}]},
])
def test_policy_types_defaulting_is_one_rule(spec: dict[str, Any]) -> None:
    """Status' normalisation and the evaluator's loader default policyTypes alike."""
    (pol,) = load_objects([{"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
                            "metadata": {"name": "p", "namespace": "n"}, "spec": spec}]).policies
    order = [Direction.INGRESS.value, Direction.EGRESS.value]
    assert normalize_spec(spec)["policyTypes"] == [d for d in order
                                                   if Direction(d) in pol.policy_types]


# --- ownership: what netiso owns comes from managedFields ------------------------------------


def test_owned_paths_and_unset_fields() -> None:
    desired = _bundle()[0]
    live = _stored(desired)
    assert ("f:metadata", "f:labels", "f:netiso.io/policy") in owned_paths(live)
    assert unset_owned_fields(desired, live) == []
    assert already_applied(desired, live)

    # A newer bundle stops setting an annotation and a label netiso set before: applying it
    # removes them, so the object is not "already applied" although the content compares equal.
    newer = copy.deepcopy(desired)
    newer["metadata"]["labels"].pop("netiso.io/policy")
    newer["metadata"].pop("annotations", None)
    dropped = unset_owned_fields(newer, live)
    assert "metadata.labels.netiso.io/policy" in dropped
    if desired["metadata"].get("annotations"):
        assert "metadata.annotations" in dropped
    assert not already_applied(newer, live)

    # Fields someone else owns are not netiso's to remove.
    other = copy.deepcopy(live)
    other["metadata"]["labels"]["team"] = "a"
    other["metadata"]["managedFields"].append(
        {"manager": "kubectl", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}})
    assert already_applied(desired, other)


# --- the safety order ------------------------------------------------------------------------


def test_safety_order_allows_before_denies() -> None:
    objs = _bundle()
    ranks = {o["metadata"]["name"]: safety_rank(o) for o in objs}
    assert ranks["netiso-default-deny-ingress"] == CLOSES
    assert ranks["netiso-allow-same-namespace"] == OPENS
    assert ranks.get("netiso-deny-metadata-egress", NARROWS) == NARROWS
    applied = [o["metadata"]["name"] for o in sorted(objs, key=apply_order)]
    assert applied[-1] == "netiso-default-deny-ingress"
    by_delete = sorted(objs, key=delete_order)
    assert by_delete[0]["metadata"]["name"] == "netiso-default-deny-ingress"
    ranks_in_order = [safety_rank(o) for o in by_delete]
    assert ranks_in_order == sorted(ranks_in_order, reverse=True)
    assert ranks_in_order[-1] == OPENS
    # Ranked by name when a label is missing (an older object, a hand edit).
    unlabelled = {"kind": "NetworkPolicy", "metadata": {"name": "netiso-default-deny-egress"}}
    assert safety_rank(unlabelled) == CLOSES


# --- a fake API server, typed by the engines' Protocols ---------------------------------------


class FakeCluster:
    """NetworkPolicies (and other kinds for uninstall) in memory; ``fail(verb, ns/name)`` may
    raise before (``when="before"``) or after (``"after"``) the write takes effect."""

    server = "https://fake:6443"
    context = "fake"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[str] = []
        self.lock = threading.Lock()
        self.rv = 0
        self.fail: Callable[[str, str, str], None] = lambda verb, key, when: None

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace") or "", meta["name"])] = obj

    def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.fail("list", namespace or "*", "before")
        return [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                if kind == "NetworkPolicy" and namespace in (None, ns)]

    def list_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return []

    def list_objects(self, rt: ResourceType, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[dict[str, Any]]:
        self.fail("list", namespace or "*", "before")
        return [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                if kind == rt.kind and namespace in (None, ns)]

    def server_side_apply(self, body: Mapping[str, Any], *, dry_run: bool = False,
                          force: bool = False) -> Applied:
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        where = f"{key[1]}/{key[2]}"
        self.fail("apply", where, "before")
        with self.lock:
            self.writes.append(f"apply {where}")
            created = key not in self.objects
            self.rv += 1
            self.put(_stored(dict(body), rv=str(self.rv)))
        self.fail("apply", where, "after")  # the server acted; the answer is lost
        return Applied(copy.deepcopy(self.objects[key]), created=created)

    def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool:
        where = f"{namespace}/{name}"
        self.fail("delete", where, "before")
        with self.lock:
            self.writes.append(f"delete {where}")
            gone = self.objects.pop((rt.kind, namespace or "", name), None) is not None
        self.fail("delete", where, "after")
        return gone


def _apply(fake: ApplyClient, namespaces: list[str], workers: int = 2) -> Any:
    desired = render_bundle(load_values(None, namespaces=namespaces), namespaces)
    return apply_bundle(fake, desired, namespaces, workers=workers)


def test_apply_writes_allows_first_and_counts_creates_from_201() -> None:
    fake = FakeCluster()
    report, error = _apply(fake, [NS])
    assert error is None
    assert fake.writes[-1] == f"apply {NS}/netiso-default-deny-ingress"
    assert fake.writes[0].startswith(f"apply {NS}/netiso-allow-")
    assert report.to_json()["summary"]["created"] == len(fake.writes)

    # Another writer created the objects between this run's LIST and its apply (the race of two
    # concurrent applies): the server answers 200, so this run claims no creation.
    class Racing(FakeCluster):
        def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]:
            return []

    racing = Racing()
    racing.objects = copy.deepcopy(fake.objects)
    report, error = _apply(racing, [NS])
    assert error is None
    summary = report.to_json()["summary"]
    assert summary["created"] == 0
    assert summary["updated"] == len(racing.writes)


def test_a_lost_answer_is_unknown_then_read_back_in_place() -> None:
    """The server applied the object, the connection dropped before the answer: read back, the
    namespace is applied (and the run complete, so no error)."""
    fake = FakeCluster()
    lost = {"done": False}

    def fail(verb: str, where: str, when: str) -> None:
        if (verb, when) == ("apply", "after") and where.endswith("default-deny-ingress") \
                and not lost["done"]:
            lost["done"] = True
            raise Unreachable("the API server at https://fake:6443 dropped the connection")

    fake.fail = fail
    report, error = _apply(fake, [NS])
    (ns,) = report.namespaces
    unknown = [c for c in ns.changes if c.action is Action.UNKNOWN]
    assert [(c.name, c.attempted, c.read_back) for c in unknown] == [
        ("netiso-default-deny-ingress", Action.CREATE, ReadBack.IN_PLACE)]
    assert ns.state is NamespaceState.APPLIED
    assert error is None
    doc = report.to_json()
    assert doc["summary"]["unknownObjects"] == 1
    assert doc["summary"]["failed"] == 0
    obj = next(o for o in doc["namespaces"][0]["objects"] if o["action"] == "unknown")
    assert obj["readBack"] == "in place"


def test_a_lost_answer_with_the_server_gone_stays_unknown_and_says_so() -> None:
    fake = FakeCluster()
    down = {"now": False}

    def fail(verb: str, where: str, when: str) -> None:
        if down["now"]:
            raise Unreachable("cannot reach the API server at https://fake:6443: "
                              "connection refused")
        if verb == "apply" and when == "after" and where == "b/netiso-allow-same-namespace":
            down["now"] = True
            raise Unreachable("the API server at https://fake:6443 dropped the connection")

    fake.fail = fail
    report, error = _apply(fake, ["a", "b", "c"], workers=1)
    assert isinstance(error, Unreachable)
    states = {ns.namespace: ns.state for ns in report.namespaces}
    assert states == {"a": NamespaceState.APPLIED, "b": NamespaceState.UNKNOWN,
                      "c": NamespaceState.NOT_ATTEMPTED}
    doc = report.to_json()
    assert "connection refused" in doc["readBackError"]
    s = doc["summary"]
    assert s["unknown"] == 1
    # never started is "not applied", apart from failed
    assert s["notApplied"] == sum(1 for v in states.values()
                                  if v is NamespaceState.NOT_ATTEMPTED)
    assert s["applied"] + s["partial"] + s["failed"] + s["unknown"] + s["notApplied"] == 3
    b = next(ns for ns in doc["namespaces"] if ns["namespace"] == "b")
    assert [(o["name"], o["readBack"]) for o in b["objects"] if o["action"] == "unknown"] == [
        ("netiso-allow-same-namespace", "could not read back")]


# --- uninstall ---------------------------------------------------------------------------------


def _installed(namespaces: list[str]) -> FakeCluster:
    fake = FakeCluster()
    for ns in namespaces:
        for obj in _bundle(ns):
            fake.put(_stored(obj))
    return fake


def _uninstall(fake: UninstallClient, **kwargs: Any) -> Any:
    return uninstall(fake, workers=2, **kwargs)


def test_uninstall_deletes_the_deny_first_and_keeps_the_allows_when_it_fails() -> None:
    fake = _installed(["a", "b"])

    def fail(verb: str, where: str, when: str) -> None:
        if (verb, where, when) == ("delete", "b/netiso-default-deny-ingress", "before"):
            raise Denied("the API server refused to delete it: admission webhook said no",
                         status=403)

    fake.fail = fail
    report = _uninstall(fake)
    a_deletes = [w for w in fake.writes if w.startswith("delete a/")]
    assert a_deletes[0] == "delete a/netiso-default-deny-ingress"
    # b: the deny could not be deleted, so its allows stay (not attempted), never a deny alone.
    assert not any(w.startswith("delete b/") for w in fake.writes)
    left = {name for (_, ns, name) in fake.objects if ns == "b"}
    assert left == {o["metadata"]["name"] for o in _bundle("b")}
    assert [t.name for t, _ in report.failed] == ["netiso-default-deny-ingress"]
    assert {t.namespace for t in report.not_attempted} == {"b"}
    assert not report.complete


def test_uninstall_lost_answer_is_read_back() -> None:
    fake = _installed(["a"])

    def fail(verb: str, where: str, when: str) -> None:
        if (verb, where, when) == ("delete", "a/netiso-default-deny-ingress", "after"):
            raise Unreachable("the API server at https://fake:6443 dropped the connection")

    fake.fail = fail
    report = _uninstall(fake)
    assert [(t.name, rb) for t, rb in report.unknown] == [
        ("netiso-default-deny-ingress", UninstallReadBack.GONE)]
    assert report.failed == []
    doc = report.to_json()
    assert doc["summary"]["unknown"] == 1
    assert doc["unknown"][0]["readBack"] == "gone"


def test_uninstall_scope_names_must_exist() -> None:
    cluster = [{"metadata": {"name": "a", "labels": {"team": "x"}}},
               {"metadata": {"name": "b", "labels": {}}}]
    with pytest.raises(UsageError, match="'nope' not found") as info:
        uninstall_scope(load_values(None, namespaces=["a", "nope"], force=True), cluster)
    assert info.value.exit_code == 2
    assert uninstall_scope(load_values(None, namespaces=["a"], force=True), cluster) == {"a"}
    assert uninstall_scope(load_values(None, selector="team=x", force=True), cluster) == {"a"}
    assert uninstall_scope(load_values(None, force=True), cluster) is None


# --- status' table: small truths ---------------------------------------------------------------


def _draw(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    status_table(data)(Console(file=buf, width=200, no_color=True))
    return buf.getvalue()


def test_status_table_says_missing_not_none_and_one_namespace() -> None:
    desired = _bundle()
    live = [_stored(o) for o in desired]
    del live[0]["metadata"]["labels"]["netiso.io/policy"]
    report = build_status(desired, [NS], [], live, [], server="s", context="c")
    text = _draw(report.to_json())
    assert "None" not in text
    assert "label netiso.io/policy missing, bundle has" in text
    assert "1 namespace: 0 in sync, 1 drifted" in text
    two = build_status(_bundle("a") + _bundle("b"), ["a", "b"], [], [], [], server="s",
                       context="c")
    assert "2 namespaces: " in _draw(two.to_json())


# --- render at scale -------------------------------------------------------------------------


def test_libyaml_and_pure_dumpers_give_the_same_bytes() -> None:
    yaml = pytest.importorskip("yaml")
    if not hasattr(yaml, "CSafeDumper"):
        pytest.skip("PyYAML built without libyaml")
    names = [f"ns-{i:04d}" for i in range(100)]
    for provider in ("generic", "eks", "gke", "aks"):
        values = load_values(None, provider=provider, namespaces=names)
        objects = render_bundle(values, names)
        fast, pure = to_yaml(objects), to_yaml(objects, pure=True)
        assert fast == pure, provider
        assert fast.count("\n---") + 1 == len(objects)


def test_uninstall_leaves_what_is_already_being_deleted_so_a_rerun_is_a_no_op() -> None:
    fake = _installed(["a"])
    probe = {"kind": "Namespace", "metadata": {
        "name": "netiso-probe", "uid": "uid-probe", "deletionTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app.kubernetes.io/managed-by": "netiso"},
        "managedFields": [{"manager": "netiso", "operation": "Apply"}]}}
    pod = {"kind": "Pod", "metadata": {
        "name": "probe", "namespace": "netiso-probe", "uid": "uid-pod",
        "labels": {"app.kubernetes.io/managed-by": "netiso"},
        "managedFields": [{"manager": "netiso", "operation": "Apply"}]}}
    fake.put(probe)
    fake.put(pod)
    report = _uninstall(fake)
    assert report.complete
    assert {t.name for t in report.deleted} == {o["metadata"]["name"] for o in _bundle("a")}
    assert sorted((t.kind, why) for t, why in report.skipped) == [
        ("Namespace", "already being deleted"), ("Pod", "already being deleted")]
    assert not any("netiso-probe" in w for w in fake.writes)


def test_a_dry_run_that_loses_the_server_fails_and_is_never_unknown() -> None:
    fake = FakeCluster()

    def fail(verb: str, where: str, when: str) -> None:
        if verb == "apply":
            raise Unreachable("the API server at https://fake:6443 dropped the connection")

    fake.fail = fail
    desired = render_bundle(load_values(None, namespaces=[NS]), [NS])
    report, error = apply_bundle(fake, desired, [NS], dry_run=True)
    assert isinstance(error, Unreachable)
    (ns,) = report.namespaces
    assert ns.state is NamespaceState.FAILED
    assert report.to_json()["summary"]["unknownObjects"] == 0
