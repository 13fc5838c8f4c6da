"""`netiso plan` on the lab: the impact preview names the flows the bundle cuts, and only those.

A server pod behind a Service with two ports, a client pod in another namespace. The values'
app-port allow opens one of the two ports; the default-deny closes the other. ``plan`` must
list the client's flow to the closed port as cut by the default-deny (ingress side), list
nothing for the port the allow keeps, write nothing, and run as a ServiceAccount bound to
exactly the ClusterRole ``netiso render --rbac`` prints. Then the bundle is applied for real and
real TCP from the client shows the same two answers, so the preview is checked against
kube-router, not only against the evaluator.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_rbac import bind, rendered_role
from tests.lab.client import LabClient
from tests.schemas import validate

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
CLOSED, KEPT = 8080, 9090
SERVE = f"nc -ll -p {CLOSED} -e echo ok & nc -ll -p {KEPT} -e echo ok & wait"
SETTLE = 45.0


def netiso(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def other_namespace(lab: LabClient) -> Iterator[str]:
    name = f"t-plan-client-{uuid.uuid4().hex[:5]}"
    lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-lab/test": "true"}}})
    deadline = time.monotonic() + 30
    while True:
        try:
            lab.core.read_namespaced_service_account("default", name)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            lab.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def values_file(tmp_path: Path) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(f"appPorts:\n  - podSelector: {{app: web}}\n    ports: [{KEPT}]\n")
    return path


def _service_with_endpoints(lab: LabClient, namespace: str) -> None:
    lab.core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "closed", "port": 80, "targetPort": CLOSED},
            {"name": "kept", "port": 90, "targetPort": KEPT}]}})
    # The controller-manager's EndpointSlice controller fills the slice once the pod is ready.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = lab.kubectl("get", "endpointslices", "-n", namespace, "-l",
                            "kubernetes.io/service-name=web", "-o", "json").stdout
        items = json.loads(found)["items"]
        if any(ep.get("targetRef", {}).get("name") == "web"
               for s in items for ep in s.get("endpoints") or []):
            return
        time.sleep(0.5)
    raise AssertionError("no EndpointSlice lists pod web after 60 s")


def _cut(doc: dict[str, Any], src: str, dst: str) -> dict[int, dict[str, Any]]:
    """The cut groups to ``dst`` that name ``src`` (alone in its namespace: as a pod)."""
    return {c["port"]: c for c in doc["impact"]["cut"] if src in c["from"] and c["to"] == dst}


def test_plan_lists_the_cut_flow_and_not_the_kept_one(lab: LabClient, namespace: str,
                                                      other_namespace: str,
                                                      values_file: Path) -> None:
    # The server declares no container port: the flows come from the Service alone.
    lab.run_busybox(namespace, "web", ["sh", "-c", SERVE], labels={"app": "web"})
    lab.run_busybox(other_namespace, "client", ["sleep", "3600"], labels={"app": "client"})
    lab.wait_for_pod_running(namespace, "web")
    lab.wait_for_pod_running(other_namespace, "client")
    _service_with_endpoints(lab, namespace)

    sa_kubeconfig = lab.service_account_kubeconfig(namespace, "netiso")
    for _ in bind(lab, rendered_role(), namespace, "netiso"):
        deadline = time.monotonic() + 10
        while True:  # a fresh binding reaches the RBAC authorizer's cache a moment later
            out = netiso(sa_kubeconfig, "-o", "json", "plan", "-p", "generic",
                         "-f", str(values_file), "-n", namespace)
            if out.returncode == 0 or time.monotonic() > deadline or "forbidden" not in \
                    out.stderr:
                break
            time.sleep(0.5)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    validate("plan", doc)

    src, dst = f"{other_namespace}/client", f"{namespace}/web"
    cut = _cut(doc, src, dst)
    assert set(cut) == {CLOSED}, doc["impact"]["cut"]
    assert cut[CLOSED]["via"] == [f"service {namespace}/web"]
    assert cut[CLOSED]["cutBy"]["egress"] == []
    assert f"{namespace}/netiso-default-deny-ingress" in cut[CLOSED]["cutBy"]["ingress"]
    # The same namespace keeps talking (allow-same-namespace): nothing from the namespace.
    assert not [c for c in doc["impact"]["cut"]
                if namespace in c["fromNamespaces"]
                or any(p.startswith(f"{namespace}/") for p in c["from"])]
    isolated = {p["pod"]: p for p in doc["impact"]["isolated"]}
    assert f"{namespace}/netiso-default-deny-ingress" in isolated[dst]["ingress"]
    assert src not in isolated  # its namespace is not a target
    (ns_plan,) = doc["namespaces"]
    assert ns_plan["namespace"] == namespace
    assert {o["action"] for o in ns_plan["objects"]} == {"create"}
    # The lab's kube-router runs outside pods, so no engine DaemonSet is seen and the generic
    # provider refuses to enable: the plan says bootstrap would stop there (exit 4), and still
    # shows the apply and the impact.
    enable = doc["enable"]
    assert (enable["status"], enable["exitCode"]) == ("refused", 4)
    assert "no cloud API" in enable["message"]
    assert [s["state"] for s in doc["steps"]] == [
        "would-run", "blocked", "blocked", "blocked", "would-run", "would-run"]
    assert "bootstrap would stop at enable" in out.stderr
    # Read-only: nothing was written.
    assert lab.networking.list_namespaced_network_policy(namespace).items == []

    # The preview against real traffic: apply, then the client's two connections.
    applied = netiso(lab.kubeconfig, "apply", "-p", "generic", "-f", str(values_file),
                     "-n", namespace)
    assert applied.returncode == 0, applied.stderr
    ip = lab.pod_ip(namespace, "web")
    deadline = time.monotonic() + SETTLE
    while True:
        seen = (lab.can_connect(other_namespace, "client", ip, CLOSED),
                lab.can_connect(other_namespace, "client", ip, KEPT))
        if seen == (False, True) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert seen == (False, True)

    # After the apply the plan has nothing left to cut, and every object is unchanged.
    again = netiso(lab.kubeconfig, "-o", "json", "plan", "-p", "generic", "-f",
                   str(values_file), "-n", namespace)
    assert again.returncode == 0, again.stderr
    after = json.loads(again.stdout)
    validate("plan", after)
    assert after["impact"]["cut"] == [] and after["impact"]["isolated"] == []
    assert {o["action"] for ns in after["namespaces"] for o in ns["objects"]} == {"unchanged"}
    assert after["steps"][4]["state"] == "already-done"
