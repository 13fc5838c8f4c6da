"""Placement (issue #15.2): DaemonSet pods land on the node their nodeAffinity names
(`matchFields metadata.name`), taints keep pods off a node unless they tolerate them, and
hostNetwork pods run in the node's netns with the node's IP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.cluster.test_node_agent import apply, busybox, wait_for
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

TAINT = "netiso.io/lab-test"


@pytest.fixture
def tainted(lab: LabClient) -> Iterator[str]:
    node = lab.spec.nodes[0].name
    lab.kubectl("taint", "node", node, f"{TAINT}=yes:NoSchedule")
    try:
        yield node
    finally:
        lab.kubectl("taint", "node", node, f"{TAINT}-", check=False)


def test_daemonset_pods_run_on_every_node_by_their_affinity(
    lab: LabClient, namespace: str
) -> None:
    labels = {"app": "everywhere"}
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "everywhere"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}},
    }
    lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(ds))
    want = sorted(n.name for n in lab.spec.nodes)
    deadline = time.monotonic() + 60
    while True:
        d = json.loads(lab.kubectl("get", "ds", "-n", namespace, "everywhere", "-o",
                                   "json").stdout)
        if d["status"].get("numberReady") == len(want):
            break
        assert time.monotonic() < deadline, d["status"]
        time.sleep(0.5)
    pods = json.loads(lab.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == want
    for p in pods:
        terms = p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms[0]["matchFields"][0]["values"] == [p["spec"]["nodeName"]]


def test_taints_keep_pods_off_unless_tolerated(
    lab: LabClient, namespace: str, tainted: str
) -> None:
    if len(lab.spec.nodes) < 2:
        pytest.skip("needs two nodes")
    plain = busybox("plain", ["sleep", "3600"], restart="Always")
    plain["spec"]["nodeSelector"] = {"kubernetes.io/hostname": tainted}
    tolerant = busybox("tolerant", ["sleep", "3600"], restart="Always")
    tolerant["spec"]["nodeSelector"] = {"kubernetes.io/hostname": tainted}
    tolerant["spec"]["tolerations"] = [{"key": TAINT, "operator": "Equal", "value": "yes",
                                        "effect": "NoSchedule"}]
    free = [busybox(f"free-{i}", ["sleep", "3600"], restart="Always") for i in range(4)]
    apply(lab, namespace, plain, tolerant, *free)
    p = wait_for(lab, namespace, "tolerant", lambda p: p["status"].get("phase") == "Running")
    assert p["spec"]["nodeName"] == tainted
    for f in free:
        p = wait_for(lab, namespace, f["metadata"]["name"],
                     lambda p: p["status"].get("phase") == "Running")
        assert p["spec"]["nodeName"] != tainted
    p = wait_for(lab, namespace, "plain", lambda p: any(
        c["type"] == "PodScheduled" and c["status"] == "False"
        for c in p["status"].get("conditions") or []))
    message = next(c["message"] for c in p["status"]["conditions"]
                   if c["type"] == "PodScheduled")
    assert "untolerated taint" in message and not p["spec"].get("nodeName")
    # The taint goes: the pending pod is scheduled on the next retry, as by a scheduler.
    lab.kubectl("taint", "node", tainted, f"{TAINT}-")
    p = wait_for(lab, namespace, "plain", lambda p: p["status"].get("phase") == "Running",
                 timeout=40)
    assert p["spec"]["nodeName"] == tainted
