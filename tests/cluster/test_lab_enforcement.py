"""Acceptance tests of the lab itself: real TCP/HTTP/DNS traffic between lab pods.

Every verdict comes from a process inside a pod network namespace opening a connection; nothing
here inspects iptables to decide whether traffic flows. kube-router applies policy changes
asynchronously (informer event -> full sync), so a changed expectation is polled for a few
seconds; an unchanged one is asserted after the change had time to land.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.lab import enforcement
from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

PORT = 8080
# kube-router re-syncs every policy on each change; with a few hundred policies from other
# tests and benchmarks on a loaded 2-core machine one sync can take 20 s or more.
SETTLE = 90.0


def eventually(check: Callable[[], bool], expected: bool, what: str,
               timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check() == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {not expected} after {timeout:.0f} s")
        time.sleep(0.5)


def _nodes(lab: LabClient) -> tuple[str, str]:
    names = [n.name for n in lab.spec.nodes]
    return names[0], names[-1]


def _server_and_client(lab: LabClient, ns: str, *, client: str = "client",
                       client_ns: str | None = None) -> str:
    first, last = _nodes(lab)
    lab.run_busybox(ns, "server", tcp_server_command(PORT), labels={"app": "server"},
                    node=first, ports=[PORT])
    lab.run_busybox(client_ns or ns, client, ["sleep", "3600"], labels={"app": "client"},
                    node=last)
    lab.wait_for_pod_running(client_ns or ns, client)
    return str(lab.wait_for_pod_running(ns, "server").status.pod_ip)


@pytest.fixture
def other_namespace(lab: LabClient, namespace: str) -> Iterator[str]:
    name = f"{namespace}-other"[:63]
    lab.core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + 30
    while True:
        try:
            lab.core.read_namespaced_service_account("default", name)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield name
    lab.core.delete_namespace(name, propagation_policy="Background")


DENY_INGRESS = {"metadata": {"name": "default-deny-ingress"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ALLOW_SAME_NAMESPACE = {"metadata": {"name": "allow-same-namespace"},
                        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                                 "ingress": [{"from": [{"podSelector": {}}]}]}}


def test_default_deny_ingress_only_bites_with_enforcement_on(
    lab: LabClient, namespace: str, other_namespace: str
) -> None:
    server_ip = _server_and_client(lab, namespace)
    lab.run_busybox(other_namespace, "stranger", ["sleep", "3600"], node=_nodes(lab)[0])
    lab.wait_for_pod_running(other_namespace, "stranger")

    def same_ns() -> bool:
        return lab.can_connect(namespace, "client", server_ip, PORT)

    def cross_ns() -> bool:
        return lab.can_connect(other_namespace, "stranger", server_ip, PORT)

    assert same_ns(), "no policy yet: the client must reach the server"
    with lab.enforcement(False):
        lab.networking.create_namespaced_network_policy(namespace, DENY_INGRESS)
        time.sleep(2)
        assert same_ns(), "enforcement off: a deny policy is accepted but not enforced"
        assert cross_ns()
    lab.set_enforcement(True)
    eventually(same_ns, False, "default-deny ingress with enforcement on")
    assert not cross_ns()

    lab.networking.create_namespaced_network_policy(namespace, ALLOW_SAME_NAMESPACE)
    eventually(same_ns, True, "allow-same-namespace re-opens same-namespace traffic")
    time.sleep(2)
    assert not cross_ns(), "allow-same-namespace must not admit other namespaces"


def test_metadata_endpoint_reachable_until_egress_policy_denies_it(
    lab: LabClient, namespace: str
) -> None:
    lab.set_enforcement(True)
    server_ip = _server_and_client(lab, namespace)
    url = "http://169.254.169.254/latest/meta-data/instance-id"

    def metadata() -> bool:
        result = lab.http_get(namespace, "client", url)
        return result.returncode == 0 and result.stdout.strip() != ""

    assert metadata(), "the lab metadata host must answer pods"
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "deny-metadata"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                 "except": ["169.254.169.254/32"]}}]}]},
    })
    eventually(metadata, False, "egress to 169.254.169.254 denied")
    assert lab.can_connect(namespace, "client", server_ip, PORT), \
        "denying the metadata endpoint must leave other egress alone"


def test_dns_resolves_until_egress_is_denied(lab: LabClient, namespace: str) -> None:
    lab.set_enforcement(True)
    lab.run_busybox(namespace, "client", ["sleep", "3600"])
    lab.wait_for_pod_running(namespace, "client")
    name = "kubernetes.default.svc.cluster.local"

    def resolves() -> bool:
        result = lab.resolve(namespace, "client", name)
        return result.returncode == 0 and "10.96.0.1" in result.stdout

    eventually(resolves, True, f"{name} resolves through the lab DNS", timeout=30)
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "deny-all-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    })
    eventually(resolves, False, "DNS with all egress denied")


def test_enforcement_off_leaves_no_kube_router_state(lab: LabClient) -> None:
    with lab.enforcement(False):
        for node in lab.spec.enforced_nodes():
            assert enforcement.chains(node.netns) == [], node.netns
            assert enforcement.ipsets(node.netns) == [], node.netns
        assert lab.enforcement_state == "off"
    with lab.enforcement(True):
        assert lab.enforcement_state == "on"
        for node in lab.spec.enforced_nodes():
            assert "KUBE-ROUTER-FORWARD" in enforcement.chains(node.netns)
