"""`netiso bootstrap --provider aks` end to end: the lab in its AKS flavour, ARM answered by the
wire-level test server (tests/servers/arm.py), the real Azure SDK, verify's real traffic.

From "networkPolicy none" to verified in one command; the second run sends no PUT and writes no
object (the server's call log, the policies' resourceVersions); a run SIGKILLed right after its
enable step is finished by the next, which reads from ARM that the policy is set and sends no
PUT again. Fixtures (the AKS flavour for the module, a reset server and no engine per test) are
test_aks_enable.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.cluster import test_aks_enable as aks_enable
from tests.cluster.test_aks_enable import NETISO, netiso
from tests.lab.client import LabClient
from tests.schemas import validate
from tests.servers.arm import ArmServer

pytestmark = pytest.mark.lab

# The same fixtures, by name: the AKS flavour for the module, the ARM server, a fresh cluster.
aks_flavour = aks_enable.aks_flavour
kube = aks_enable.kube
server = aks_enable.server
arm = aks_enable.arm


def bootstrap(lab: LabClient, arm: ArmServer, namespace: str) -> tuple[int, dict[str, Any], str]:
    out = netiso(lab, arm, "-o", "json", "bootstrap", "--provider", "aks", "-n", namespace,
                 "--yes", timeout=900)
    doc: dict[str, Any] = json.loads(out.stdout)
    validate("bootstrap", doc)
    return out.returncode, doc, out.stderr


def versions(lab: LabClient, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.resource_version
            for p in lab.networking.list_namespaced_network_policy(namespace).items}


def test_none_to_verified_in_one_command_and_the_rerun_is_a_no_op(
        lab: LabClient, arm: ArmServer, namespace: str) -> None:
    code, doc, err = bootstrap(lab, arm, namespace)
    assert code == 0, err
    assert {s["state"] for s in doc["steps"]} == {"done"}, doc["steps"]
    assert doc["changed"] == ["enable", "apply"]
    assert doc["engine"] == "azure-npm" and doc["verify"]["verdict"] == "passed"
    assert [s["ran"] for s in doc["enableSteps"]] == [True]
    assert len(arm.puts()) == 1
    applied = versions(lab, namespace)
    assert len(applied) == doc["apply"]["created"] >= 3

    code, again, err = bootstrap(lab, arm, namespace)
    assert code == 0, err
    assert (again["outcome"], again["changed"]) == ("unchanged", [])
    assert again["steps"][2]["detail"] == "already enforcing (azure-npm): nothing to do"
    assert len(arm.puts()) == 1  # still the first run's PUT only
    assert versions(lab, namespace) == applied


def test_a_run_killed_after_enable_is_finished_by_the_next(lab: LabClient, arm: ArmServer,
                                                           namespace: str) -> None:
    env = {**os.environ, **arm.env(no_proxy="10.250.0.1")}
    proc = subprocess.Popen(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "bootstrap", "--provider", "aks",
         "-n", namespace, "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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
    assert len(arm.puts()) == 1
    assert versions(lab, namespace) == {}  # killed before apply

    code, doc, err = bootstrap(lab, arm, namespace)
    assert code == 0, err
    assert len(arm.puts()) == 1  # nothing sent again
    assert [s["ran"] for s in doc["enableSteps"]] == [False] * len(doc["enableSteps"])
    assert doc["steps"][2]["changed"] is False
    assert doc["changed"] == ["apply"] and doc["verify"]["verdict"] == "passed"
