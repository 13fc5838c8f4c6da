"""`scripts/demo` against a running lab of another flavour (the generic session's lab): it
refuses with exit 4 and the step named, rather than switching a lab whose engine and felix rules
would survive the switch; the lab stays as it was, no test server runs and no temporary
directory is left. The demo's full run is test_calico_demo.py (EKS, in the Calico session)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.lab import lab as lab_mod
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def test_demo_refuses_a_running_lab_of_another_flavour_and_leaves_it(lab: LabClient,
                                                                    tmp_path: Path) -> None:
    provider = "gke" if lab.spec.flavor != "gke" else "aks"
    ns = f"t-demo-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DEMO_NAMESPACE": ns, "DEMO_PROVIDER": provider, "TMPDIR": str(tmp)}
    before = lab_mod.load_spec()
    run = subprocess.run([str(REPO / "scripts" / "demo"), "--down"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 4, out[-3000:]
    assert (f"a lab is running in the {lab.spec.flavor} flavour; this demo needs a {provider} "
            "one") in out, out[-2000:]
    assert f'FAILED at step "start the lab, {provider} flavour' in out
    assert "netiso bootstrap" not in out.split("FAILED at step")[0].split("start the lab")[-1]
    assert lab_mod.is_up() and lab_mod.load_spec() == before
    assert lab.core.list_namespace(field_selector=f"metadata.name={ns}").items == []
    assert list(tmp.iterdir()) == []


def test_demo_rejects_an_unknown_provider_with_exit_2() -> None:
    run = subprocess.run([str(REPO / "scripts" / "demo")], cwd=REPO,
                         env={**os.environ, "DEMO_PROVIDER": "generic"},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "DEMO_PROVIDER must be eks, gke or aks (got 'generic')" in run.stderr
