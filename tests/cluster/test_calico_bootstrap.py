"""`netiso bootstrap --provider eks` end to end: the EKS-flavoured lab, the EKS test server, the
real Tigera operator and felix installing and enforcing, verify's real traffic.

Named test_calico_* so that scripts/test runs it in its EKS step (NETISO_LAB_FLAVOR=eks) with
test_calico.py and test_calico_enable.py; its fixtures are test_calico_enable.py's: ``fresh``
makes the lab an EKS cluster Calico never ran on (and test_calico_enable.py's own ``fresh``
does it again after this module leaves Calico installed). From not enforced to verified in one
command; the second run makes no EKS call that changes anything and writes no object (the
server's call log, the bundle's resourceVersions, the cluster's snapshot); a run SIGKILLed
right after its enable step is finished by the next without redoing a step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.cluster import test_calico_enable as calico_enable
from tests.cluster.test_calico_enable import (
    CLUSTER,
    MANIFESTS,
    NETISO,
    _no_mutation,
    netiso,
    snapshot,
)
from tests.lab.client import LabClient
from tests.schemas import validate
from tests.servers.eks import EksServer

pytestmark = pytest.mark.lab

# The same fixtures, by name: the EKS lab, the EKS test server, the lab without Calico.
eks = calico_enable.eks
server = calico_enable.server
fresh = calico_enable.fresh


def bootstrap(lab: LabClient, srv: EksServer, namespace: str) -> tuple[int, dict[str, Any], str]:
    out = netiso(lab, srv, "-o", "json", "bootstrap", "--provider", "eks", "--cluster-name",
                 CLUSTER, "--calico-manifests", str(MANIFESTS), "--timeout", "420", "-n",
                 namespace, "--yes", timeout=900)
    doc: dict[str, Any] = json.loads(out.stdout)
    validate("bootstrap", doc)
    return out.returncode, doc, out.stderr


def versions(lab: LabClient, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.resource_version
            for p in lab.networking.list_namespaced_network_policy(namespace).items}


def test_not_enforced_to_verified_in_one_command_and_the_rerun_is_a_no_op(
        fresh: LabClient, server: EksServer, namespace: str) -> None:
    code, doc, err = bootstrap(fresh, server, namespace)
    assert code == 0, err
    assert {s["state"] for s in doc["steps"]} == {"done"}, doc["steps"]
    assert doc["changed"] == ["enable", "apply"]
    assert doc["engine"] == "calico" and doc["verify"]["verdict"] == "passed"
    assert [s["name"] for s in doc["enableSteps"] if s["ran"]] == [
        "calico-crds", "tigera-operator", "aws-node-clusterrole", "aws-node-annotate-pod-ip",
        "calico-installation", "wait-tigerastatus"]
    applied = versions(fresh, namespace)
    assert len(applied) == doc["apply"]["created"] >= 3

    before = snapshot(fresh)
    server.clear_calls()
    code, again, err = bootstrap(fresh, server, namespace)
    assert code == 0, err
    assert (again["outcome"], again["changed"]) == ("unchanged", [])
    assert again["steps"][2]["detail"] == "already enforcing (calico): nothing to do"
    _no_mutation(server)
    assert versions(fresh, namespace) == applied
    assert snapshot(fresh) == before


def test_a_run_killed_after_enable_is_finished_by_the_next(fresh: LabClient, server: EksServer,
                                                           namespace: str) -> None:
    calico_enable.make_fresh(fresh)  # the previous test left Calico installed
    server.clear_calls()
    env = {**os.environ, **server.env()}
    proc = subprocess.Popen(
        [*NETISO, "--kubeconfig", str(fresh.kubeconfig), "bootstrap", "--provider", "eks",
         "--cluster-name", CLUSTER, "--calico-manifests", str(MANIFESTS), "--timeout", "420",
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
    assert versions(fresh, namespace) == {}  # killed before apply

    server.clear_calls()
    code, doc, err = bootstrap(fresh, server, namespace)
    assert code == 0, err
    _no_mutation(server)  # nothing sent to EKS again
    # Every step that writes read as done and was not redone; only the wait for TigeraStatus
    # (a read, not done when the first run died) may run again.
    writes = ["calico-crds", "tigera-operator", "aws-node-clusterrole",
              "aws-node-annotate-pod-ip", "calico-installation"]
    steps = {s["name"]: s for s in doc["enableSteps"]}
    assert [(n, steps[n]["done"], steps[n]["ran"]) for n in writes] == [
        (n, True, False) for n in writes]
    assert {n for n, s in steps.items() if s["ran"]} <= {"wait-tigerastatus"}
    assert [steps[n]["writes"] for n in writes] == [True] * len(writes)
    assert steps["wait-tigerastatus"]["writes"] is False
    # Finishing the first run's wait reads only: enable changed nothing this time.
    assert "enable" not in doc["changed"], doc["changed"]
    assert "apply" in doc["changed"] and doc["verify"]["verdict"] == "passed"
