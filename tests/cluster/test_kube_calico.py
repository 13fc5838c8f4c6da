"""Acceptance of the open Kubernetes seam: every object of Calico v3.32.1's release manifests
(32 CRDs, the operator's namespace, RBAC and Deployment, an ``Installation``) goes through
``Kube.apply_all`` on the lab, in rank order, by server-side apply only, and ``delete_all``
removes it again in reverse. The operator itself does not run here (its image is not one the
lab can emulate); what is shown is that the seam can install it.

The manifests come from ``shared/`` beside the checkout (``NETISO_SHARED_DIR`` overrides it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from netiso import kube
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

SHARED = Path(os.environ.get("NETISO_SHARED_DIR")
              or Path(__file__).resolve().parents[2].parent / "shared")
CALICO = SHARED / "calico" / "v3.32.1"


def _manifests() -> tuple[list[kube.Obj], list[kube.Obj], list[kube.Obj]]:
    if not CALICO.is_dir():
        message = f"Calico manifests not found at {CALICO} (set NETISO_SHARED_DIR)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    crds = kube.load_manifests(CALICO / "operator-crds.yaml")
    operator = kube.load_manifests(CALICO / "tigera-operator.yaml")
    installation = [o for o in kube.load_manifests(CALICO / "custom-resources.yaml")
                    if o["kind"] == "Installation"]
    return crds, operator, installation


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta['namespace'] + '/' if meta.get('namespace') else ''}" \
           f"{meta['name']}"


def _live(k: kube.Kube, obj: Mapping[str, Any]) -> kube.Obj | None:
    rt = k.resource_of(obj)
    return k.get(rt, obj["metadata"]["name"], obj["metadata"].get("namespace"))


def test_calico_release_applies_and_deletes_through_the_seam(lab: LabClient) -> None:
    crds, operator, installation = _manifests()
    assert len(crds) == 32 and len(installation) == 1
    kinds = {o["kind"] for o in operator}
    # Kinds the old table did not know: found by discovery now.
    assert {"RoleBinding", "ClusterRoleBinding", "Deployment"} <= kinds
    # Given in the "wrong" order on purpose: the ranking puts CRDs first, the CR last.
    objects = [*installation, *operator, *crds]
    with kube.connect(str(lab.kubeconfig)) as k:
        existed = {_ref(o) for o in crds + operator if _live(k, o) is not None}
        try:
            applied = k.apply_all(objects)
            refs = [a.ref for a in applied]
            assert sorted(refs) == sorted(_ref(o) for o in objects)
            assert refs[-1] == "Installation default"
            last_crd = max(i for i, a in enumerate(applied)
                           if a.obj["kind"] == "CustomResourceDefinition")
            assert last_crd == len(crds) - 1
            assert refs.index("Namespace tigera-operator") < refs.index(
                "ServiceAccount tigera-operator/tigera-operator") < refs.index(
                "Deployment tigera-operator/tigera-operator")
            assert refs.index("ClusterRole tigera-operator") < refs.index(
                "ServiceAccount tigera-operator/tigera-operator")
            for a in applied:
                if a.ref not in existed:
                    assert a.created, a.ref

            for obj in objects:
                live = _live(k, obj)
                assert live is not None, _ref(obj)
                managers = {(m["manager"], m["operation"])
                            for m in live["metadata"].get("managedFields") or []}
                assert (kube.FIELD_MANAGER, "Apply") in managers, (_ref(obj), managers)
                # Server-side apply only: never kubectl's client-side annotation.
                assert kube.LAST_APPLIED not in (live["metadata"].get("annotations") or {})

            # The ~1.4 MB Installation CRD really is on the server, established.
            big = lab.kubectl("get", "crd", "installations.operator.tigera.io", "-o", "json")
            assert len(big.stdout) > 1_000_000
            assert kube.has_condition(json.loads(big.stdout), "Established")
            # An independent reader sees the custom resource as the manifest wrote it.
            cidr = lab.kubectl("get", "installations.operator.tigera.io", "default", "-o",
                               "jsonpath={.spec.calicoNetwork.ipPools[0].cidr}")
            assert cidr.stdout == "192.168.0.0/16"

            # Idempotent: a second run creates nothing and asks discovery nothing new.
            passes = k.discovery.passes
            again = k.apply_all(objects)
            assert [a.ref for a in again] == refs
            assert not any(a.created for a in again)
            assert k.discovery.passes == passes <= 1
        finally:
            deleted = k.delete_all(objects, wait=True, timeout=300)
        # Reverse order: the custom resource first, the CRDs last.
        assert deleted[0].ref == "Installation default"
        assert all(d.ref.startswith("CustomResourceDefinition") for d in deleted[-len(crds):])
        assert [d.ref for d in deleted if not d.deleted] == []
        for obj in operator + crds:
            assert _live(k, obj) is None, _ref(obj)
        leftover = lab.kubectl("get", "crd", "-o", "name")
        assert "tigera.io" not in leftover.stdout
        assert "projectcalico.org" not in leftover.stdout
