"""``down`` leaves nothing of the lab behind, and touches nothing that is not the lab's.

This test destroys the lab, so it is marked ``lab_teardown`` and runs only when selected
(``pytest -m lab_teardown tests/cluster/test_lab_teardown.py``) as the last step of CI. Outside CI
it refuses to touch a lab that is already running (someone else's, on a shared machine); in CI
the final invocation owns the machine, so it takes down whatever lab is left and checks that.

Canaries the test creates itself (a netns, an iptables chain, an ipset, a process in that netns
whose command line names a ``tests.lab`` module and a cached lab binary, but which carries no lab
marker) must all survive ``down``: teardown works from the lab's reserved names and its process
marker, never from look-alikes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab import build, controlplane, enforcement, engines, network
from tests.lab import lab as lab_mod
from tests.lab.kubeapi import Kube

pytestmark = pytest.mark.lab_teardown


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.lab", *args], capture_output=True,
                          text=True, check=False, timeout=600, cwd=lab_mod.REPO_ROOT)


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)


@dataclass
class Canaries:
    netns: str
    chain: str
    ipset: str
    process: subprocess.Popen[bytes]

    def alive(self) -> list[str]:
        """The canaries still present (all four, when `down` kept its hands off them)."""
        found = []
        if (network.RUN_NETNS / self.netns).exists():
            found.append("netns")
        if _sh("iptables", "-w", "5", "-S", self.chain).returncode == 0:
            found.append("chain")
        if _sh("ipset", "list", "-n", self.ipset).returncode == 0:
            found.append("ipset")
        if self.process.poll() is None:
            found.append("process")
        return found


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    tag = uuid.uuid4().hex[:8]
    netns, chain, ipset = f"canary-netiso-{tag}", f"CANARY-NLAB-{tag}", f"canary-nlab-{tag}"
    assert _sh("ip", "netns", "add", netns).returncode == 0
    assert _sh("iptables", "-w", "5", "-N", chain).returncode == 0
    assert _sh("iptables", "-w", "5", "-A", chain, "-j", "RETURN").returncode == 0
    assert _sh("ipset", "create", ipset, "hash:ip").returncode == 0
    env = {k: v for k, v in os.environ.items() if k != network.PROCESS_MARKER}
    # What the old /proc scan would have killed: a tests.lab module name and a cached binary
    # path in its argv, running in a netns; not started by the lab, so no marker.
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", "import time; time.sleep(900)",
         "tests.lab.canary", str(build.binary("etcd"))],
        env=env, start_new_session=True,
    )
    found = Canaries(netns, chain, ipset, process)
    try:
        yield found
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _sh("ip", "netns", "del", netns)
        _sh("iptables", "-w", "5", "-F", chain)
        _sh("iptables", "-w", "5", "-X", chain)
        _sh("ipset", "destroy", ipset)


def _pod_with_volumes(node: str) -> int:
    """A running pod with a hostPath (per-node directory) and an emptyDir; returns its pid."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "volumes",
                                                         "namespace": "default"},
           "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
               {"name": "c", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo x > /var/lib/x/f; sleep 3600"],
                "volumeMounts": [{"name": "h", "mountPath": "/var/lib/x"},
                                 {"name": "e", "mountPath": "/scratch"}]}],
               "volumes": [{"name": "h", "hostPath": {"path": "/var/lib/x"}},
                           {"name": "e", "emptyDir": {}}]}}
    kubectl = [str(build.binary("kubectl")), "--kubeconfig",
               str(controlplane.paths().admin_kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True,
                   check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run([*kubectl, "get", "pod", "volumes", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
        got = json.loads(out)
        if got["status"].get("phase") == "Running":
            netns = network.pod_netns_name(got["metadata"]["uid"])
            pid = network.find_container_pid(netns)
            if pid is not None and (controlplane.state_dir() / "nodes" / node / "root" /
                                    "var/lib/x/f").exists():
                return pid
        assert time.monotonic() < deadline, got["status"]
        time.sleep(0.2)


# Up to two CLI runs of up to 600 s each (an `up`, a `down`): more than the suite's default.
@pytest.mark.timeout(1500)
def test_down_removes_every_lab_object_and_process(canaries: Canaries) -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if lab_mod.is_up() and not in_ci:
        pytest.skip("a lab is running (maybe another engineer's): not tearing it down")

    if not lab_mod.is_up():
        up = _cli("up", "--flavor", "generic", "--nodes", "2")
        assert up.returncode == 0, up.stderr
    status = _cli("status")
    rows = dict(line.split(None, 1) for line in status.stdout.splitlines() if line.strip())
    assert rows.get("enforcement") == "on", status.stdout
    spec = lab_mod.load_spec()
    assert spec is not None
    netns = [n.netns for n in spec.nodes]
    assert all(enforcement.chains(ns) for ns in netns), "kube-router was enforcing before down"
    assert controlplane.scan_lab_processes(), "lab processes were running before down"

    assert network.lab_root_routes(), "the lab's unreachable routes were in root before down"
    volume_pid = _pod_with_volumes(spec.nodes[0].name)
    node_dir = controlplane.state_dir() / "nodes" / spec.nodes[0].name / "root" / "var/lib/x"
    assert (node_dir / "f").is_file(), "the hostPath volume landed in the node's directory"
    assert network.state_mounts([str(volume_pid)]), "the container had its volume mounts"
    assert network.state_mounts() == [], "a volume mount leaked into root's mount namespace"
    assert canaries.alive() == ["netns", "chain", "ipset", "process"]

    # Crash-like state: pid files gone, so down must find every process by scanning /proc.
    shutil.rmtree(controlplane.paths().pids)
    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "leftover" not in down.stdout, down.stdout
    assert canaries.alive() == ["netns", "chain", "ipset", "process"], "down removed a canary"
    assert network.leftovers() == []
    left = _cli("leftovers")
    assert (left.returncode, left.stdout) == (0, ""), left.stdout + left.stderr
    assert network.lab_root_routes() == []
    assert controlplane.scan_lab_processes() == []
    assert not (controlplane.state_dir() / "nodes").exists()
    assert not (controlplane.state_dir() / "pods").exists()
    every = [p for p in os.listdir("/proc") if p.isdigit()]
    assert network.state_mounts(every) == [], "a process still holds a lab volume mount"
    assert network.list_netns() == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    assert "nlab" not in links
    chains = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert "NETISO-LAB" not in chains and "KUBE-ROUTER" not in chains
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=False).stdout
    assert f"proto {network.LAB_ROUTE_PROTO}" not in routes and "nlab" not in routes
    sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True,
                          check=False).stdout
    assert not [s for s in sets.split() if s.startswith(("KUBE-", "nlab", "netiso"))]

    again = _cli("down")
    assert again.returncode == 0, "down must be idempotent: " + again.stderr


def _processes_running(needle: str) -> list[str]:
    """Live processes whose command line contains ``needle`` (pid: argv)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            argv = raw.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in argv:
            found.append(f"{entry}: {argv[:160]}")
    return found


@pytest.mark.timeout(1500)
def test_down_leaves_nothing_of_the_engine_doubles(canaries: Canaries) -> None:
    """An engine double (GKE's Calico here) enforcing on both nodes, then a crash: the node agent
    SIGKILLed (the doubles and their kube-routers orphaned) and the pid files gone. `down` must
    still stop every double and kube-router and leave no chain or ipset anywhere."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if lab_mod.is_up() and not in_ci:
        pytest.skip("a lab is running (maybe another engineer's): not tearing it down")
    up = _cli("up", "--flavor", "gke", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    spec = lab_mod.load_spec()
    assert spec is not None and spec.flavor == "gke" and not spec.enforce
    kube = Kube(str(controlplane.paths().admin_kubeconfig))
    engines.gke_network_policy(kube, True)
    engines.wait_enforcing(kube, timeout=120)
    assert all(enforcement.chains(n.netns) for n in spec.nodes), "the doubles were enforcing"
    # kube-router itself, not the doubles (whose argv names the binary after --kube-router).
    kube_router = f"{build.binary('kube-router')} --kubeconfig="
    assert len(_processes_running("tests.lab.engine_double")) == len(spec.nodes)
    assert len(_processes_running(kube_router)) == len(spec.nodes)
    assert canaries.alive() == ["netns", "chain", "ipset", "process"]

    agent = controlplane.running(lab_mod.NODE_AGENT)
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    shutil.rmtree(controlplane.paths().pids)
    assert len(_processes_running(kube_router)) == len(spec.nodes), "orphaned, still running"
    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert canaries.alive() == ["netns", "chain", "ipset", "process"], "down removed a canary"
    assert _processes_running("tests.lab.engine_double") == []
    assert _processes_running(kube_router) == []
    assert controlplane.scan_lab_processes() == []
    assert network.leftovers() == []
    assert network.list_netns() == []
    chains = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert "KUBE-ROUTER" not in chains and "KUBE-NWPLCY" not in chains
    sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True,
                          check=False).stdout
    assert not [s for s in sets.split() if s.startswith("KUBE-")]
