"""`netiso status` against the lab: in sync, drifted, missing, foreign policies, enforcement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _status(lab: LabClient, namespace: str) -> dict[str, Any]:
    out = netiso(lab, "-o", "json", "status", "-n", namespace)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "StatusResult"
    (ns,) = doc["namespaces"]
    return {"doc": doc, "ns": ns,
            "states": {p["name"]: p["state"] for p in ns["policies"]}}


def test_status_in_sync_drifted_missing_and_foreign(lab: LabClient, namespace: str) -> None:
    before = _status(lab, namespace)
    assert set(before["states"].values()) == {"missing"}
    assert before["ns"]["state"] == "missing"

    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    synced = _status(lab, namespace)
    assert set(synced["states"].values()) == {"in sync"}
    doc = synced["doc"]
    assert doc["inSync"] is True
    assert doc["enforcement"] == "unknown"

    # Someone edits one policy by hand and deletes another.
    lab.kubectl("-n", namespace, "patch", "networkpolicy", "netiso-default-deny-ingress",
                "--type=merge", "-p", json.dumps({"spec": {"podSelector": {
                    "matchLabels": {"app": "only-this"}}}}))
    lab.networking.delete_namespaced_network_policy("netiso-allow-same-namespace", namespace)
    # A foreign policy that selects a running pod, and one that selects nothing.
    lab.run_busybox(namespace, "web", tcp_server_command(8080), labels={"app": "web"})
    lab.wait_for_pod_running(namespace, "web")
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "team-allow-web"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}})
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "team-selects-nothing"},
        "spec": {"podSelector": {"matchLabels": {"app": "absent"}}}})

    after = _status(lab, namespace)
    states = after["states"]
    assert states["netiso-default-deny-ingress"] == "drifted"
    assert states["netiso-allow-same-namespace"] == "missing"
    assert after["ns"]["state"] == "drifted"
    drifted = next(p for p in after["ns"]["policies"]
                   if p["name"] == "netiso-default-deny-ingress")
    assert any("spec.podSelector" in r for r in drifted["reasons"])
    foreign = after["ns"]["foreignPolicies"]
    assert [(f["name"], f["selectedPods"]) for f in foreign] == [("team-allow-web", 1)]

    table = netiso(lab, "status", "-n", namespace)
    assert table.returncode == 0
    assert "drifted" in table.stdout
    assert "foreign policy team-allow-web (1 pod)" in table.stdout
    assert "enforcement: unknown" in table.stdout

    # apply repairs it; kubectl's patch made kubectl-patch co-owner of spec.podSelector, so
    # taking the field back is a conflict that --force-conflicts resolves.
    repaired = netiso(lab, "apply", "-n", namespace, "--force-conflicts")
    assert repaired.returncode == 0, repaired.stderr
    assert set(_status(lab, namespace)["states"].values()) == {"in sync"}
