"""`netiso bootstrap --provider generic` on the lab: the whole sequence, its rerun, its refusal.

The generic flavour's enforcement is the lab's kube-router, real, but run as processes in each
node's network namespace rather than as pods, so detection (which reads DaemonSets) sees no
engine and the generic provider refuses to enable (exit 4): the refusal test runs the lab as it
is. For the happy path, ``kube_router_daemonset`` publishes a DaemonSet named kube-router in
kube-system whose pods (one per node, Ready) stand for those processes, which is how a cluster
that runs kube-router shows it; whether enforcement really holds is then not taken from that
object but proven by bootstrap's own verify step with real traffic.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_cli_contract import COLOUR, on_a_terminal
from tests.lab.client import BUSYBOX_IMAGE, LabClient
from tests.schemas import validate

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
STEPS = ["detect", "preflight", "enable", "wait", "apply", "verify"]


def netiso(lab: LabClient, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def kube_router_daemonset(lab: LabClient) -> Iterator[None]:
    nodes = len(lab.core.list_node().items)
    labels = {"app": "kube-router-lab"}
    lab.apps.create_namespaced_daemon_set("kube-system", {
        "metadata": {"name": "kube-router"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "kube-router", "image": BUSYBOX_IMAGE,
                "command": ["sleep", "86400"]}]}}}})
    try:
        deadline = time.monotonic() + 60
        while True:
            status = lab.apps.read_namespaced_daemon_set("kube-router", "kube-system").status
            if (status.number_ready or 0) == nodes:
                break
            assert time.monotonic() < deadline, f"kube-router DaemonSet not ready: {status}"
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(Exception):
            lab.apps.delete_namespaced_daemon_set("kube-router", "kube-system",
                                                  propagation_policy="Background")


def versions(lab: LabClient, namespace: str) -> dict[str, str]:
    items = lab.networking.list_namespaced_network_policy(namespace).items
    return {p.metadata.name: p.metadata.resource_version for p in items}


def run_json(lab: LabClient, *args: str) -> tuple[int, dict[str, Any], str]:
    out = netiso(lab, "-o", "json", "bootstrap", *args)
    doc = json.loads(out.stdout)
    validate("bootstrap", doc)
    return out.returncode, doc, out.stderr


def test_bootstrap_enforces_applies_verifies_and_a_rerun_changes_nothing(
        lab: LabClient, namespace: str, kube_router_daemonset: None) -> None:
    args = ("-p", "generic", "-n", namespace)

    code, dry, err = run_json(lab, *args, "--dry-run")
    assert code == 0, err
    assert dry["outcome"] == "dry-run" and dry["dryRun"] is True
    assert [s["state"] for s in dry["steps"]] == [
        "done", "done", "done", "done", "done", "skipped"]
    assert dry["apply"]["created"] >= 3 and dry["changed"] == []
    assert versions(lab, namespace) == {}  # a dry run writes nothing

    code, first, err = run_json(lab, *args)
    assert code == 0, err
    assert [s["name"] for s in first["steps"]] == STEPS
    assert {s["state"] for s in first["steps"]} == {"done"}, first["steps"]
    assert first["provider"] == "generic" and first["engine"] == "kube-router"
    assert first["changed"] == ["apply"] and first["outcome"] == "changed"
    enable = first["steps"][2]
    assert enable["changed"] is False and "already enforcing (kube-router)" in enable["detail"]
    assert first["apply"]["created"] == len(versions(lab, namespace)) >= 3
    assert first["verify"]["verdict"] == "passed"
    assert first["exitCode"] == 0 and first["failedStep"] is None
    # Plain lines on a pipe, one per step as it ends.
    for name in STEPS:
        assert f" done {name} (" in err, err
    before = versions(lab, namespace)

    out = netiso(lab, "bootstrap", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["STEP", "STATE", "CHANGED", "SECONDS", "WHAT"]
    rows = {line.split()[0]: line.split()[1:3] for line in out.stdout.splitlines()[1:7]}
    assert rows == {name: ["done", "no"] for name in STEPS}
    assert "bootstrap unchanged (generic, " in out.stdout
    assert "changed nothing" in out.stdout
    # Nothing was written: every object's resourceVersion is where the first run left it.
    assert versions(lab, namespace) == before


def test_bootstrap_stops_at_preflight_with_its_exit_code(lab: LabClient, namespace: str) -> None:
    code, doc, err = run_json(lab, "-p", "generic", "-n", namespace)
    assert code == 4, err
    assert doc["failedStep"] == "preflight" and doc["exitCode"] == 4
    assert doc["outcome"] == "failed"
    assert [s["state"] for s in doc["steps"]] == [
        "done", "failed", "not-run", "not-run", "not-run", "not-run"]
    assert "no cloud API netiso can turn enforcement on with" in doc["steps"][1]["detail"]
    assert "netiso: error: a generic cluster has no cloud API" in err
    assert versions(lab, namespace) == {}


def test_bootstrap_bad_timeout_is_a_usage_error(lab: LabClient, tmp_path: Path) -> None:
    out = netiso(lab, "bootstrap", "--timeout", "soon")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == ("netiso: error: --timeout: 'soon' is not a duration "
                          "(e.g. 1800, 90s, 30m, 1h)\n")


def test_on_a_terminal_each_step_is_a_status_line(lab: LabClient, namespace: str,
                                                  kube_router_daemonset: None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(COLUMNS="120", TERM="xterm-256color")
    argv = [*NETISO, "--kubeconfig", str(lab.kubeconfig), "bootstrap", "-p", "generic",
            "-n", namespace, "--skip-verify"]
    code, out, term = on_a_terminal(argv, env)
    assert code == 0, term
    # A spinner while a step runs, the apply's bar, then one coloured status line per step.
    for name in STEPS[:-1]:
        assert re.search(rf"done\S* {name} \(\d+\.\d s\)", term), term
    assert re.search(r"skipped\S* verify \(\d+\.\d s\): skipped with --skip-verify", term), term
    assert "started" not in term  # the plain "<step>: started" lines are for logs only
    assert COLOUR.search(term)
    assert out.splitlines()[0].split() == ["STEP", "STATE", "CHANGED", "SECONDS", "WHAT"]
    assert "bootstrap changed (generic, " in out
