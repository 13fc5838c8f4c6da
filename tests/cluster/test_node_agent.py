"""The node agent against the lab's real kube-apiserver: what a pod's status says is what happened.

Each test creates pods in its own namespace (fixture ``namespace``) and reads the status back
through the API, as kubectl or netiso would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.lab import network
from tests.lab.client import LabClient
from tests.lab.node_agent import NETNS_ANNOTATION

pytestmark = pytest.mark.lab

Pod = dict[str, Any]


def apply(lab: LabClient, namespace: str, *pods: Pod) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"apiVersion": "v1", "kind": "Pod", **p} for p in pods],
    }
    lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def get(lab: LabClient, namespace: str, name: str) -> Pod:
    out = lab.kubectl("get", "pod", "-n", namespace, name, "-o", "json")
    pod: Pod = json.loads(out.stdout)
    return pod


def wait_for(
    lab: LabClient, namespace: str, name: str, check: Callable[[Pod], bool], timeout: float = 30
) -> Pod:
    deadline = time.monotonic() + timeout
    pod = get(lab, namespace, name)
    while not check(pod):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{name}: condition not met in {timeout}s; status={json.dumps(pod.get('status'))}"
            )
        time.sleep(0.1)
        pod = get(lab, namespace, name)
    return pod


def busybox(name: str, command: list[str], restart: str = "Never", **container: Any) -> Pod:
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.36", "command": command, **container}],
        },
    }


def state(pod: Pod, key: str = "containerStatuses") -> dict[str, Any]:
    statuses = pod["status"].get(key) or [{}]
    st: dict[str, Any] = statuses[0].get("state") or {}
    return st


def test_running_pod_reports_ip_host_conditions_and_annotation(
    lab: LabClient, namespace: str
) -> None:
    t0 = time.monotonic()
    apply(lab, namespace, busybox("web", ["sleep", "3600"], restart="Always"))
    pod = wait_for(lab, namespace, "web", lambda p: p["status"].get("phase") == "Running")
    took = time.monotonic() - t0
    status = pod["status"]
    node = next(n for n in lab.spec.nodes if n.name == pod["spec"]["nodeName"])
    assert status["hostIP"] == node.ip
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["podIP"].startswith(node.pod_cidr.rsplit(".", 1)[0] + ".")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert "running" in state(pod) and status["containerStatuses"][0]["ready"] is True
    netns = pod["metadata"]["annotations"][NETNS_ANNOTATION]
    assert netns == network.pod_netns_name(pod["metadata"]["uid"])
    out = network.exec_in_pod(netns, ["hostname"])
    assert out.stdout.strip() == "web"
    assert took < 5, f"pod took {took:.1f}s to run"


def test_exit_codes_reasons_and_termination_messages(lab: LabClient, namespace: str) -> None:
    apply(
        lab,
        namespace,
        busybox("ok", ["true"]),
        busybox("msg", ["sh", "-c", "echo bye > /dev/termination-log; exit 3"]),
        busybox(
            "fallback",
            ["sh", "-c", "echo first; echo oops >&2; exit 2"],
            terminationMessagePolicy="FallbackToLogsOnError",
        ),
        busybox(
            "custom-path",
            ["sh", "-c", "echo custom > /tmp/done; exit 0"],
            terminationMessagePath="/tmp/done",
        ),
    )
    ended = lambda p: p["status"].get("phase") in ("Succeeded", "Failed")  # noqa: E731
    ok = wait_for(lab, namespace, "ok", ended)
    assert ok["status"]["phase"] == "Succeeded"
    assert (
        state(ok)["terminated"]["exitCode"] == 0
        and state(ok)["terminated"]["reason"] == "Completed"
    )
    msg = wait_for(lab, namespace, "msg", ended)
    assert msg["status"]["phase"] == "Failed"
    term = state(msg)["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (3, "Error", "bye\n")
    fallback = state(wait_for(lab, namespace, "fallback", ended))["terminated"]
    assert fallback["exitCode"] == 2 and fallback["message"] == "first\noops"
    custom = state(wait_for(lab, namespace, "custom-path", ended))["terminated"]
    assert custom["message"] == "custom\n"


def test_restart_policies_and_crash_loop_back_off(lab: LabClient, namespace: str) -> None:
    apply(
        lab,
        namespace,
        busybox("onfailure", ["sh", "-c", "exit 1"], restart="OnFailure"),
        busybox("always", ["true"], restart="Always"),
    )
    for name in ("onfailure", "always"):
        pod = wait_for(
            lab,
            namespace,
            name,
            lambda p: "waiting" in state(p) and state(p)["waiting"]["reason"] == "CrashLoopBackOff",
        )
        st = pod["status"]["containerStatuses"][0]
        # First restart at once, then a 10 s back-off: exactly one restart done so far.
        assert st["restartCount"] == 1
        assert st["lastState"]["terminated"]["exitCode"] == (1 if name == "onfailure" else 0)
        assert pod["status"]["phase"] == "Running"


def test_unknown_image_waits_in_image_pull_back_off(lab: LabClient, namespace: str) -> None:
    apply(
        lab,
        namespace,
        {
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
        },
    )
    pod = wait_for(
        lab,
        namespace,
        "nginx",
        lambda p: state(p).get("waiting", {}).get("reason") == "ErrImagePull",
        timeout=10,
    )
    assert "docker.io/library/nginx:1.25" in state(pod)["waiting"]["message"]
    pod = wait_for(
        lab,
        namespace,
        "nginx",
        lambda p: state(p).get("waiting", {}).get("reason") == "ImagePullBackOff",
    )
    assert pod["status"]["phase"] == "Pending"
    assert "Back-off pulling image" in state(pod)["waiting"]["message"]


def test_init_containers_env_and_working_dir(lab: LabClient, namespace: str) -> None:
    pod = busybox(
        "env",
        ["sh", "-c", "echo A=$A B=$B IP=$IP NODE=$NODE PWD=$(pwd) > /dev/termination-log"],
        env=[
            {"name": "A", "value": "x"},
            {"name": "B", "value": "$(A)-y"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        workingDir="/tmp",
    )
    pod["spec"]["initContainers"] = [
        {"name": "init", "image": "busybox", "command": ["sh", "-c", "exit 0"]}
    ]
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": lab.spec.nodes[-1].name}
    apply(lab, namespace, pod)
    done = wait_for(
        lab, namespace, "env", lambda p: p["status"].get("phase") in ("Succeeded", "Failed")
    )
    assert done["spec"]["nodeName"] == lab.spec.nodes[-1].name
    assert state(done, "initContainerStatuses")["terminated"]["exitCode"] == 0
    ip = done["status"]["podIP"]
    assert (
        state(done)["terminated"]["message"]
        == f"A=x B=x-y IP={ip} NODE={done['spec']['nodeName']} PWD=/tmp\n"
    )


def test_deletion_honours_the_grace_period(lab: LabClient, namespace: str) -> None:
    pod = busybox(
        "stubborn", ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"], restart="Always"
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 3
    apply(lab, namespace, pod, busybox("polite", ["sleep", "3600"], restart="Always"))
    stubborn = wait_for(lab, namespace, "stubborn", lambda p: p["status"].get("phase") == "Running")
    wait_for(lab, namespace, "polite", lambda p: p["status"].get("phase") == "Running")
    netns = network.pod_netns_name(stubborn["metadata"]["uid"])
    t0 = time.monotonic()
    lab.kubectl("delete", "pod", "-n", namespace, "polite", "--wait=true")
    polite = time.monotonic() - t0
    t0 = time.monotonic()
    lab.kubectl("delete", "pod", "-n", namespace, "stubborn", "--wait=true")
    took = time.monotonic() - t0
    assert polite < 2.5, f"SIGTERM-respecting pod took {polite:.1f}s"
    assert 2.5 <= took < 6, f"grace 3 s, pod gone after {took:.1f}s"
    assert not network.netns_exists(netns)


def test_unschedulable_pod_says_why(lab: LabClient, namespace: str) -> None:
    pod = busybox("nowhere", ["true"])
    pod["spec"]["nodeSelector"] = {"no-such-label": "x"}
    apply(lab, namespace, pod)
    pod = wait_for(
        lab,
        namespace,
        "nowhere",
        lambda p: any(
            c["type"] == "PodScheduled" and c["status"] == "False"
            for c in p["status"].get("conditions") or []
        ),
    )
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable"
    assert not pod["spec"].get("nodeName")


def test_service_names_resolve_through_the_lab_dns(lab: LabClient, namespace: str) -> None:
    apply(lab, namespace, busybox("client", ["sleep", "3600"], restart="Always"))
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(svc))
    cluster_ip = json.loads(lab.kubectl("get", "svc", "-n", namespace, "web", "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]
    wait_for(lab, namespace, "client", lambda p: p["status"].get("phase") == "Running")
    deadline = time.monotonic() + 10
    while True:
        out = lab.resolve(namespace, "client", f"web.{namespace}.svc.cluster.local")
        if cluster_ip in out.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert cluster_ip in out.stdout, out
    out = lab.resolve(namespace, "client", "kubernetes.default.svc.cluster.local")
    assert "10.96.0.1" in out.stdout, out
    out = lab.resolve(namespace, "client", f"nope.{namespace}.svc.cluster.local")
    assert out.returncode != 0 and "NXDOMAIN" in out.stdout + out.stderr


def test_pod_scripts_can_bound_wget_with_a_timeout(lab: LabClient, namespace: str) -> None:
    # Debian's busybox wget segfaults on -T; the lab's shim must also apply inside `sh -c`.
    url = "http://169.254.169.254/latest/meta-data/instance-id"
    apply(
        lab,
        namespace,
        busybox("probe", ["sh", "-c", f"wget -qO- -T 3 {url} > /dev/termination-log"]),
    )
    pod = wait_for(
        lab, namespace, "probe", lambda p: p["status"].get("phase") in ("Succeeded", "Failed")
    )
    term = state(pod)["terminated"]
    assert (term["exitCode"], term.get("message")) == (0, "i-0netisolab000001"), term


def test_kubectl_logs_reads_the_container_output(lab: LabClient, namespace: str) -> None:
    apply(
        lab,
        namespace,
        busybox("talker", ["sh", "-c", "echo one; echo two; exit 1"], restart="OnFailure"),
    )
    wait_for(
        lab,
        namespace,
        "talker",
        lambda p: (
            p["status"]["containerStatuses"][0]["restartCount"] >= 1
            if p["status"].get("containerStatuses")
            else False
        ),
    )
    out = lab.kubectl("logs", "-n", namespace, "talker", check=False)
    assert out.stdout == "one\ntwo\n", out.stderr
    out = lab.kubectl("logs", "-n", namespace, "talker", "--tail=1", check=False)
    assert out.stdout == "two\n", out.stderr
    out = lab.kubectl("logs", "-n", namespace, "talker", "--previous", check=False)
    assert out.stdout == "one\ntwo\n", out.stderr
