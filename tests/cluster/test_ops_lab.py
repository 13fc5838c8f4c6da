"""netiso.ops against the lab's real API server: what netiso owns comes from managedFields,
"created" is the server's 201, the same typo gets the same answer, and status' small truths.

Every run is scoped to namespaces this test created (the lab may be shared).
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from netiso import kube
from netiso.bundle import render_bundle
from netiso.config import load_values
from netiso.ops.apply import Action, apply_bundle
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def netiso(lab: LabClient, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _meta(lab: LabClient, namespace: str, name: str) -> Any:
    return lab.networking.read_namespaced_network_policy(name, namespace).metadata


def test_a_field_a_newer_bundle_stops_setting_is_removed(lab: LabClient, namespace: str) -> None:
    desired = render_bundle(load_values(None, namespaces=[namespace]), [namespace])
    target = "netiso-allow-same-namespace"
    older = copy.deepcopy(desired)
    obj = next(o for o in older if o["metadata"]["name"] == target)
    obj["metadata"]["labels"]["netiso.io/retired"] = "yes"
    obj["metadata"].setdefault("annotations", {})["netiso.io/retired-note"] = "old text"

    with kube.connect(str(lab.kubeconfig)) as k:
        report, error = apply_bundle(k, older, [namespace])
        assert error is None
        meta = _meta(lab, namespace, target)
        assert meta.labels["netiso.io/retired"] == "yes"
        assert meta.annotations["netiso.io/retired-note"] == "old text"
        # Someone else's label on the same object: not netiso's to remove.
        lab.networking.patch_namespaced_network_policy(
            target, namespace, {"metadata": {"labels": {"team": "web"}}})

        # The newer bundle no longer sets them: the live object still compares equal on what
        # the bundle renders, but netiso owns the two fields, so the object is applied and
        # server-side apply removes them.
        report, error = apply_bundle(k, desired, [namespace])
        assert error is None
        (ns,) = report.namespaces
        actions = {c.name: c.action for c in ns.changes}
        assert actions[target] is Action.UPDATE
        assert {a for n, a in actions.items() if n != target} == {Action.UNCHANGED}
        meta = _meta(lab, namespace, target)
        assert "netiso.io/retired" not in meta.labels
        assert "netiso.io/retired-note" not in (meta.annotations or {})
        assert meta.labels["team"] == "web"

        # And now it is in place: the next run sends nothing.
        report, error = apply_bundle(k, desired, [namespace])
        assert error is None
        assert {c.action for c in report.namespaces[0].changes} == {Action.UNCHANGED}


@pytest.fixture
def fresh_namespaces(lab: LabClient) -> Iterator[tuple[str, list[str]]]:
    run = uuid.uuid4().hex[:6]
    names = [f"t-race-{run}-{i:02d}" for i in range(12)]
    for name in names:
        lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-race": run}}})
    try:
        yield f"netiso-race={run}", names
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                lab.core.delete_namespace(name, propagation_policy="Background")


def test_concurrent_applies_claim_each_creation_once(
        lab: LabClient, fresh_namespaces: tuple[str, list[str]]) -> None:
    """Two applies started together on new namespaces both see them empty; only the server's
    201 says which of them created each object, so together they claim every object once."""
    selector, names = fresh_namespaces
    argv = [*NETISO, "--kubeconfig", str(lab.kubeconfig), "-o", "json", "apply",
            "--selector", selector, "--concurrency", "4"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        docs.append(json.loads(out))
    live = lab.networking.list_network_policy_for_all_namespaces(
        label_selector="app.kubernetes.io/managed-by=netiso").items
    total = sum(1 for p in live if p.metadata.namespace in set(names))
    assert total == 4 * len(names)
    assert sum(d["summary"]["created"] for d in docs) == total
    for d in docs:
        s = d["summary"]
        assert s["created"] + s["updated"] + s["unchanged"] == total


def test_a_missing_namespace_is_exit_2_for_apply_status_and_uninstall(lab: LabClient) -> None:
    missing = f"t-missing-{uuid.uuid4().hex[:6]}"
    for command in ("apply", "status", "uninstall"):
        run = netiso(lab, command, "-n", missing)
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert run.stderr.strip().splitlines()[-1].startswith(
            f"netiso: error: namespace {missing!r} not found in the cluster"
            if command == "uninstall" else
            f"netiso: error: target namespace {missing!r} not found in the cluster"), run.stderr
        assert "Traceback" not in run.stderr
        assert run.stdout == ""


def test_status_says_missing_not_none_and_one_namespace(lab: LabClient, namespace: str) -> None:
    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    lab.networking.patch_namespaced_network_policy(
        "netiso-default-deny-ingress", namespace,
        [{"op": "remove", "path": "/metadata/labels/netiso.io~1policy"}])
    run = netiso(lab, "status", "-n", namespace)
    assert run.returncode == 0, run.stderr
    print(run.stdout)  # shown with `pytest -s`: the README sample
    assert "None" not in run.stdout + run.stderr
    assert "label netiso.io/policy missing, bundle has 'default-deny-ingress'" in run.stdout
    assert "1 namespace: 0 in sync, 1 drifted, 0 missing" in run.stdout
