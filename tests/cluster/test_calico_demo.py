"""The README's first command, `scripts/demo` (EKS, the default), run as a user runs it.

It runs in the EKS-flavoured session of test_calico*.py (scripts/test: ``NETISO_LAB_FLAVOR=eks``),
after test_calico.py and before test_calico_enable.py. Order and cleanup:

1. ``make_fresh`` (test_calico_enable.py) first: test_calico.py leaves the operator, its CRDs
   and felix's chains and ipsets behind, and the demo must start from an EKS cluster Calico never
   ran on, as on a fresh machine;
2. the demo itself, on the session's running lab (it reuses a running lab of its flavour): the
   real Tigera operator, calico-node and the EKS test server as a background program;
3. ``make_fresh`` again and the demo's namespaces deleted, so the files after this one find the
   lab as test_calico.py would have left it, minus the operator.

The user's view is what is checked: the exit status, the summary tables on its output, no test
server process and no temporary directory left behind; a failing step is named with its code.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.test_calico_enable import make_fresh
from tests.lab import build
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
STEPS = ("detect", "preflight", "enable", "wait", "apply", "verify")


def _servers_running() -> list[str]:
    """Command lines of live processes running a cloud test server as a program."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"tests.servers.eks" in argv or b"tests.servers.gke" in argv:
                found.append(" ".join(a.decode(errors="replace") for a in argv))
    return found


def demo(tmp: Path, namespace: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "demo")], cwd=REPO,
                          env={**os.environ, "DEMO_NAMESPACE": namespace, "TMPDIR": str(tmp),
                               **env},
                          capture_output=True, text=True, timeout=1200, check=False)


def summary(out: str, outcome: str) -> list[list[str]]:
    """The rows of the bootstrap table that ends with ``bootstrap <outcome> (eks, ...)``."""
    lines = out.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(f"bootstrap {outcome} (eks,"))
    rows = [re.split(r"\s{2,}", line, maxsplit=4) for line in lines[end - len(STEPS):end]]
    assert lines[end - len(STEPS) - 1].startswith("STEP "), lines[end - 10:end + 1]
    return rows


@pytest.fixture
def fresh_eks(lab: LabClient) -> Iterator[LabClient]:
    if lab.spec.flavor != "eks" or lab.spec.enforce:
        message = (f"needs an EKS-flavoured lab without enforcement (running: {lab.spec.flavor}, "
                   f"enforce={lab.spec.enforce}); scripts/test runs this file with "
                   "NETISO_LAB_FLAVOR=eks")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    make_fresh(lab)
    yield lab
    make_fresh(lab)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def test_a_failing_step_is_named_with_its_exit_code_and_the_server_is_stopped(
        fresh_eks: LabClient, tmp: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-shared"
    empty.mkdir()
    run = demo(tmp, f"t-demo-{uuid.uuid4().hex[:6]}", NETISO_SHARED_DIR=str(empty))
    out = run.stdout + run.stderr
    assert run.returncode == 4, out[-3000:]
    assert f"Calico's manifests are missing: {empty}/calico/{build.CALICO_VERSION}" in out
    assert ('FAILED at step "start the eks test server (background; stopped when the demo '
            'ends)" (exit 4)') in out
    assert "netiso bootstrap" not in out.split("FAILED at step")[0].split("test server")[-1]
    assert _servers_running() == []
    assert list(tmp.iterdir()) == []


def test_the_readme_first_command_bootstraps_eks_then_the_rerun_is_a_no_op(
        fresh_eks: LabClient, tmp: Path) -> None:
    ns = f"t-demo-{uuid.uuid4().hex[:6]}"
    try:
        run = demo(tmp, ns)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-4000:]
        assert "LOCAL DEMONSTRATION: netiso bootstrap --provider eks" in out
        assert "a lab is already running in the eks flavour: reusing it" in out
        # plan: the admin port behind the Service is cut for the client in another namespace.
        assert re.search(rf"{ns}/web +TCP/9090 +.*{ns}-client/client", out), out[-6000:]
        first = summary(out, "changed")
        assert [r[0] for r in first] == list(STEPS)
        assert {r[1] for r in first} == {"done"}, first
        assert [r[0] for r in first if r[2] == "yes"] == ["enable", "apply"], first
        assert "bootstrap changed (eks, " in out and "changed enable, apply" in out
        assert "ran calico-crds, tigera-operator" in out
        assert "enforcing: calico (calico-system/calico-node, ready 2/2)" in out
        # verify's own table, every flow as expected.
        assert re.search(r"^verify passed: \d+ flows, \d+ ✓, 0 ✗, 0 probe errors; enforcement "
                         r"enforced \(2/2 nodes\)", out, re.M), out[-4000:]
        again = summary(out, "unchanged")
        assert {r[1] for r in again} == {"done"} and {r[2] for r in again} == {"no"}, again
        assert "already enforcing (calico): nothing to do" in again[2][4]
        assert "0 created, 0 updated, 4 unchanged, 0 pruned" in again[4][4]
        assert "the lab keeps running (eks flavour" in out
        # The bundle is on the demo's namespace, live.
        names = {p.metadata.name for p in
                 fresh_eks.networking.list_namespaced_network_policy(ns).items}
        assert "netiso-default-deny-ingress" in names, names
        assert _servers_running() == []
        assert list(tmp.iterdir()) == []
    finally:
        for name in (ns, f"{ns}-client"):
            with contextlib.suppress(Exception):
                fresh_eks.core.delete_namespace(name, propagation_policy="Background")
