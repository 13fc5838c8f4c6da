"""`scripts/demo --down` against a lab it did not start: the lab stays, the demo says so, and
the demo leaves no temporary directory behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.lab import lab as lab_mod
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def test_demo_down_leaves_a_lab_it_did_not_start_and_no_files(lab: LabClient,
                                                               tmp_path: Path) -> None:
    ns = f"t-demo-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DEMO_NAMESPACE": ns, "TMPDIR": str(tmp)}
    try:
        run = subprocess.run([str(REPO / "scripts" / "demo"), "--down"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=900, check=False)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-3000:]
        assert "a lab is already running: reusing it" in out
        assert ("--down: the lab was already running before this demo, so it is left running"
                in out), out[-2000:]
        assert "stopping the lab this run started" not in out
        assert lab_mod.is_up()
        assert list(tmp.iterdir()) == []  # the demo's temporary directory is gone
    finally:
        with contextlib.suppress(Exception):
            lab.core.delete_namespace(ns, propagation_policy="Background")
