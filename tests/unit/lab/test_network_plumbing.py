"""The lab network for real (root, Linux): pod-to-pod TCP, the metadata host, no way out.

Runs against the shared lab network if it is up (network.up is idempotent) and only removes the
pod namespaces it creates; if it had to build the network itself, it tears it down again.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import images, network

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[network.NodeSpec]]:
    built_here = not network.netns_exists(network.FABRIC_NS)
    specs = network.default_nodes()
    network.up(specs)
    yield specs
    if built_here:
        network.down()


class Pods:
    def __init__(self, nodes: list[network.NodeSpec], tmp: Path) -> None:
        self.nodes = nodes
        self.tmp = tmp
        self.made: list[tuple[str, network.NodeSpec, str]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.next_ip = {n.name: 200 for n in nodes}

    def make(self, node: network.NodeSpec) -> tuple[str, str]:
        uid = str(uuid.uuid4())
        ip = node.pod_cidr.rsplit(".", 1)[0] + f".{self.next_ip[node.name]}"
        self.next_ip[node.name] += 1
        netns = network.create_pod_netns(node, uid, ip, resolv=network.resolv_conf("t", None, None))
        self.made.append((netns, node, ip))
        return netns, ip

    def serve(self, netns: str, port: int, reply: str) -> None:
        img = images.resolve("busybox", network.state_dir())
        argv = network.pod_exec_argv(
            netns,
            img.argv(["nc", "-ll", "-p", str(port), "-e", "echo", reply], None),
            hostname="srv",
        )
        env = network.marked_env("container:test", {"PATH": img.path})
        self.procs.append(subprocess.Popen(argv, env=env, start_new_session=True))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = network.exec_in_pod(netns, ["netstat", "-ltn"]).stdout
            if f":{port} " in out:
                return
            time.sleep(0.05)
        raise AssertionError(f"nothing listening on {port} in {netns}")

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for netns, node, ip in self.made:
            network.delete_pod_netns(netns, node, ip)


@pytest.fixture
def pods(nodes: list[network.NodeSpec], tmp_path: Path) -> Iterator[Pods]:
    p = Pods(nodes, tmp_path)
    yield p
    p.cleanup()
    for netns, _, _ in p.made:
        assert not network.netns_exists(netns)
        assert not (network.NETNS_ETC / netns).exists()


def test_pods_on_one_node_and_across_nodes_talk_tcp(pods: Pods) -> None:
    n1, n2 = pods.nodes[0], pods.nodes[1]
    server, server_ip = pods.make(n1)
    same_node, _ = pods.make(n1)
    other_node, _ = pods.make(n2)
    pods.serve(server, 8080, "hello")
    for client in (same_node, other_node):
        out = network.exec_in_pod(client, ["nc", "-w", "2", server_ip, "8080"], input="")
        assert out.stdout.strip() == "hello", out


def test_pod_reaches_the_lab_metadata_host(pods: Pods) -> None:
    netns, _ = pods.make(pods.nodes[1])
    url = "http://169.254.169.254/latest/meta-data/instance-id"
    out = network.exec_in_pod(netns, ["wget", "-qO-", "-T", "3", url])
    assert out.returncode == 0, out
    assert out.stdout == "i-0netisolab000001"


def test_pod_has_no_route_out_of_the_lab(pods: Pods) -> None:
    netns, _ = pods.make(pods.nodes[0])
    for addr in ("192.0.2.1", "1.1.1.1", "169.254.169.253"):
        out = network.exec_in_pod(netns, ["ip", "route", "get", addr])
        assert out.returncode != 0 and "unreachable" in out.stderr.lower(), (addr, out)
        out = network.exec_in_pod(netns, ["nc", "-w", "1", addr, "80"], input="")
        assert out.returncode != 0
    routes = network.exec_in_pod(netns, ["ip", "route"]).stdout
    assert "default" not in routes


def test_pod_resolv_conf_only_names_the_lab_dns(pods: Pods) -> None:
    netns, _ = pods.make(pods.nodes[0])
    text = network.exec_in_pod(netns, ["cat", "/etc/resolv.conf"]).stdout
    assert re.findall(r"^nameserver (\S+)", text, re.M) == [network.DNS_IP]


# The lab's listeners (root, node, fabric and metadata namespaces) are checked against the running
# control plane in tests/cluster/test_lab_safety.py: here, without the `lab` fixture, the control
# plane may not be running at all (it was not in CI), so such a check could pass vacuously.
