"""`netiso uninstall` against the lab: everything netiso created goes, nothing else does.

Runs are scoped with --namespace to this test's namespaces: the lab is shared and an unscoped
uninstall would remove other tests' bundles. The unscoped form is exercised with --dry-run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from netiso import kube
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _names(lab: LabClient, namespace: str) -> set[str]:
    return {p.metadata.name for p in lab.networking.list_namespaced_network_policy(namespace).items}


def test_uninstall_removes_only_what_netiso_created(lab: LabClient, namespace: str) -> None:
    run = uuid.uuid4().hex[:6]
    second = f"t-uninstall-{run}"
    lab.core.create_namespace({"metadata": {"name": second}})
    probe_ns = f"t-uninstall-probe-{run}"
    try:
        for ns in (namespace, second):
            assert netiso(lab, "apply", "-n", ns).returncode == 0
        bundle = _names(lab, namespace)
        assert bundle
        # A verification leftover written by netiso (field manager netiso), in a namespace
        # netiso created, plus a labelled config map in the test namespace.
        with kube.connect(str(lab.kubeconfig)) as k:
            k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": probe_ns, "labels": {"app.kubernetes.io/managed-by": "netiso"}}})
            k.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "netiso-probe-leftover", "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "netiso"}}, "data": {"a": "b"}})
        # Foreign objects: an ordinary policy, and a look-alike labelled by hand.
        lab.networking.create_namespaced_network_policy(namespace, {
            "metadata": {"name": "team-policy"}, "spec": {"podSelector": {}}})
        lab.networking.create_namespaced_network_policy(namespace, {
            "metadata": {"name": "netiso-lookalike",
                         "labels": {"app.kubernetes.io/managed-by": "netiso"}},
            "spec": {"podSelector": {}}})
        lab.core.create_namespaced_config_map(namespace, {"metadata": {"name": "team-config"}})
        foreign_rv = {p.metadata.name: p.metadata.resource_version for p in
                      lab.networking.list_namespaced_network_policy(namespace).items
                      if p.metadata.name in ("team-policy", "netiso-lookalike")}

        # The unscoped dry run finds ours (among whatever else the shared lab holds).
        everywhere = netiso(lab, "-o", "json", "uninstall", "--dry-run")
        assert everywhere.returncode == 0, everywhere.stderr
        listed = {(t["kind"], t["namespace"], t["name"])
                  for t in json.loads(everywhere.stdout)["deleted"]}
        assert ("Namespace", None, probe_ns) in listed
        assert {("NetworkPolicy", namespace, n) for n in bundle} <= listed
        assert ("NetworkPolicy", namespace, "team-policy") not in listed
        assert ("NetworkPolicy", namespace, "netiso-lookalike") not in listed

        scope = ["-n", namespace, "-n", second, "-n", probe_ns]
        dry = netiso(lab, "-o", "json", "uninstall", "--dry-run", *scope)
        assert dry.returncode == 0, dry.stderr
        doc: dict[str, Any] = json.loads(dry.stdout)
        assert doc["dryRun"] is True
        assert _names(lab, namespace) == bundle | {"team-policy", "netiso-lookalike"}
        skipped = {t["name"]: t["reason"] for t in doc["skipped"]}
        assert "not written by netiso" in skipped["netiso-lookalike"]

        real = netiso(lab, "uninstall", *scope)
        assert real.returncode == 0, real.stderr
        assert "skipped: labelled app.kubernetes.io/managed-by=netiso but not written" \
            in real.stdout
        assert _names(lab, namespace) == {"team-policy", "netiso-lookalike"}
        assert _names(lab, second) == set()
        cms = {c.metadata.name for c in lab.core.list_namespaced_config_map(namespace).items}
        assert "netiso-probe-leftover" not in cms
        assert "team-config" in cms
        after_rv = {p.metadata.name: p.metadata.resource_version for p in
                    lab.networking.list_namespaced_network_policy(namespace).items}
        assert after_rv == foreign_rv
        probe = lab.core.list_namespace(field_selector=f"metadata.name={probe_ns}").items
        assert not probe or probe[0].status.phase == "Terminating"

        # A rerun is a no-op that succeeds: nothing left to delete, the probe namespace (if
        # still Terminating) and its contents reported as already being deleted.
        again = netiso(lab, "-o", "json", "uninstall", *scope)
        assert again.returncode == 0, again.stderr
        rerun: dict[str, Any] = json.loads(again.stdout)
        assert rerun["deleted"] == []
        assert rerun["summary"] == {"deleted": 0, "skipped": len(rerun["skipped"]), "failed": 0,
                                    "unknown": 0, "notAttempted": 0}
        reasons = {(t["kind"], t["namespace"], t["name"]): t["reason"] for t in rerun["skipped"]}
        assert "not written by netiso" in reasons[("NetworkPolicy", namespace,
                                                   "netiso-lookalike")]
        assert {why for key, why in reasons.items()
                if key != ("NetworkPolicy", namespace, "netiso-lookalike")} <= {
            "already being deleted"}
        assert _names(lab, namespace) == {"team-policy", "netiso-lookalike"}
    finally:
        for ns in (second, probe_ns):
            with contextlib.suppress(Exception):
                lab.core.delete_namespace(ns)
