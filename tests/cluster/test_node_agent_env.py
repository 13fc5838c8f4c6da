"""Container environment (issue #15.2): env valueFrom (fieldRef, resourceFieldRef,
configMapKeyRef, secretKeyRef, optional), envFrom with prefixes, $(VAR) in command and args, and
kubelet's CreateContainerConfigError for a reference that is missing and not optional.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.test_node_agent import apply, busybox, state, wait_for
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab


def _create(lab: LabClient, namespace: str, *objects: Any) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _cm(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_value_from_every_source_and_env_from(lab: LabClient, namespace: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
              "stringData": {"password": "s3cret", "user": "admin"}}
    _create(lab, namespace, _cm("settings", {"mode": "fast", "level": "3"}), secret)
    env = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "HOSTIP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                             "divisor": "1m"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory",
                                                              "divisor": "1Mi"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x",
                                                           "optional": True}}},
        {"name": "NOKEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope",
                                                         "optional": True}}},
    ]
    pod = busybox(
        "env",
        ["sh", "-c", "echo $(POD) $POD $APP $SA $HOSTIP $CPU_M $MEM_MI $MODE $PASS "
         "${GONE-unset} ${NOKEY-unset} $CFG_level $CFG_mode $SEC_user > /dev/termination-log"],
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                 {"secretRef": {"name": "creds"}, "prefix": "SEC_"},
                 {"configMapRef": {"name": "absent-too", "optional": True}}],
        resources={"limits": {"cpu": "250m", "memory": "64Mi"},
                   "requests": {"cpu": "100m", "memory": "32Mi"}},
    )
    pod["metadata"]["labels"] = {"app": "demo"}
    apply(lab, namespace, pod)
    done = wait_for(lab, namespace, "env", lambda p: p["status"].get("phase") == "Succeeded")
    host_ip = done["status"]["hostIP"]
    assert state(done)["terminated"]["message"] == (
        f"env env demo default {host_ip} 250 32 fast s3cret unset unset 3 fast admin\n"
    )


def test_missing_reference_waits_in_create_container_config_error(
    lab: LabClient, namespace: str
) -> None:
    pod = busybox("late", ["sh", "-c", "echo $V > /dev/termination-log"],
                  env=[{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "later",
                                                                        "key": "v"}}}])
    apply(lab, namespace, pod)
    waiting = wait_for(
        lab, namespace, "late",
        lambda p: state(p).get("waiting", {}).get("reason") == "CreateContainerConfigError",
    )
    assert state(waiting)["waiting"]["message"] == 'configmap "later" not found'
    _create(lab, namespace, _cm("later", {"other": "1"}))
    waiting = wait_for(
        lab, namespace, "late",
        lambda p: "couldn't find key v" in state(p).get("waiting", {}).get("message", ""),
    )
    assert waiting["status"]["phase"] == "Pending"
    _create(lab, namespace, _cm("later", {"v": "arrived"}))
    done = wait_for(lab, namespace, "late", lambda p: p["status"].get("phase") == "Succeeded",
                    timeout=60)
    assert state(done)["terminated"]["message"] == "arrived\n"
