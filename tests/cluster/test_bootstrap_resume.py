"""bootstrap's runner through a provider with a real enable step (tests/cluster/lab_provider.py).

A run SIGKILLed right after its enable step wrote is finished by the next run, from the
cluster's real state, without redoing the step; a node-recreating step is refused without
consent (exit 4, nothing sent), shown by a dry run, and run with --yes; then a rerun changes
nothing. The provider's step creates the kube-router DaemonSet; verify proves enforcement with
real traffic each time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.lab_provider import CLI, NAME, NAMESPACE
from tests.lab.client import LabClient
from tests.schemas import validate

pytestmark = pytest.mark.lab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bootstrap(lab: LabClient, namespace: str, *args: str, **env: str
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "--kubeconfig", str(lab.kubeconfig), "-o", "json",
         "bootstrap", "-p", "generic", "-n", namespace, *args],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
        env={**os.environ, **env})


def result(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(out.stdout)
    validate("bootstrap", doc)
    return doc


def engine_daemonset(lab: LabClient) -> Any:
    found = lab.apps.list_namespaced_daemon_set(NAMESPACE, field_selector=f"metadata.name={NAME}")
    return found.items[0] if found.items else None


@pytest.fixture
def no_engine(lab: LabClient) -> Iterator[None]:
    def remove() -> None:
        if engine_daemonset(lab) is not None:
            lab.apps.delete_namespaced_daemon_set(NAME, NAMESPACE,
                                                  propagation_policy="Foreground")
        deadline = time.monotonic() + 60
        while engine_daemonset(lab) is not None:
            assert time.monotonic() < deadline, "kube-router DaemonSet not deleted in 60 s"
            time.sleep(0.5)

    remove()
    try:
        yield
    finally:
        remove()


def policies(lab: LabClient, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.resource_version
            for p in lab.networking.list_namespaced_network_policy(namespace).items}


def test_a_run_killed_after_enable_is_finished_by_the_next(lab: LabClient, namespace: str,
                                                           no_engine: None) -> None:
    killed = bootstrap(lab, namespace, LAB_PROVIDER_KILL_AFTER_ENABLE="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout == ""
    written = engine_daemonset(lab)
    assert written is not None  # the enable step's write happened before the kill
    assert policies(lab, namespace) == {}  # apply never started

    resumed = bootstrap(lab, namespace)
    assert resumed.returncode == 0, resumed.stderr
    doc = result(resumed)
    assert {s["state"] for s in doc["steps"]} == {"done"}, doc["steps"]
    assert doc["changed"] == ["apply"]
    # The enable step is not redone: either enforcement already holds, or the step reads as
    # done from the DaemonSet that exists, and only the wait remains.
    assert [s for s in doc["enableSteps"] if s["ran"]] == []
    assert all(s["done"] for s in doc["enableSteps"])
    assert engine_daemonset(lab).metadata.uid == written.metadata.uid
    assert doc["verify"]["verdict"] == "passed"
    applied = policies(lab, namespace)
    assert len(applied) >= 3

    again = result(bootstrap(lab, namespace))
    assert (again["outcome"], again["changed"]) == ("unchanged", [])
    assert policies(lab, namespace) == applied


def test_a_node_recreating_step_needs_consent(lab: LabClient, namespace: str,
                                              no_engine: None) -> None:
    refused = bootstrap(lab, namespace, LAB_PROVIDER_DISRUPTIVE="1")
    assert refused.returncode == 4, refused.stderr
    doc = result(refused)
    assert doc["failedStep"] == "enable" and doc["exitCode"] == 4
    assert [s["state"] for s in doc["steps"]] == [
        "done", "done", "failed", "not-run", "not-run", "not-run"]
    assert "install-engine would change the nodes (every node (lab)); nothing was sent" in \
        doc["steps"][2]["detail"]
    assert "rerun with --yes" in refused.stderr
    assert engine_daemonset(lab) is None and policies(lab, namespace) == {}

    dry = bootstrap(lab, namespace, "--dry-run", LAB_PROVIDER_DISRUPTIVE="1")
    assert dry.returncode == 0, dry.stderr
    doc = result(dry)
    assert [s["state"] for s in doc["steps"]] == [
        "done", "done", "skipped", "skipped", "done", "skipped"]
    assert doc["steps"][2]["detail"] == "dry run: would run install-engine"
    assert doc["enableSteps"][0]["disruptive"] is True
    assert engine_daemonset(lab) is None and policies(lab, namespace) == {}

    consented = bootstrap(lab, namespace, "--yes", LAB_PROVIDER_DISRUPTIVE="1")
    assert consented.returncode == 0, consented.stderr
    doc = result(consented)
    assert doc["changed"] == ["enable", "apply"] and doc["outcome"] == "changed"
    assert [s["ran"] for s in doc["enableSteps"]] == [True]
    assert doc["steps"][3]["detail"].startswith("enforcing: kube-router (kube-system/kube-router")
    assert doc["verify"]["verdict"] == "passed"
