"""`netiso apply` against the lab's real kube-apiserver.

Every run targets only namespaces this test created (by --namespace or a per-test label with
--selector): the lab is shared, and an untargeted apply would isolate other tests' namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
MANAGED = "app.kubernetes.io/managed-by=netiso"


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def policies(lab: LabClient, namespace: str) -> dict[str, Any]:
    items = lab.networking.list_namespaced_network_policy(namespace).items
    return {p.metadata.name: p for p in items}


@pytest.fixture
def values_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "values.yaml"


def test_apply_creates_bundle_with_ssa_and_rerun_changes_nothing(
        lab: LabClient, namespace: str) -> None:
    first = netiso(lab, "-o", "json", "apply", "-n", namespace)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["kind"] == "ApplyResult"
    assert doc["dryRun"] is False
    created = doc["summary"]["created"]
    assert created >= 4  # default-deny, same-namespace, app ports, metadata egress
    assert doc["summary"]["changed"] == created
    live = policies(lab, namespace)
    assert len(live) == created
    for pol in live.values():
        assert pol.metadata.labels["app.kubernetes.io/managed-by"] == "netiso"
        managers = {(m.manager, m.operation) for m in pol.metadata.managed_fields}
        assert ("netiso", "Apply") in managers
    versions = {n: p.metadata.resource_version for n, p in live.items()}

    again = netiso(lab, "apply", "-n", namespace)
    assert again.returncode == 0, again.stderr
    assert "0 changed" in again.stdout
    assert "not covered until the next `netiso apply`" in again.stderr
    assert {n: p.metadata.resource_version for n, p in policies(lab, namespace).items()} \
        == versions


def test_dry_run_shows_create_update_unchanged_prune_and_writes_nothing(
        lab: LabClient, namespace: str, values_file: Path) -> None:
    dry = netiso(lab, "-o", "json", "apply", "-n", namespace, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    actions = {o["name"]: o["action"] for o in json.loads(dry.stdout)["namespaces"][0]["objects"]}
    assert actions and set(actions.values()) == {"create"}
    assert policies(lab, namespace) == {}

    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    before = {n: p.metadata.resource_version for n, p in policies(lab, namespace).items()}

    # New values: port 8080 instead of 8000 (an update), same-namespace allow off (a prune).
    values_file.write_text(
        "appPorts:\n  - podSelector: {app: web-server}\n    ports: [8080]\n"
        "policies:\n  allowSameNamespace: false\n"
    )
    dry = netiso(lab, "apply", "-f", str(values_file), "-n", namespace, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    dry_json = netiso(lab, "-o", "json", "apply", "-f", str(values_file), "-n", namespace,
                      "--dry-run")
    objects = json.loads(dry_json.stdout)["namespaces"][0]["objects"]
    by_action: dict[str, list[str]] = {}
    for obj in objects:
        by_action.setdefault(obj["action"], []).append(obj["name"])
    assert by_action.get("prune") == ["netiso-allow-same-namespace"], dry_json.stdout
    assert by_action["update"] == ["netiso-allow-app-web-server"]
    assert "netiso-default-deny-ingress" in by_action["unchanged"]
    diff = next(o["diff"] for o in objects if o["action"] == "update")
    label = f"{namespace}/netiso-allow-app-web-server"
    assert diff.startswith(f"--- live/{label}\n+++ bundle/{label}\n"), diff
    # Exactly the port changes: nothing the server adds (managedFields, resourceVersion, …)
    # and nothing else of the object shows up as a difference.
    changed = [line for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("--- ", "+++ "))]
    assert changed == ["-    - port: 8000", "+    - port: 8080"], diff
    # the table output shows the same diff and says what would change
    assert "8080" in dry.stdout
    assert "would change" in dry.stdout
    # nothing was written
    assert {n: p.metadata.resource_version for n, p in policies(lab, namespace).items()} \
        == before

    real = netiso(lab, "-o", "json", "apply", "-f", str(values_file), "-n", namespace)
    assert real.returncode == 0, real.stderr
    summary = json.loads(real.stdout)["summary"]
    assert (summary["updated"], summary["pruned"]) == (1, 1)
    assert "netiso-allow-same-namespace" not in policies(lab, namespace)


def test_prune_touches_only_netiso_objects(lab: LabClient, namespace: str,
                                           values_file: Path) -> None:
    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    foreign = {"metadata": {"name": "team-allow-web"},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}}
    lab.networking.create_namespaced_network_policy(namespace, foreign)
    # Labelled like netiso's but written by someone else: prune must leave it alone.
    impostor = {"metadata": {"name": "netiso-handmade", "labels": {
        "app.kubernetes.io/managed-by": "netiso"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    lab.networking.create_namespaced_network_policy(namespace, impostor)
    before_foreign = policies(lab, namespace)["team-allow-web"].metadata.resource_version

    values_file.write_text("policies:\n  allowAppPorts: false\n")
    no_prune = netiso(lab, "-o", "json", "apply", "-f", str(values_file), "-n", namespace,
                      "--no-prune")
    assert no_prune.returncode == 0, no_prune.stderr
    assert json.loads(no_prune.stdout)["summary"]["pruned"] == 0
    assert any("app-ports" in n or "web-server" in n for n in policies(lab, namespace))

    pruned = netiso(lab, "-o", "json", "apply", "-f", str(values_file), "-n", namespace)
    assert pruned.returncode == 0, pruned.stderr
    names = [o["name"] for o in json.loads(pruned.stdout)["namespaces"][0]["objects"]
             if o["action"] == "prune"]
    assert len(names) == 1
    live = policies(lab, namespace)
    assert names[0] not in live
    assert live["team-allow-web"].metadata.resource_version == before_foreign
    assert "netiso-handmade" in live


def test_conflict_names_the_other_field_manager(lab: LabClient, namespace: str) -> None:
    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    name = "netiso-default-deny-ingress"
    assert name in policies(lab, namespace)
    # Another tool takes over spec.podSelector with a forced server-side apply.
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {"matchLabels": {"only": "this"}}}}
    lab.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=other-tool",
                "-f", "-", input=json.dumps(body))

    refused = netiso(lab, "apply", "-n", namespace)
    assert refused.returncode == 1
    err = refused.stderr
    assert "other-tool" in err
    assert "spec.podSelector" in err
    assert "--force-conflicts" in err
    assert "not applied" in err

    forced = netiso(lab, "apply", "-n", namespace, "--force-conflicts")
    assert forced.returncode == 0, forced.stderr
    assert policies(lab, namespace)[name].spec.pod_selector.match_labels is None


def test_excluded_and_opted_out_namespaces_are_skipped_and_said(lab: LabClient) -> None:
    run = uuid.uuid4().hex[:6]
    label = f"netiso-test-run={run}"
    names = [f"t-excl-{run}-a", f"t-excl-{run}-b"]
    for n in names:
        labels = {"netiso-test-run": run}
        if n.endswith("-b"):
            labels["netiso.io/exclude"] = "true"
        lab.core.create_namespace({"metadata": {"name": n, "labels": labels}})
    try:
        out = netiso(lab, "-o", "json", "apply", "--selector", label)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert [ns["namespace"] for ns in doc["namespaces"]] == [names[0]]
        skipped = {s["namespace"]: s["reason"] for s in doc["skipped"]}
        assert "netiso.io/exclude=true" in skipped[names[1]]
        assert f"namespace {names[1]}: labelled netiso.io/exclude=true" in out.stderr
        assert policies(lab, names[1]) == {}
        assert policies(lab, names[0])

        # A system namespace named without --force is refused before anything is written:
        # kube-system holds exactly what it held before, and nothing of netiso's.
        before = {n: p.metadata.resource_version for n, p in policies(lab, "kube-system").items()}
        system = netiso(lab, "apply", "-n", "kube-system")
        assert system.returncode == 2
        assert "'kube-system' is a system namespace" in system.stderr
        assert "pass --force" in system.stderr
        after = policies(lab, "kube-system")
        assert {n: p.metadata.resource_version for n, p in after.items()} == before
        assert not [n for n, p in after.items()
                    if (p.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "netiso"]
    finally:
        for n in names:
            lab.core.delete_namespace(n)


def test_first_apply_lists_pods_that_become_isolated(lab: LabClient, namespace: str) -> None:
    lab.run_busybox(namespace, "web", tcp_server_command(8080), labels={"app": "web"})
    lab.wait_for_pod_running(namespace, "web")
    # A second, empty namespace that sorts first: with one worker it is written before the
    # namespace with the pod, so a warning printed only when its own namespace is reached
    # would come after that namespace's "applied" line.
    first = f"t-a-isolated-{uuid.uuid4().hex[:5]}"
    assert first < namespace
    lab.core.create_namespace({"metadata": {"name": first}})
    try:
        out = netiso(lab, "-v", "-o", "json", "apply", "-n", first, "-n", namespace,
                     "--concurrency", "1")
        assert out.returncode == 0, out.stderr
        by_ns = {ns["namespace"]: ns for ns in json.loads(out.stdout)["namespaces"]}
        assert by_ns[namespace]["firstApply"] is True
        assert by_ns[namespace]["podsBecomingIsolated"] == ["web"]
        assert by_ns[first]["podsBecomingIsolated"] == []
        lines = out.stderr.splitlines()

        def index(fragment: str) -> int:
            (i,) = [n for n, line in enumerate(lines) if fragment in line]
            return i

        warning = index(f"namespace {namespace}: first apply; 1 running pod(s) become isolated")
        # The warning precedes every write of the run: the first namespace's completion, and
        # the info line printed just before the workers start.
        assert warning < index(f"namespace {first}: applied") < index(
            f"namespace {namespace}: applied"), out.stderr
        assert index("objects for 2 namespaces") < warning
        again = netiso(lab, "-o", "json", "apply", "-n", namespace)
        assert json.loads(again.stdout)["namespaces"][0]["podsBecomingIsolated"] == []
        assert "become isolated" not in again.stderr
    finally:
        lab.core.delete_namespace(first, propagation_policy="Background")


def test_missing_crd_names_the_component(lab: LabClient) -> None:
    from netiso import kube

    with kube.connect(str(lab.kubeconfig)) as k, pytest.raises(kube.MissingResourceType) as err:
        k.list_objects(kube.resource_type("cilium.io/v2", "CiliumNetworkPolicy"))
    assert "Cilium" in err.value.one_line()
    assert err.value.exit_code == 4


def test_watch_and_wait_for(lab: LabClient, namespace: str) -> None:
    import threading

    from netiso import kube

    with kube.connect(str(lab.kubeconfig)) as k:
        def later() -> None:
            lab.core.create_namespaced_config_map(
                namespace, {"metadata": {"name": "late", "labels": {"x": "y"}}})

        timer = threading.Timer(1.0, later)
        timer.start()
        obj = k.wait_for(kube.CONFIGMAP, "late", namespace,
                         lambda o: o is not None and o["metadata"]["labels"].get("x") == "y",
                         timeout=30, what="the config map")
        timer.join()
        assert obj is not None
        assert obj["metadata"]["name"] == "late"
        with pytest.raises(kube.KubeError) as err:
            k.wait_for(kube.CONFIGMAP, "never", namespace, lambda o: o is not None, timeout=2,
                       what="a config map that never comes")
        assert "timed out" in err.value.one_line()


def test_terminating_namespace_is_skipped_and_its_refusal_is_not_called_rbac(
        lab: LabClient) -> None:
    from netiso import kube

    name = f"t-terminating-{uuid.uuid4().hex[:5]}"
    hold = "netiso.test/hold"
    lab.core.create_namespace({"metadata": {"name": name}})
    # A finalizer on an object inside keeps the namespace in phase Terminating until removed.
    lab.core.create_namespaced_config_map(name, {"metadata": {"name": "hold",
                                                              "finalizers": [hold]}})
    lab.core.delete_namespace(name)
    try:
        out = netiso(lab, "-o", "json", "apply", "-n", name)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["namespaces"] == []
        assert doc["skipped"] == [{"namespace": name, "reason": "terminating"}]
        assert f"skipped 1 namespace, terminating: {name}" in out.stderr
        status = netiso(lab, "-o", "json", "status", "-n", name)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["skipped"] == [{"namespace": name,
                                                         "reason": "terminating"}]
        assert f"namespace {name}: terminating" in status.stderr

        # Were it applied anyway, the API server's 403 is the namespace's, not RBAC's.
        desired = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "netiso-x", "namespace": name},
                   "spec": {"podSelector": {}}}
        with kube.connect(str(lab.kubeconfig)) as k, pytest.raises(kube.Denied) as err:
            k.apply(desired)
        line = err.value.one_line()
        assert err.value.status == 403
        assert "because it is being terminated" in line
        assert "the namespace is being deleted" in line
        assert "netiso render --rbac" not in line
    finally:
        lab.core.patch_namespaced_config_map("hold", name, {"metadata": {"finalizers": None}})


def test_quota_refusal_fails_its_namespace_only_in_the_servers_words(
        lab: LabClient, namespace: str) -> None:
    import time

    quota_ns = f"t-a-quota-{uuid.uuid4().hex[:5]}"
    assert quota_ns < namespace  # applied first with one worker: the run must go on after it
    lab.core.create_namespace({"metadata": {"name": quota_ns}})
    try:
        lab.core.create_namespaced_resource_quota(quota_ns, {
            "metadata": {"name": "no-policies"},
            "spec": {"hard": {"count/networkpolicies.networking.k8s.io": "0"}}})
        deadline = time.monotonic() + 60
        while not (lab.core.read_namespaced_resource_quota("no-policies", quota_ns).status
                   and lab.core.read_namespaced_resource_quota("no-policies", quota_ns)
                   .status.hard):
            assert time.monotonic() < deadline, "quota controller never filled in the quota"
            time.sleep(0.2)
        out = netiso(lab, "-o", "json", "apply", "-n", quota_ns, "-n", namespace,
                     "--concurrency", "1")
        assert out.returncode == 1
        states = {ns["namespace"]: ns["state"] for ns in json.loads(out.stdout)["namespaces"]}
        assert states == {quota_ns: "failed", namespace: "applied"}
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("netiso: error: applied 1 of 2 namespaces")
        assert "exceeded quota: no-policies" in last
        assert "not a permissions problem" in last
        assert "netiso render --rbac" not in last
    finally:
        lab.core.delete_namespace(quota_ns, propagation_policy="Background")
