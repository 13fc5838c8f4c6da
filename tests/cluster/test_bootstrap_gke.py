"""`netiso bootstrap --provider gke` end to end: the lab in its GKE flavour, the cloud answered by
the wire-level GKE test server, the real google-cloud-container client, verify's real traffic.

From a cluster without network policy to a verified one in one command; the second run makes no
cloud mutation and writes no object (the server's call log, the policies' resourceVersions); a
run SIGKILLed right after its enable step is finished by the next run, which reads from the
cloud that both operations are done and sends none again. Fixtures (the GKE flavour, a fresh
server per test, enforcement turned off after) are test_gke_enable.py's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.cluster import test_gke_enable as gke_enable
from tests.cluster.test_gke_enable import NETISO, Gke, verbs
from tests.lab.client import LabClient
from tests.schemas import validate

pytestmark = pytest.mark.lab

# The same fixtures, by name: the GKE flavour for the module, a fresh server per test.
gke_lab = gke_enable.gke_lab
gke = gke_enable.gke


def bootstrap(g: Gke, namespace: str, *args: str) -> tuple[int, dict[str, Any], str]:
    out = g.netiso("-o", "json", "bootstrap", "--provider", "gke", "-n", namespace, *args,
                   timeout=900)
    doc: dict[str, Any] = json.loads(out.stdout)
    validate("bootstrap", doc)
    return out.returncode, doc, out.stderr


def versions(lab: LabClient, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.resource_version
            for p in lab.networking.list_namespaced_network_policy(namespace).items}


def test_not_enforced_to_verified_in_one_command_and_the_rerun_is_a_no_op(
        gke: Gke, lab: LabClient, namespace: str) -> None:
    gke.server.add_cluster()
    code, doc, err = bootstrap(gke, namespace, "--yes")
    assert code == 0, err
    assert {s["state"] for s in doc["steps"]} == {"done"}, doc["steps"]
    assert doc["changed"] == ["enable", "apply"]
    assert [(s["name"], s["ran"]) for s in doc["enableSteps"]] == [
        ("enable-network-policy-addon", True), ("enable-network-policy", True)]
    assert verbs(gke.server) == ["setAddons", "setNetworkPolicy"]
    assert doc["engine"] == "calico" and doc["verify"]["verdict"] == "passed"
    applied = versions(lab, namespace)
    assert len(applied) == doc["apply"]["created"] >= 3

    before = len(gke.server.calls)
    code, again, err = bootstrap(gke, namespace, "--yes")
    assert code == 0, err
    assert (again["outcome"], again["changed"]) == ("unchanged", [])
    assert again["steps"][2]["detail"] == "already enforcing (calico): nothing to do"
    assert not [c for c in gke.server.calls[before:] if c.mutating]
    assert versions(lab, namespace) == applied


def test_a_run_killed_after_enable_is_finished_by_the_next(gke: Gke, lab: LabClient,
                                                           namespace: str) -> None:
    gke.server.add_cluster()
    proc = subprocess.Popen(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "bootstrap", "--provider", "gke",
         "-n", namespace, "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gke.env)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 600
    for line in proc.stderr:
        seen.append(line)
        if " done enable (" in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "".join(seen)
    assert verbs(gke.server) == ["setAddons", "setNetworkPolicy"]
    assert versions(lab, namespace) == {}  # killed before apply

    code, doc, err = bootstrap(gke, namespace, "--yes")
    assert code == 0, err
    assert verbs(gke.server) == ["setAddons", "setNetworkPolicy"]  # nothing sent again
    assert [s["ran"] for s in doc["enableSteps"]] == [False] * len(doc["enableSteps"])
    assert doc["steps"][2]["changed"] is False
    assert doc["changed"] == ["apply"] and doc["verify"]["verdict"] == "passed"
