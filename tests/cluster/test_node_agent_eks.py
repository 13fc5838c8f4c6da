"""The EKS flavour (issue #15.4): pods wired the way the Amazon VPC CNI wires them, an inert
`kube-system/aws-node` DaemonSet for detection to read, and no enforcement until Calico's felix
programs the nodes.

The module switches the running lab to the eks flavour (the node agent restarts and re-registers
the Nodes; running pods restart as after a node reboot) and back to its previous shape at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from tests.lab import enforcement, network
from tests.lab import lab as lab_mod
from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

PORT = 8080


@pytest.fixture(scope="module")
def eks_lab(lab: LabClient) -> Iterator[LabClient]:
    before = lab_mod.load_spec()
    assert before is not None
    if before.flavor != "eks":
        with lab_mod.exclusive():
            lab_mod.up(lab_mod.make_spec("eks", len(before.nodes)), log=lambda _t: None)
    spec = lab_mod.load_spec()
    assert spec is not None
    try:
        yield LabClient(kubeconfig=lab.kubeconfig, spec=spec)
    finally:
        if before.flavor != "eks":
            with lab_mod.exclusive():
                lab_mod.up(lab_mod.make_spec(before.flavor, len(before.nodes), before.enforce),
                           log=lambda _t: None)


def test_eks_lab_starts_without_enforcement(eks_lab: LabClient, namespace: str) -> None:
    assert eks_lab.spec.flavor == "eks" and eks_lab.spec.enforce is False
    assert eks_lab.enforcement_state == "off"
    for node in eks_lab.spec.nodes:
        assert enforcement.chains(node.netns) == [], "kube-router chains in an EKS node"
    first, last = eks_lab.spec.nodes[0].name, eks_lab.spec.nodes[-1].name
    eks_lab.run_busybox(namespace, "server", tcp_server_command(PORT), labels={"app": "server"},
                        node=first, ports=[PORT])
    eks_lab.run_busybox(namespace, "client", ["sleep", "3600"], node=last)
    ip = str(eks_lab.wait_for_pod_running(namespace, "server").status.pod_ip)
    eks_lab.wait_for_pod_running(namespace, "client")
    assert eks_lab.can_connect(namespace, "client", ip, PORT)
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    eks_lab.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deny))
    time.sleep(5)  # long enough for an enforcer to act, were there one
    assert eks_lab.can_connect(namespace, "client", ip, PORT), "default-deny blocked on EKS"


def test_eks_pod_veths_are_named_like_the_vpc_cni(eks_lab: LabClient, namespace: str) -> None:
    node = eks_lab.spec.nodes[-1]
    eks_lab.run_busybox(namespace, "web", ["sleep", "3600"], node=node.name)
    pod = eks_lab.wait_for_pod_running(namespace, "web")
    veth = "eni" + hashlib.sha1(f"{namespace}.web".encode()).hexdigest()[:11]
    assert network.eni_veth_name(namespace, "web") == veth
    routes = network._run([network.IP, "-n", node.netns, "-4", "route", "show", "dev", veth])
    assert f"{pod.status.pod_ip} scope link" in routes.stdout, routes.stdout
    # The node-side end is the pod's own eth0 peer: traffic to the pod leaves through it.
    got = network._run([network.IP, "-n", node.netns, "route", "get", pod.status.pod_ip]).stdout
    assert f"dev {veth}" in got, got


def test_aws_node_daemonset_runs_on_every_node(eks_lab: LabClient) -> None:
    deadline = time.monotonic() + 60
    while True:
        ds = eks_lab.apps.read_namespaced_daemon_set("aws-node", "kube-system")
        st = ds.status
        want = len(eks_lab.spec.nodes)
        if st.desired_number_scheduled == want and st.number_ready == want:
            break
        assert time.monotonic() < deadline, f"aws-node not ready: {st}"
        time.sleep(0.5)
    containers = ds.spec.template.spec.containers
    assert [c.name for c in containers] == ["aws-node", "aws-eks-nodeagent"]
    assert "amazon-k8s-cni" in containers[0].image
    assert "--enable-network-policy=false" in containers[1].args
    pods = eks_lab.core.list_namespaced_pod("kube-system", label_selector="k8s-app=aws-node")
    nodes = sorted(p.spec.node_name for p in pods.items)
    assert nodes == sorted(n.name for n in eks_lab.spec.nodes)
    ips = {p.status.pod_ip for p in pods.items}
    assert ips == {n.ip for n in eks_lab.spec.nodes}, "aws-node is hostNetwork: podIP = node IP"
