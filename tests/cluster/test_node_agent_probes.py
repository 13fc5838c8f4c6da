"""Probes and readiness (issue #15.2): startup, readiness and liveness probes really run (exec,
httpGet, tcpSocket); readiness drives the container's `ready`, the pod's Ready condition, a
Deployment's availability and the EndpointSlice; a failing liveness probe restarts the container;
spec.readinessGates hold Ready False until their conditions are True (kubelet's rule).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.test_node_agent import apply, busybox, wait_for
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

Pod = dict[str, Any]


def cond(pod: Pod, kind: str) -> dict[str, Any]:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == kind), {})


def ready(pod: Pod) -> bool:
    return cond(pod, "Ready").get("status") == "True"


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def fast(probe: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**probe, "periodSeconds": 1, "failureThreshold": 1, **extra}


def test_readiness_exec_probe_drives_ready_and_endpoints(lab: LabClient, namespace: str) -> None:
    labels = {"app": "gate"}
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gate"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                "ports": [{"containerPort": 80}],
                "readinessProbe": fast({"exec": {"command": ["cat", "/tmp/ready"]}}),
            }]}}},
    }
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gate"},
           "spec": {"selector": labels, "ports": [{"port": 80}]}}
    for obj in (deploy, svc):
        lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))

    def pod() -> Pod:
        items = json.loads(lab.kubectl("get", "pods", "-n", namespace, "-l", "app=gate",
                                       "-o", "json").stdout)["items"]
        return items[0] if items else {"status": {}}

    def endpoint_ready() -> bool | None:
        slices = json.loads(lab.kubectl("get", "endpointslices", "-n", namespace, "-l",
                                        "kubernetes.io/service-name=gate", "-o",
                                        "json").stdout)["items"]
        eps = [e for s in slices for e in s.get("endpoints") or []]
        return bool(eps[0]["conditions"].get("ready")) if eps else None

    def available() -> int:
        d = json.loads(lab.kubectl("get", "deploy", "-n", namespace, "gate", "-o",
                                   "json").stdout)
        return int(d["status"].get("availableReplicas") or 0)

    eventually(lambda: pod()["status"].get("phase") == "Running", "Running")
    time.sleep(3)  # several failed probes
    p = pod()
    assert not ready(p) and p["status"]["containerStatuses"][0]["ready"] is False
    assert cond(p, "ContainersReady")["status"] == "False"
    assert available() == 0 and endpoint_ready() is not True

    name = p["metadata"]["name"]
    assert lab.exec_in_pod(namespace, name, ["touch", "/tmp/ready"]).returncode == 0
    eventually(lambda: ready(pod()), "Ready after the probe passes")
    eventually(lambda: available() == 1, "Deployment available")
    eventually(lambda: endpoint_ready() is True, "EndpointSlice endpoint ready")

    assert lab.exec_in_pod(namespace, name, ["rm", "/tmp/ready"]).returncode == 0
    eventually(lambda: not ready(pod()), "unready after the probe fails")
    eventually(lambda: endpoint_ready() is False, "EndpointSlice endpoint not ready")
    assert pod()["status"]["containerStatuses"][0]["restartCount"] == 0


def test_http_and_tcp_probes(lab: LabClient, namespace: str) -> None:
    web = busybox(
        "web", ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && "
                "exec httpd -f -p 8080 -h /tmp/www"], restart="Always",
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe=fast({"httpGet": {"path": "/healthz", "port": "http"}}),
        livenessProbe=fast({"tcpSocket": {"port": 8080}}, failureThreshold=3),
    )
    missing = busybox(
        "missing", ["sh", "-c", "mkdir -p /tmp/www && exec httpd -f -p 8080 -h /tmp/www"],
        restart="Always", readinessProbe=fast({"httpGet": {"path": "/nope", "port": 8080}}),
    )
    apply(lab, namespace, web, missing)
    wait_for(lab, namespace, "web", ready)
    time.sleep(3)
    p = wait_for(lab, namespace, "missing", lambda p: p["status"].get("phase") == "Running")
    assert not ready(p), "a 404 must fail an httpGet probe"
    assert wait_for(lab, namespace, "web", ready)["status"]["containerStatuses"][0][
        "restartCount"] == 0


def test_liveness_failure_restarts_and_startup_probe_gates(lab: LabClient, namespace: str) -> None:
    # Healthy while /tmp/alive exists; /tmp is the container's own tmpfs, so a restart
    # begins healthy again and the container is restarted once per failure.
    live = busybox(
        "live", ["sh", "-c", "touch /tmp/alive; sleep 3600"], restart="Always",
        livenessProbe=fast({"exec": {"command": ["cat", "/tmp/alive"]}}, initialDelaySeconds=2),
    )
    live["spec"]["terminationGracePeriodSeconds"] = 1
    slow = busybox(
        "slow", ["sh", "-c", "sleep 4; touch /tmp/started; sleep 3600"], restart="Always",
        startupProbe=fast({"exec": {"command": ["cat", "/tmp/started"]}}, failureThreshold=30),
    )
    apply(lab, namespace, live, slow)
    wait_for(lab, namespace, "live", ready)
    assert lab.exec_in_pod(namespace, "live", ["rm", "/tmp/alive"]).returncode == 0
    p = wait_for(lab, namespace, "live",
                 lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, timeout=30)
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] in (137, 143), last
    wait_for(lab, namespace, "live", ready)

    p = wait_for(lab, namespace, "slow", lambda p: p["status"].get("phase") == "Running")
    st = p["status"]["containerStatuses"][0]
    if not ready(p):
        assert st["started"] is False and st["ready"] is False
    p = wait_for(lab, namespace, "slow", ready, timeout=30)
    assert p["status"]["containerStatuses"][0]["started"] is True


def test_readiness_gates_hold_ready_until_their_condition_is_true(
    lab: LabClient, namespace: str
) -> None:
    pod = busybox("gated", ["sleep", "3600"], restart="Always")
    pod["spec"]["readinessGates"] = [{"conditionType": "netiso.io/probe-ok"}]
    apply(lab, namespace, pod)
    p = wait_for(lab, namespace, "gated",
                 lambda p: cond(p, "ContainersReady").get("status") == "True")
    time.sleep(1)
    p = wait_for(lab, namespace, "gated", lambda p: cond(p, "Ready").get("reason") ==
                 "ReadinessGatesNotReady")
    assert not ready(p)
    assert cond(p, "Ready")["message"] == (
        'corresponding condition of pod readiness gate "netiso.io/probe-ok" does not exist.')

    def set_gate(status: str) -> None:
        patch = {"status": {"conditions": [{"type": "netiso.io/probe-ok", "status": status}]}}
        lab.kubectl("patch", "pod", "-n", namespace, "gated", "--subresource=status",
                    "--type=strategic", "-p", json.dumps(patch))

    set_gate("False")
    p = wait_for(lab, namespace, "gated",
                 lambda p: "is not \"True\", but False" in (cond(p, "Ready").get("message") or ""))
    assert not ready(p)
    set_gate("True")
    wait_for(lab, namespace, "gated", ready)
    set_gate("False")
    wait_for(lab, namespace, "gated", lambda p: not ready(p))
