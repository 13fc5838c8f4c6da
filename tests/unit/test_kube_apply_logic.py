"""Pure parts of apply / status / uninstall: classification, diffs, drift, ownership, and the
run logic (concurrency, stop conditions, reports) against a fake API server in memory."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from netiso.bundle import render_bundle
from netiso.config import Skipped, SkipReason, load_values
from netiso.errors import ExitCode, Interrupted, NetisoError
from netiso.kube import (
    Applied,
    Denied,
    Forbidden,
    KubeError,
    MissingResourceType,
    Unauthorized,
    Unreachable,
)
from netiso.ops.apply import (
    Action,
    ApplyClient,
    ApplyReport,
    NamespaceResult,
    NamespaceState,
    ObjectChange,
    already_applied,
    apply_bundle,
    classify,
    group_by_namespace,
    incomplete_error,
    prune_candidates,
    running_pods_by_namespace,
)
from netiso.ops.drift import PolicyState, normalize_spec, object_diff, policy_state
from netiso.ops.ownership import is_netiso_created
from netiso.ops.status import build_status
from netiso.ops.targets import choose_targets
from netiso.ops.uninstall import Target, UninstallClient
from netiso.ops.uninstall import incomplete_error as uninstall_incomplete_error
from netiso.ops.uninstall import uninstall as run_uninstall
from netiso.policy import label_selector


def _np(ns: str, name: str, *, rv: str = "1", labels: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None, managers: tuple[str, ...] = ("netiso",)
        ) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": f"uid-{name}",
                     "labels": labels if labels is not None
                     else {"app.kubernetes.io/managed-by": "netiso"},
                     "managedFields": [{"manager": m, "operation": "Apply"} for m in managers]},
        "spec": spec if spec is not None else {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def test_classify() -> None:
    live = _np("a", "p", rv="5")
    assert classify(None, live, dry_run=False) is Action.CREATE
    assert classify(live, _np("a", "p", rv="5"), dry_run=False) is Action.UNCHANGED
    assert classify(live, _np("a", "p", rv="6"), dry_run=False) is Action.UPDATE
    # A dry run does not move resourceVersion: the content decides.
    changed = _np("a", "p", rv="5", spec={"podSelector": {"matchLabels": {"x": "y"}}})
    assert classify(live, changed, dry_run=True) is Action.UPDATE
    same_but_new_managed_fields = copy.deepcopy(live)
    same_but_new_managed_fields["metadata"]["managedFields"].append({"manager": "other"})
    assert classify(live, same_but_new_managed_fields, dry_run=True) is Action.UNCHANGED


def test_object_diff_shows_the_change() -> None:
    before = _np("a", "p")
    after = _np("a", "p", spec={"podSelector": {"matchLabels": {"app": "web"}}})
    diff = object_diff(before, after, "a/p")
    assert "--- live/a/p" in diff
    assert "+    matchLabels:" in diff
    assert object_diff(before, copy.deepcopy(before), "a/p") == ""


def test_prune_candidates_only_names_missing_from_the_bundle() -> None:
    live = [_np("a", "netiso-old"), _np("a", "netiso-default-deny-ingress")]
    stale = prune_candidates(live, {"netiso-default-deny-ingress"})
    assert [o["metadata"]["name"] for o in stale] == ["netiso-old"]


def test_running_pods_exclude_host_network_and_finished() -> None:
    pods: list[dict[str, Any]] = [
        {"metadata": {"name": "web", "namespace": "a"}, "spec": {}, "status": {"phase": "Running"}},
        {"metadata": {"name": "done", "namespace": "a"}, "spec": {},
         "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "hostnet", "namespace": "a"}, "spec": {"hostNetwork": True},
         "status": {"phase": "Running"}},
    ]
    assert running_pods_by_namespace(pods) == {"a": ["web"]}


def test_incomplete_error_names_applied_and_not_applied() -> None:
    report = ApplyReport(False, "https://api", "ctx", True, [
        NamespaceResult("a", NamespaceState.APPLIED,
                        [ObjectChange("a", "NetworkPolicy", "p", Action.CREATE)]),
        NamespaceResult("b", NamespaceState.PARTIAL,
                        [ObjectChange("b", "NetworkPolicy", "p", Action.CREATE)]),
        NamespaceResult("c", NamespaceState.FAILED),
        NamespaceResult("d", NamespaceState.NOT_ATTEMPTED),
    ], [])
    err = incomplete_error(report, Unreachable("cannot reach the API server at https://api"))
    line = err.one_line()
    assert "applied 1 of 4 namespaces" in line
    assert "applied: a" in line
    assert "partly applied: b" in line
    assert "not applied: c, d" in line
    assert "https://api" in line
    assert err.exit_code is ExitCode.FAILED
    assert report.to_json()["summary"]["changed"] == 2


def test_group_by_namespace() -> None:
    objs = [_np("a", "x"), _np("b", "y"), _np("a", "z")]
    grouped = group_by_namespace(objs)
    assert sorted(grouped) == ["a", "b"]
    assert [o["metadata"]["name"] for o in grouped["a"]] == ["x", "z"]


# --- status ---------------------------------------------------------------------------------


def test_normalize_spec_applies_api_defaults() -> None:
    rendered = {"podSelector": {}, "ingress": [{"ports": [{"port": 8000}]}], "egress": []}
    assert normalize_spec(rendered) == {
        "podSelector": {}, "ingress": [{"ports": [{"port": 8000, "protocol": "TCP"}]}],
        "policyTypes": ["Ingress"],
    }
    # `ingress: [{}]` (allow all) must not collapse into "no ingress rules".
    assert normalize_spec({"podSelector": {}, "ingress": [{}]})["ingress"] == [{}]


def test_bundle_policies_in_sync_drifted_missing() -> None:
    values = load_values(None, namespaces=["team-a"])
    desired = render_bundle(values, ["team-a"])
    assert desired, "the default bundle renders policies"
    # What the API server stores: the same spec with defaults filled in, plus bookkeeping.
    live = []
    for obj in desired:
        stored = copy.deepcopy(obj)
        stored["spec"] = normalize_spec(obj["spec"])
        stored["metadata"].update(uid="u", resourceVersion="3",
                                  managedFields=[{"manager": "netiso"}])
        live.append(stored)
    for want, have in zip(desired, live, strict=True):
        assert policy_state(want, have) == (PolicyState.IN_SYNC, [])
    assert policy_state(desired[0], None)[0] is PolicyState.MISSING

    edited = copy.deepcopy(live[0])
    edited["spec"]["podSelector"] = {"matchLabels": {"app": "only-this"}}
    state, reasons = policy_state(desired[0], edited)
    assert state is PolicyState.DRIFTED
    assert any("spec.podSelector" in r for r in reasons)

    relabelled = copy.deepcopy(live[0])
    relabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone"
    assert policy_state(desired[0], relabelled)[0] is PolicyState.DRIFTED

    foreign = _np("team-a", "allow-web", labels={},
                  spec={"podSelector": {"matchLabels": {"app": "web"}}}, managers=("kubectl",))
    pods = [{"metadata": {"name": "w", "namespace": "team-a", "labels": {"app": "web"}},
             "status": {"phase": "Running"}},
            {"metadata": {"name": "d", "namespace": "team-a", "labels": {"app": "db"}},
             "status": {"phase": "Running"}}]
    report = build_status(desired, ["team-a"],
                          [Skipped("kube-system", SkipReason.EXCLUDED, "system namespace")],
                          [*live[1:], edited, foreign], pods, server="s", context="c")
    (ns,) = report.namespaces
    assert ns.state is PolicyState.DRIFTED
    assert [(f.name, f.selected_pods, f.managers) for f in ns.foreign] == [
        ("allow-web", 1, ["kubectl"])]
    doc = report.to_json()
    assert doc["enforcement"] == "unknown"
    assert doc["inSync"] is False
    assert doc["skipped"] == [{"namespace": "kube-system", "reason": "system namespace"}]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    return label_selector(selector).matches(labels)


def test_selector_matches() -> None:
    """Status counts a foreign policy's pods with the evaluator's selector (one implementation)."""
    labels = {"app": "web", "tier": "front"}
    assert selector_matches({}, labels)
    assert selector_matches(None, labels)
    assert selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "db"}}, labels)
    assert selector_matches({"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "back"]},
        {"key": "gone", "operator": "DoesNotExist"},
        {"key": "app", "operator": "NotIn", "values": ["db"]},
        {"key": "app", "operator": "Exists"}]}, labels)
    assert not selector_matches({"matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["front"]}]}, labels)


def test_uninstall_needs_label_and_field_manager() -> None:
    assert is_netiso_created(_np("a", "p"))[0]
    ok, why = is_netiso_created(_np("a", "p", managers=("kubectl-client-side-apply",)))
    assert not ok
    assert "not written by netiso" in why
    assert not is_netiso_created(_np("a", "p", labels={}))[0]


def test_already_applied_needs_same_content_and_netiso_apply() -> None:
    values = load_values(None, namespaces=["team-a"])
    desired = render_bundle(values, ["team-a"])[0]
    live = copy.deepcopy(desired)
    live["spec"] = normalize_spec(desired["spec"])
    live["metadata"]["managedFields"] = [{"manager": "netiso", "operation": "Apply"}]
    assert already_applied(desired, live)
    by_update = copy.deepcopy(live)
    by_update["metadata"]["managedFields"] = [{"manager": "netiso", "operation": "Update"}]
    assert not already_applied(desired, by_update)
    changed = copy.deepcopy(live)
    changed["spec"]["podSelector"] = {"matchLabels": {"a": "b"}}
    assert not already_applied(desired, changed)
    if desired["metadata"].get("annotations"):
        reworded = copy.deepcopy(live)
        key = next(iter(desired["metadata"]["annotations"]))
        reworded["metadata"]["annotations"][key] = "old text"
        assert not already_applied(desired, reworded)


def test_status_stale_needs_both_marks_a_hand_labelled_policy_is_foreign() -> None:
    values = load_values(None, namespaces=["team-a"])
    desired = render_bundle(values, ["team-a"])
    labels = {"app.kubernetes.io/managed-by": "netiso"}
    written = _np("team-a", "netiso-retired", labels=labels)
    lookalike = _np("team-a", "netiso-handmade", labels=labels, managers=("kubectl-create",),
                    spec={"podSelector": {"matchLabels": {"app": "web"}}})
    pods = [{"metadata": {"name": "w", "namespace": "team-a", "labels": {"app": "web"}},
             "status": {"phase": "Running"}}]
    report = build_status(desired, ["team-a"], [], [written, lookalike], pods,
                          server="s", context="c")
    (ns,) = report.namespaces
    states = {p.name: p.state for p in ns.policies}
    assert states["netiso-retired"] is PolicyState.STALE
    assert "netiso-handmade" not in states  # apply would never prune it
    assert [(f.name, f.selected_pods, f.managers) for f in ns.foreign] == [
        ("netiso-handmade", 1, ["kubectl-create"])]


# --- target selection -----------------------------------------------------------------------


def _ns(name: str, *, labels: dict[str, str] | None = None, terminating: bool = False
        ) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}},
                           "status": {"phase": "Terminating" if terminating else "Active"}}
    if terminating:
        obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return obj


def test_terminating_namespaces_are_skipped_with_their_reason() -> None:
    cluster = [_ns("kube-system"), _ns("shop"), _ns("gone", terminating=True),
               _ns("going", labels={"team": "web"}, terminating=True),
               _ns("web", labels={"team": "web"})]
    targets, skipped = choose_targets(load_values(None), cluster)
    assert targets == ["shop", "web"]
    gone = Skipped("gone", SkipReason.TERMINATING, "terminating")
    assert gone in skipped
    assert Skipped("going", SkipReason.TERMINATING, "terminating") in skipped
    assert Skipped("kube-system", SkipReason.EXCLUDED, "system namespace") in skipped
    # Named explicitly or chosen by label, a namespace being deleted is still no target.
    assert choose_targets(load_values(None, namespaces=["gone", "shop"]), cluster) == (
        ["shop"], [gone])
    targets, skipped = choose_targets(load_values(None, selector="team=web"), cluster)
    assert targets == ["web"]
    assert Skipped("going", SkipReason.TERMINATING, "terminating") in skipped
    assert Skipped("shop", SkipReason.NOT_SELECTED, "does not match selector 'team=web'") \
        in skipped


# --- the apply run: concurrency and stop conditions (a fake API server) ----------------------



class FakeKube:
    """What apply_bundle and uninstall call, answering from memory; ``fail`` decides per call."""

    server = "https://fake:6443"
    context = "fake"

    def __init__(self, fail: Callable[[str, str], None] | None = None,
                 objects: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.fail = fail or (lambda _verb, _where: None)
        self.objects = objects or {}
        self.applied: list[str] = []
        self.apply_order: list[str] = []
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return []

    def list_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return []

    def list_objects(self, rt: Any, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[dict[str, Any]]:
        if namespace is not None:  # uninstall's read-back: one kind in one namespace
            self.fail("list", f"{rt.kind}/{namespace}/")
        return [copy.deepcopy(o) for o in self.objects.get(rt.kind, [])
                if namespace in (None, o["metadata"].get("namespace"))]

    def server_side_apply(self, body: Mapping[str, Any], *, dry_run: bool = False,
                          force: bool = False) -> Applied:
        """Server-side apply, always answered 201 (created)."""
        ns = body["metadata"]["namespace"]
        with self.lock:
            self.applied.append(ns)
            self.apply_order.append(f"{ns}/{body['metadata']['name']}")
        self.fail("apply", ns)
        out = copy.deepcopy(dict(body))
        out["metadata"]["resourceVersion"] = "1"
        return Applied(out, created=True)

    def delete(self, rt: Any, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool:
        where = f"{rt.kind}/{namespace or '-'}/{name}"
        with self.lock:
            self.deleted.append(where)
        self.fail("delete", where)
        return True


def _uninstall_client(fake: FakeKube) -> UninstallClient:
    return fake  # type-checked: the fake must satisfy the Protocol uninstall is written against


NAMES = [f"ns-{i}" for i in range(6)]


def _run_apply(fake: FakeKube, on_namespace: Callable[[NamespaceResult], None] | None = None,
               workers: int = 2) -> tuple[ApplyReport, NetisoError | None]:
    desired = render_bundle(load_values(None, namespaces=NAMES), NAMES)
    client: ApplyClient = fake
    return apply_bundle(client, desired, NAMES, workers=workers,
                        on_namespace=on_namespace)


def _forbidden(namespace: str | None = "ns-0") -> Forbidden:
    return Forbidden("forbidden as u: cannot create networkpolicies", verb="create",
                     resource="networkpolicies.networking.k8s.io", namespace=namespace, user="u")


@pytest.mark.parametrize("error", [
    _forbidden(namespace=None),
    MissingResourceType("the API server does not serve it", group="cilium.io", component=None),
    Unreachable("cannot reach the API server at https://fake:6443"),
    Unauthorized("rejected the credentials", status=401),
])
def test_an_error_every_namespace_would_hit_stops_the_run(error: NetisoError) -> None:
    release = threading.Event()

    def fail(_verb: str, ns: str) -> None:
        if ns == "ns-0":
            raise error
        if ns == "ns-1":  # in flight when ns-0 fails: it finishes and is reported
            release.wait(10)

    def seen(res: NamespaceResult) -> None:
        if res.namespace == "ns-0":
            release.set()

    fake = FakeKube(fail)
    report, first = _run_apply(fake, seen)
    assert first is error
    states = {ns.namespace: ns.state for ns in report.namespaces}
    assert states == {"ns-0": NamespaceState.FAILED, "ns-1": NamespaceState.APPLIED,
                      **{n: NamespaceState.NOT_ATTEMPTED for n in NAMES[2:]}}
    # Nothing beyond what was in flight ever reached the server.
    assert set(fake.applied) == {"ns-0", "ns-1"}
    line = incomplete_error(report, error).one_line()
    assert "not applied: ns-0, ns-2, ns-3, ns-4, ns-5" in line


def test_an_rbac_refusal_in_one_namespace_does_not_stop_the_others() -> None:
    """Rights may be granted per namespace (RoleBindings): a refusal in ns-0 says nothing about
    ns-1, so every other namespace is still applied."""
    def fail(_verb: str, ns: str) -> None:
        if ns == "ns-0":
            raise _forbidden("ns-0")

    fake = FakeKube(fail)
    report, first = _run_apply(fake)
    assert isinstance(first, Forbidden)
    states = {ns.namespace: ns.state for ns in report.namespaces}
    assert states == {"ns-0": NamespaceState.FAILED,
                      **{n: NamespaceState.APPLIED for n in NAMES[1:]}}


def test_an_error_of_one_namespace_does_not_stop_the_others() -> None:
    def fail(_verb: str, ns: str) -> None:
        if ns == "ns-2":
            raise Denied("the API server refused to patch …: exceeded quota", status=403)

    fake = FakeKube(fail)
    report, first = _run_apply(fake)
    assert isinstance(first, Denied)
    states = {ns.namespace: ns.state for ns in report.namespaces}
    assert states.pop("ns-2") is NamespaceState.FAILED
    assert set(states.values()) == {NamespaceState.APPLIED}


def test_ctrl_c_starts_nothing_more_lets_in_flight_finish_and_reports_interrupted() -> None:
    release = threading.Event()

    def slow(_verb: str, ns: str) -> None:
        if ns == "ns-1":
            release.wait(10)

    interrupted = False

    def interrupt(res: NamespaceResult) -> None:
        nonlocal interrupted
        if not interrupted:  # one Ctrl-C, as the first namespace finishes
            interrupted = True
            release.set()
            raise KeyboardInterrupt

    fake = FakeKube(slow)
    report, error = _run_apply(fake, interrupt)
    assert isinstance(error, Interrupted)
    assert error.exit_code == 130
    states = {ns.namespace: ns.state for ns in report.namespaces}
    # ns-0 done, ns-1 was in flight and finished; nothing further started.
    assert states.pop("ns-0") is NamespaceState.APPLIED
    assert states.pop("ns-1") is NamespaceState.APPLIED
    assert set(states.values()) == {NamespaceState.NOT_ATTEMPTED}
    assert set(fake.applied) == {"ns-0", "ns-1"}
    line = incomplete_error(report, error)
    assert line.exit_code == 130
    assert line.one_line().startswith(f"applied 2 of {len(NAMES)} namespaces; ")
    assert "interrupted (Ctrl-C)" in line.one_line()


def test_a_second_ctrl_c_abandons_what_is_in_flight() -> None:
    release = threading.Event()

    def slow(_verb: str, ns: str) -> None:
        if ns == "ns-1":
            release.wait(60)

    first = True

    def interrupt(res: NamespaceResult) -> None:
        nonlocal first
        if first:
            first = False
            # The second Ctrl-C: a real SIGINT while the run waits for ns-1 (in flight).
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            raise KeyboardInterrupt

    fake = FakeKube(slow)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            _run_apply(fake, interrupt)
        assert time.monotonic() - start < 30  # did not wait the 60 s for ns-1
        assert set(fake.applied) <= {"ns-0", "ns-1"}
    finally:
        release.set()


# --- uninstall's report -----------------------------------------------------------------------


def _owned(kind: str, name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}",
                            "labels": {"app.kubernetes.io/managed-by": "netiso"},
                            "managedFields": [{"manager": "netiso", "operation": "Apply"}]}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta}


LEFTOVERS = {
    "NetworkPolicy": [_owned("NetworkPolicy", "netiso-default-deny-ingress", "team")],
    "Pod": [_owned("Pod", "probe-client", "netiso-probe"), _owned("Pod", "probe", "team")],
    "ConfigMap": [_owned("ConfigMap", "probe-config", "netiso-probe")],
    "Namespace": [_owned("Namespace", "netiso-probe", None)],
}


def _rows(items: list[Target]) -> list[str]:
    return [f"{t.kind}/{t.namespace or '-'}/{t.name}" for t in items]


def test_uninstall_reports_namespace_contents_only_once_the_namespace_went() -> None:
    fake = FakeKube(objects=LEFTOVERS)
    report = run_uninstall(_uninstall_client(fake), workers=1)
    assert report.complete
    # Contents of the probe namespace were not deleted one by one: they went with it.
    assert fake.deleted == ["NetworkPolicy/team/netiso-default-deny-ingress", "Pod/team/probe",
                            "Namespace/-/netiso-probe"]
    assert _rows(report.deleted) == [  # in deletion order: kind, namespace, name
        "NetworkPolicy/team/netiso-default-deny-ingress", "Pod/netiso-probe/probe-client",
        "Pod/team/probe", "ConfigMap/netiso-probe/probe-config", "Namespace/-/netiso-probe"]


def test_uninstall_namespace_refused_leaves_its_contents_not_deleted() -> None:
    def fail(verb: str, where: str) -> None:
        if where == "Namespace/-/netiso-probe":
            raise KubeError("API request failed (409 Conflict) for: delete namespaces",
                            status=409)

    report = run_uninstall(_uninstall_client(FakeKube(fail, LEFTOVERS)), workers=1)
    assert not report.complete
    assert _rows(report.deleted) == ["NetworkPolicy/team/netiso-default-deny-ingress",
                                     "Pod/team/probe"]
    assert _rows([t for t, _ in report.failed]) == ["Namespace/-/netiso-probe"]
    assert _rows(report.not_attempted) == ["Pod/netiso-probe/probe-client",
                                           "ConfigMap/netiso-probe/probe-config"]
    doc = report.to_json()
    assert doc["summary"] == {"deleted": 2, "skipped": 0, "failed": 1, "unknown": 0,
                              "notAttempted": 2}
    err = uninstall_incomplete_error(report)
    assert "deleted 2 of 5 objects" in err.one_line()
    assert "409 Conflict" in err.one_line()


def test_uninstall_keeps_its_report_when_the_server_goes_away() -> None:
    """The DELETE whose connection dropped may have happened: "unknown", not failed, and the
    read-back (the server still gone) says it could not tell."""
    def fail(verb: str, where: str) -> None:
        if where.startswith("NetworkPolicy/"):
            raise Unreachable("cannot reach the API server at https://fake:6443")

    fake = FakeKube(fail, LEFTOVERS)
    report = run_uninstall(_uninstall_client(fake), workers=1)
    assert report.deleted == []
    assert report.failed == []
    assert [(_rows([t])[0], rb.value) for t, rb in report.unknown] == [
        ("NetworkPolicy/team/netiso-default-deny-ingress", "could not read back")]
    assert report.read_back_error is not None
    assert "https://fake:6443" in report.read_back_error
    assert not report.complete
    # Nothing after the dead server was tried, and all of it is accounted for.
    assert fake.deleted == ["NetworkPolicy/team/netiso-default-deny-ingress"]
    assert sorted(_rows(report.not_attempted)) == sorted([
        "Pod/team/probe", "Namespace/-/netiso-probe", "Pod/netiso-probe/probe-client",
        "ConfigMap/netiso-probe/probe-config"])
    err = uninstall_incomplete_error(report)
    assert err.exit_code is ExitCode.FAILED
    assert "https://fake:6443" in err.one_line()


class _NoVerifyRights(FakeKube):
    """The day-to-day role: LIST of services and config maps refused cluster-wide."""

    def list_objects(self, rt: Any, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[dict[str, Any]]:
        if rt.kind in ("Service", "ConfigMap"):
            raise Forbidden(f"forbidden as u: cannot list {rt.plural}", verb="list",
                            resource=rt.plural, namespace=None, user="u")
        return super().list_objects(rt, namespace, label_selector=label_selector)


def test_uninstall_without_verify_rights_says_which_leftovers_it_did_not_look_for() -> None:
    objects = {"NetworkPolicy": LEFTOVERS["NetworkPolicy"]}
    report = run_uninstall(_uninstall_client(_NoVerifyRights(objects=objects)), workers=1)
    assert report.complete
    assert _rows(report.deleted) == ["NetworkPolicy/team/netiso-default-deny-ingress"]
    assert [r for r, _ in report.unchecked] == ["services", "configmaps"]
    assert report.to_json()["unchecked"][0] == {
        "resource": "services", "reason": "forbidden as u: cannot list services"}


def test_uninstall_still_fails_when_it_may_not_list_networkpolicies() -> None:
    class NoPolicies(FakeKube):
        def list_objects(self, rt: Any, namespace: str | None = None, *,
                         label_selector: str | None = None) -> list[dict[str, Any]]:
            raise _forbidden(namespace=None)

    with pytest.raises(Forbidden):
        run_uninstall(_uninstall_client(NoPolicies()), workers=1)


def test_uninstall_interrupted_reports_what_was_deleted_and_exits_130() -> None:
    # One namespace's policies are one unit of work: six namespaces, six units.
    objects = {"NetworkPolicy": [_owned("NetworkPolicy", "p", f"team-{i}") for i in range(6)]}
    fake = FakeKube(objects=objects)
    calls = 0

    class Ctrl:
        def start(self, total: int) -> None:
            assert total == 6

        def advance(self, item: str, outcome: str, *, failed: bool = False,
                    count: int = 1) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyboardInterrupt

    report = run_uninstall(_uninstall_client(fake), workers=1, progress=Ctrl())
    assert report.interrupted and not report.complete
    assert _rows(report.deleted) == ["NetworkPolicy/team-0/p"]
    assert len(report.not_attempted) == 5
    err = uninstall_incomplete_error(report)
    assert err.exit_code == 130
    assert err.one_line().startswith("deleted 1 of 6 objects; not attempted: ")
    assert "interrupted (Ctrl-C)" in err.one_line()
