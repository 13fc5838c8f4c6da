"""``down`` after Calico ran: felix's dataplane state and the operator's processes go too.

Felix programs iptables chains and ipsets (and, in nftables mode, nft tables) inside each node's
network namespace, and the operator, typha and calico-node run as the lab's pod processes, so
``down`` must leave none of them even after a crash (pid files gone). Like test_lab_teardown.py
this destroys the lab, so it is marked ``lab_teardown`` and runs only in CI's final invocation
(``pytest -m lab_teardown``); outside CI it refuses to touch a running lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import build, controlplane, network
from tests.lab import lab as lab_mod

pytestmark = pytest.mark.lab_teardown

MANIFESTS = build.shared_dir() / "calico" / build.CALICO_VERSION
INSTALLATION = """\
apiVersion: operator.tigera.io/v1
kind: Installation
metadata:
  name: default
spec:
  kubernetesProvider: EKS
  cni:
    type: AmazonVPC
  calicoNetwork:
    bgp: Disabled
"""
CALICO_BINARIES = ("operator", "calico-node", "calico-typha", "kube-controllers")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.lab", *args], capture_output=True,
                          text=True, check=False, timeout=600, cwd=lab_mod.REPO_ROOT)


def _sh(*argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120,
                          input=input)


def _kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return _sh(str(build.binary("kubectl")), "--kubeconfig",
               str(controlplane.paths().admin_kubeconfig), *args, input=input)


def _felix_state(netns: str) -> list[str]:
    """Felix's objects in one node netns: cali chains (iptables) and cali ipsets."""
    chains = _sh("ip", "netns", "exec", netns, "iptables-save").stdout
    sets = _sh("ip", "netns", "exec", netns, "ipset", "list", "-n").stdout
    return ([line for line in chains.splitlines() if line.startswith(":cali-")]
            + [s for s in sets.split() if s.startswith("cali")])


def _calico_processes() -> list[str]:
    """Processes running a built Calico or operator binary, wherever they came from."""
    wanted = {str(build.binary(name)) for name in CALICO_BINARIES}
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe in wanted:
            found.append(f"{pid} {exe}")
    return found


# An `up`, the install (up to 3 min for felix), a `down`: more than the suite's default.
@pytest.mark.timeout(1500)
def test_down_removes_felix_state_and_calico_processes() -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if lab_mod.is_up() and not in_ci:
        pytest.skip("a lab is running (maybe another engineer's): not tearing it down")
    if lab_mod.is_up():
        assert _cli("down").returncode == 0
    up = _cli("up", "--flavor", "eks")
    assert up.returncode == 0, up.stderr
    spec = lab_mod.load_spec()
    assert spec is not None and spec.flavor == "eks"
    for name in ("operator-crds.yaml", "tigera-operator.yaml"):
        created = _kubectl("create", "-f", str(MANIFESTS / name))
        assert created.returncode == 0, created.stderr
    created = _kubectl("create", "-f", "-", input=INSTALLATION)
    assert created.returncode == 0, created.stderr

    netns = [n.netns for n in spec.nodes]
    deadline = time.monotonic() + 300
    while not all(_felix_state(ns) for ns in netns):
        assert time.monotonic() < deadline, "felix never programmed both nodes"
        time.sleep(3)
    processes = _calico_processes()
    assert any("operator" in p for p in processes), processes
    assert any("calico-node" in p for p in processes), processes

    # Crash-like state: pid files gone, so down must find every process by scanning /proc.
    shutil.rmtree(controlplane.paths().pids)
    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert network.leftovers() == []
    left = _cli("leftovers")
    assert (left.returncode, left.stdout) == (0, ""), left.stdout + left.stderr
    assert _calico_processes() == []
    assert network.list_netns() == [], "the node namespaces (and felix's state in them) remain"
    # Felix ran in the node namespaces only: nothing of it in root's tables either.
    assert ":cali-" not in _sh("iptables-save").stdout
    assert not [s for s in _sh("ipset", "list", "-n").stdout.split() if s.startswith("cali")]
    if shutil.which("nft"):
        assert "calico" not in _sh("nft", "list", "tables").stdout
    assert not Path("/var/lib/calico").exists(), "calico-node wrote the host's /var/lib/calico"
