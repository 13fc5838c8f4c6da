"""`netiso verify` as a ServiceAccount bound to exactly the shipped roles, not admin.

The day-to-day ClusterRole (`netiso render --rbac`) plus the verify role
(`netiso/manifests/rbac/verify.yaml`), nothing else: a full verify passes; and the verify role
holds no verb verify does not send (no watch, no exec, no secrets).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def roles() -> list[dict[str, Any]]:
    out = subprocess.run([*NETISO, "render", "--rbac"], capture_output=True, text=True,
                         check=True, timeout=60)
    day = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "ClusterRole"]
    text = files("netiso.manifests").joinpath("rbac/verify.yaml").read_text("utf-8")
    verify = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "ClusterRole"]
    assert len(verify) == 1
    return [dict(r) for r in day + verify]


@pytest.fixture
def verify_sa(lab: LabClient, namespace: str) -> Iterator[Path]:
    kubeconfig = lab.service_account_kubeconfig(namespace, "netiso-verify")
    names = []
    for role in roles():
        body = copy.deepcopy(role)
        name = f"netiso-test-{uuid.uuid4().hex[:6]}"
        body["metadata"]["name"] = name
        lab.rbac.create_cluster_role(body)
        lab.rbac.create_cluster_role_binding({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "netiso-verify",
                          "namespace": namespace}],
        })
        names.append(name)
    try:
        yield kubeconfig
    finally:
        for name in names:
            lab.rbac.delete_cluster_role_binding(name)
            lab.rbac.delete_cluster_role(name)


def test_verify_role_is_narrow() -> None:
    (_day, verify) = roles()
    verbs = {v for rule in verify["rules"] for v in rule["verbs"]}
    assert verbs <= {"list", "create", "patch", "delete", "get"}
    gets = [r["resources"] for r in verify["rules"] if "get" in r["verbs"]]
    assert gets == [["pods/log"]]
    resources = {r for rule in verify["rules"] for r in rule["resources"]}
    assert not resources & {"secrets", "pods/exec", "pods/portforward", "*"}


def test_verify_under_the_shipped_roles(lab: LabClient, namespace: str,
                                        verify_sa: Path) -> None:
    denied = lab.kubectl("auth", "can-i", "create", "pods/exec", "-n", namespace,
                         kubeconfig=verify_sa, check=False)
    assert denied.stdout.strip() == "no"
    out = subprocess.run([*NETISO, "--kubeconfig", str(verify_sa), "-o", "json", "verify"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "passed"
    assert all(f["ok"] for f in doc["flows"])
