"""securityContext capabilities (issue #15.2): calico-node is `privileged` and must program its
node's routes and iptables; in the lab that is NET_ADMIN in its own netns and nothing that
leaves the lab's namespaces (no SYS_ADMIN, SYS_MODULE...). A default container stays confined
(tests/cluster/test_lab_safety.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cluster.test_node_agent import apply, busybox, state, wait_for
from tests.lab import network
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

# CAP_NET_ADMIN is bit 12, CAP_SYS_ADMIN bit 21, CAP_SYS_MODULE bit 16.
NET_ADMIN, SYS_MODULE, SYS_ADMIN = 1 << 12, 1 << 16, 1 << 21


def _bounding(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^CapBnd:\s*([0-9a-f]+)$", status, re.M)
    assert match, status
    return int(match.group(1), 16)


def test_privileged_container_gets_net_admin_and_nothing_beyond_the_lab(
    lab: LabClient, namespace: str
) -> None:
    script = "ip route add 10.9.9.0/24 dev lo || exit 3; sleep 3600"
    priv = busybox("priv", ["sh", "-c", script], restart="Always",
                   securityContext={"privileged": True})
    plain = busybox("plain", ["sh", "-c", script], restart="Never")
    drop = busybox("drop", ["sleep", "3600"], restart="Always",
                   securityContext={"capabilities": {"drop": ["ALL"]}})
    apply(lab, namespace, priv, plain, drop)
    wait_for(lab, namespace, "priv", lambda p: p["status"].get("phase") == "Running")
    pid = network.find_container_pid(lab.pod_netns(namespace, "priv"))
    assert pid is not None
    caps = _bounding(pid)
    assert caps & NET_ADMIN and not caps & SYS_ADMIN and not caps & SYS_MODULE, hex(caps)
    routes = network._run([network.IP, "-n", lab.pod_netns(namespace, "priv"), "route"]).stdout
    assert "10.9.9.0/24 dev lo" in routes, routes
    done = wait_for(lab, namespace, "plain", lambda p: p["status"].get("phase") == "Failed")
    assert state(done)["terminated"]["exitCode"] == 3, "a default container changed a route"
    wait_for(lab, namespace, "drop", lambda p: p["status"].get("phase") == "Running")
    pid = network.find_container_pid(lab.pod_netns(namespace, "drop"))
    assert pid is not None and _bounding(pid) == 0
