"""Pod volumes (issue #15.2): configMap, secret, projected, downwardAPI, emptyDir and hostPath,
mounted at their mountPath (subPath too) inside each container's own mount namespace; hostPath
maps to the node's directory under the lab state, never to the host's real path.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from tests.cluster.test_node_agent import apply, busybox, state, wait_for
from tests.lab import controlplane
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

HOST_DIR = "/var/lib/netiso-lab-test-hostpath"


def _create(lab: LabClient, namespace: str, *objects: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _read(lab: LabClient, namespace: str, pod: str, script: str) -> str:
    out = lab.exec_in_pod(namespace, pod, ["sh", "-c", script])
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_config_secret_projected_and_downward_volumes(lab: LabClient, namespace: str) -> None:
    _create(
        lab, namespace,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
         "data": {"app.yaml": "a: 1\n", "other": "x"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
         "data": {"tls.key": base64.b64encode(b"KEY").decode()}},
    )
    volumes = [
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu",
                                                 "divisor": "1m"}}]}},
        {"name": "all", "projected": {"sources": [
            {"serviceAccountToken": {"path": "tok", "audience": "lab-test",
                                     "expirationSeconds": 3600}},
            {"configMap": {"name": "conf", "items": [{"key": "other", "path": "sub/other"}]}},
            {"secret": {"name": "tls"}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}},
    ]
    mounts = [
        {"name": "conf", "mountPath": "/etc/app"},
        {"name": "conf", "mountPath": "/config/app.yaml", "subPath": "app.yaml"},
        {"name": "tls", "mountPath": "/etc/tls"},
        {"name": "info", "mountPath": "/etc/podinfo"},
        {"name": "all", "mountPath": "/projected"},
    ]
    pod = busybox("vols", ["sleep", "3600"], restart="Always", volumeMounts=mounts,
                  resources={"limits": {"cpu": "500m"}})
    pod["metadata"]["labels"] = {"app": "vols", "tier": "x"}
    pod["spec"]["volumes"] = volumes
    apply(lab, namespace, pod)
    wait_for(lab, namespace, "vols", lambda p: p["status"].get("phase") == "Running")
    assert _read(lab, namespace, "vols", "cat /etc/app/app.yaml /etc/app/other") == "a: 1\nx"
    assert _read(lab, namespace, "vols", "cat /config/app.yaml") == "a: 1\n"
    assert _read(lab, namespace, "vols", "cat /etc/tls/tls.key; stat -c %a /etc/tls/tls.key") \
        == "KEY400\n"
    labels = json.loads(lab.kubectl("get", "pod", "-n", namespace, "vols", "-o",
                                    "json").stdout)["metadata"]["labels"]
    assert {"app": "vols", "tier": "x"}.items() <= labels.items()
    rendered = "\n".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    assert _read(lab, namespace, "vols", "cat /etc/podinfo/labels; echo; cat /etc/podinfo/cpu") \
        == f"{rendered}\n500"
    assert _read(lab, namespace, "vols", "cat /projected/sub/other /projected/tls.key "
                 "/projected/ns") == f"xKEY{namespace}"
    token = _read(lab, namespace, "vols", "cat /projected/tok")
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["aud"] == ["lab-test"]
    assert payload["kubernetes.io"]["pod"]["name"] == "vols"
    # Content volumes are read-only, as kubelet mounts them.
    denied = lab.exec_in_pod(namespace, "vols", ["sh", "-c", "echo y > /etc/app/other"])
    assert denied.returncode != 0
    for path in ("/etc/app", "/config", "/etc/tls", "/etc/podinfo", "/projected"):
        assert not os.path.exists(path), f"{path} appeared on the host"


def test_empty_dir_shared_by_init_and_app_containers_in_order(
    lab: LabClient, namespace: str
) -> None:
    pod = busybox("shared", ["sh", "-c", "echo app >> /work/log; cat /work/log "
                             "> /dev/termination-log"],
                  volumeMounts=[{"name": "work", "mountPath": "/work"}])
    pod["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    pod["spec"]["initContainers"] = [
        {"name": f"init-{i}", "image": "busybox", "command": ["sh", "-c", f"echo {i} >> /work/log"],
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
        for i in (1, 2)
    ]
    apply(lab, namespace, pod)
    done = wait_for(lab, namespace, "shared", lambda p: p["status"].get("phase") == "Succeeded")
    assert state(done)["terminated"]["message"] == "1\n2\napp\n"


def test_host_path_lands_in_the_nodes_own_directory(lab: LabClient, namespace: str) -> None:
    assert not os.path.exists(HOST_DIR)
    node = lab.spec.nodes[-1]
    pod = busybox("hp", ["sh", "-c", f"echo written > {HOST_DIR}/f; touch /run/xtables.lock"],
                  volumeMounts=[{"name": "h", "mountPath": HOST_DIR},
                                {"name": "lock", "mountPath": "/run/xtables.lock"}])
    pod["spec"]["nodeName"] = node.name
    pod["spec"]["volumes"] = [
        {"name": "h", "hostPath": {"path": HOST_DIR, "type": "DirectoryOrCreate"}},
        {"name": "lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
    ]
    apply(lab, namespace, pod)
    done = wait_for(lab, namespace, "hp", lambda p: p["status"].get("phase") in ("Succeeded",
                                                                                 "Failed"))
    assert done["status"]["phase"] == "Succeeded", state(done)
    node_root = controlplane.state_dir() / "nodes" / node.name / "root"
    assert (node_root / HOST_DIR.lstrip("/") / "f").read_text() == "written\n"
    assert (node_root / "run" / "xtables.lock").is_file()
    assert not os.path.exists(HOST_DIR), "hostPath wrote to the host's real path"
