"""``down`` leaves nothing behind: no lab netns, link, chain, ipset or process.

This test destroys the lab, so it is marked ``lab_teardown`` and runs only when selected
(``pytest -m lab_teardown tests/cluster/test_lab_teardown.py``) as the last step of CI. Outside CI
it refuses to touch a lab that is already running (someone else's, on a shared machine); in CI
the final invocation owns the machine, so it takes down whatever lab is left and checks that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.lab import controlplane, enforcement, network
from tests.lab import lab as lab_mod

pytestmark = pytest.mark.lab_teardown


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.lab", *args], capture_output=True,
                          text=True, check=False, timeout=600, cwd=lab_mod.REPO_ROOT)


def test_down_removes_every_lab_object_and_process() -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if lab_mod.is_up() and not in_ci:
        pytest.skip("a lab is running (maybe another engineer's): not tearing it down")

    if not lab_mod.is_up():
        up = _cli("up", "--nodes", "2")
        assert up.returncode == 0, up.stderr
    status = _cli("status")
    rows = dict(line.split(None, 1) for line in status.stdout.splitlines() if line.strip())
    assert rows.get("enforcement") == "on", status.stdout
    spec = lab_mod.load_spec()
    assert spec is not None
    netns = [n.netns for n in spec.nodes]
    assert all(enforcement.chains(ns) for ns in netns), "kube-router was enforcing before down"
    assert controlplane.scan_lab_processes(), "lab processes were running before down"

    # Crash-like state: pid files gone, so down must find every process by scanning /proc.
    shutil.rmtree(controlplane.paths().pids)
    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert network.leftovers() == []
    assert controlplane.scan_lab_processes() == []
    assert network.list_netns() == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    assert "nlab" not in links
    chains = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert "NETISO-LAB" not in chains and "KUBE-ROUTER" not in chains
    sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True,
                          check=False).stdout
    assert not [s for s in sets.split() if s.startswith(("KUBE-", "nlab", "netiso"))]

    again = _cli("down")
    assert again.returncode == 0, "down must be idempotent: " + again.stderr
