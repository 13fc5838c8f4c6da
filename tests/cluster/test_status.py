"""`netiso status` against the lab: in sync, drifted, missing, foreign policies, enforcement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _status(lab: LabClient, namespace: str) -> dict[str, object]:
    out = netiso(lab, "-o", "json", "status", "-n", namespace)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "StatusResult"
    (ns,) = doc["namespaces"]
    return {"doc": doc, "ns": ns,
            "states": {p["name"]: p["state"] for p in ns["policies"]}}


def test_status_in_sync_drifted_missing_and_foreign(lab: LabClient, namespace: str) -> None:
    before = _status(lab, namespace)
    assert set(before["states"].values()) == {"missing"}  # type: ignore[union-attr]
    assert before["ns"]["state"] == "missing"  # type: ignore[index]

    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    synced = _status(lab, namespace)
    assert set(synced["states"].values()) == {"in sync"}  # type: ignore[union-attr]
    doc = synced["doc"]
    assert doc["inSync"] is True  # type: ignore[index]
    assert doc["enforcement"] == "unknown"  # type: ignore[index]

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
    assert states["netiso-default-deny-ingress"] == "drifted"  # type: ignore[index]
    assert states["netiso-allow-same-namespace"] == "missing"  # type: ignore[index]
    assert after["ns"]["state"] == "drifted"  # type: ignore[index]
    drifted = next(p for p in after["ns"]["policies"]  # type: ignore[index]
                   if p["name"] == "netiso-default-deny-ingress")
    assert any("spec.podSelector" in r for r in drifted["reasons"])
    foreign = after["ns"]["foreignPolicies"]  # type: ignore[index]
    assert [(f["name"], f["selectedPods"]) for f in foreign] == [("team-allow-web", 1)]

    table = netiso(lab, "status", "-n", namespace)
    assert table.returncode == 0
    assert "drifted" in table.stdout
    assert "foreign policy team-allow-web (1 pods)" in table.stdout
    assert "enforcement: unknown" in table.stdout

    # apply repairs it (the hand edit was an Update by another manager: no apply conflict
    # for fields netiso applied and kubectl merely patched? the API server says conflict).
    repaired = netiso(lab, "apply", "-n", namespace, "--force-conflicts")
    assert repaired.returncode == 0, repaired.stderr
    assert set(_status(lab, namespace)["states"].values()) == {"in sync"}  # type: ignore[union-attr]
