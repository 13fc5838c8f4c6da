"""The lab's apiserver enforces real RBAC for non-admin identities."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.lab.client import LabClient

pytestmark = pytest.mark.lab


def _pod_reader_role(lab: LabClient, namespace: str, subject: dict[str, str]) -> None:
    lab.rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    })
    lab.rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "pod-reader"},
        "subjects": [subject],
    })


def _status(call: object) -> int:
    assert callable(call)
    try:
        call()
    except k8s.ApiException as exc:
        return int(exc.status)
    return 200


def _granted(call: Callable[[], object], within: float = 10.0) -> int:
    """The status once a fresh binding is in effect: the API server's RBAC authorizer reads
    roles and bindings from an informer cache, so a binding created a moment ago can still be
    unseen (seen once in CI as a 403 right after the create)."""
    deadline = time.monotonic() + within
    while True:
        status = _status(call)
        if status != 403 or time.monotonic() >= deadline:
            return status
        time.sleep(0.2)


def test_service_account_gets_403_outside_its_role(lab: LabClient, namespace: str) -> None:
    kubeconfig = lab.service_account_kubeconfig(namespace, "reader")
    _pod_reader_role(lab, namespace, {"kind": "ServiceAccount", "name": "reader",
                                      "namespace": namespace})
    core = k8s.CoreV1Api(lab.client_for(kubeconfig))
    # Plain dict bodies are what the client serialises as is; its stubs only name model classes.
    networking: Any = k8s.NetworkingV1Api(lab.client_for(kubeconfig))

    assert _granted(lambda: core.list_namespaced_pod(namespace)) == 200
    assert _status(lambda: core.list_namespaced_secret(namespace)) == 403
    assert _status(lambda: core.list_namespaced_pod("kube-system")) == 403
    policy = {"metadata": {"name": "x"}, "spec": {"podSelector": {}}}
    assert _status(lambda: networking.create_namespaced_network_policy(namespace, policy)) == 403


def test_client_certificate_user_is_bound_by_rbac(lab: LabClient, namespace: str) -> None:
    kubeconfig = lab.user_kubeconfig("jane", groups=["netiso-lab:devs"])
    core = k8s.CoreV1Api(lab.client_for(kubeconfig))
    assert _status(lambda: core.list_namespaced_pod(namespace)) == 403
    _pod_reader_role(lab, namespace, {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                      "name": "netiso-lab:devs"})
    assert _granted(lambda: core.list_namespaced_pod(namespace)) == 200
    assert _status(lambda: core.delete_namespaced_pod("anything", namespace)) == 403
