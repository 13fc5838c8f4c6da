"""The lab's doubles of the clouds' managed policy engines (tests/lab/engines.py, issues #10-#12).

In each cloud's flavour the lab starts without enforcement; the engines switch (what a cloud test
server calls when its operation completes) brings up that cloud's engine DaemonSet, whose pods run
kube-router for their node, and turning it off takes enforcement away again. Every verdict is real
TCP between lab pods, on both nodes (a server on each node, its client on the other); detection
(`netiso detect -o json`) must see the engine the way it sees it on the cloud.

The module switches the running lab's flavour (gke, aks, eks) and puts it back at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.lab import controlplane, enforcement, engine_double, engines
from tests.lab import lab as lab_mod
from tests.lab.client import LabClient, tcp_server_command
from tests.lab.kubeapi import Kube

pytestmark = pytest.mark.lab

PORT = 8080
# One policy change lands in well under a second on an idle lab; a loaded 2-core machine with
# other tests' policies can take far longer (see test_lab_enforcement.SETTLE).
SETTLE = 90.0


def flavour(name: str) -> None:
    current = lab_mod.load_spec()
    assert current is not None
    if current.flavor != name or current.enforce:
        with lab_mod.exclusive():
            # The flavour's default: no lab enforcement for the clouds.
            lab_mod.up(lab_mod.make_spec(flavor=name, node_count=len(current.nodes)),
                       log=lambda _text: None)
    spec = lab_mod.load_spec()
    assert spec is not None and spec.flavor == name and not spec.enforce, spec


@pytest.fixture(scope="module", autouse=True)
def _restore_flavour(lab: LabClient) -> Iterator[None]:
    before = lab_mod.load_spec()
    assert before is not None
    yield
    with lab_mod.exclusive():
        lab_mod.up(lab_mod.make_spec(before.flavor, len(before.nodes), before.enforce),
                   log=lambda _text: None)


@pytest.fixture(scope="module")
def kube(lab: LabClient) -> Kube:
    return Kube(str(lab.kubeconfig))


@dataclass(frozen=True)
class Pair:
    server: str
    client: str
    server_ip: str
    node: str


def _pairs(lab: LabClient, ns: str) -> list[Pair]:
    """A server on each node, its client on the other node."""
    nodes = [n.name for n in lab.spec.nodes]
    assert len(nodes) == 2, "these tests need the lab's two nodes"
    for i, node in enumerate(nodes):
        lab.run_busybox(ns, f"srv-{i + 1}", tcp_server_command(PORT),
                        labels={"app": f"srv-{i + 1}"}, node=node, ports=(PORT,))
        lab.run_busybox(ns, f"cli-{i + 1}", ["sleep", "3600"], labels={"role": f"cli-{i + 1}"},
                        node=nodes[1 - i])
    out = []
    for i, node in enumerate(nodes):
        pod = lab.wait_for_pod_running(ns, f"srv-{i + 1}")
        lab.wait_for_pod_running(ns, f"cli-{i + 1}")
        out.append(Pair(f"srv-{i + 1}", f"cli-{i + 1}", str(pod.status.pod_ip), node))
    return out


def _default_deny(lab: LabClient, ns: str) -> None:
    lab.networking.create_namespaced_network_policy(ns, {
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })


def _allow(lab: LabClient, ns: str, pair: Pair) -> None:
    lab.networking.create_namespaced_network_policy(ns, {
        "metadata": {"name": f"allow-{pair.server}"},
        "spec": {
            "podSelector": {"matchLabels": {"app": pair.server}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": pair.client}}}],
                         "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    })


def _until(what: str, check: Callable[[], bool], timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)


def _all(lab: LabClient, ns: str, pairs: list[Pair], want: bool, why: str) -> None:
    for pair in pairs:
        def connects(p: Pair = pair) -> bool:
            return lab.can_connect(ns, p.client, p.server_ip, PORT) is want

        _until(f"{pair.client} -> {pair.server} on {pair.node} {'open' if want else 'blocked'} "
               f"{why}", connects)


def _detect(lab: LabClient) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "netiso", "--kubeconfig", str(lab.kubeconfig),
                          "-o", "json", "detect"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _engines_seen(lab: LabClient) -> dict[tuple[str, str], tuple[int, int]]:
    doc = _detect(lab)
    return {(e["engine"], e["daemonset"]): (e["ready"], e["desired"])
            for e in doc["enforcement"]["engines"]}


def _until_detected(lab: LabClient, engine: str, daemonset: str) -> dict[str, Any]:
    """Detection reports the engine with every node's pod ready (DaemonSet status lags)."""
    nodes = len(lab.spec.nodes)
    _until(f"detect reports {engine} in {daemonset} ready {nodes}/{nodes}",
           lambda: _engines_seen(lab).get((engine, daemonset)) == (nodes, nodes), 60)
    doc = _detect(lab)
    assert doc["enforcement"]["status"] == "enforcing", doc["enforcement"]
    return doc


def _no_lab_enforcement(lab: LabClient) -> None:
    for node in lab.spec.nodes:
        assert controlplane.running(enforcement.process_name(
            enforcement.EnforcedNode(node.name, node.netns))) is None
        assert enforcement.chains(node.netns) == [], f"kube-router chains in {node.netns}"


def _cycle(lab: LabClient, kube: Kube, ns: str, on: Callable[[], None],
           off: Callable[[], None], engine: str, daemonset: str) -> list[Pair]:
    """Off: a default-deny blocks nothing. On: it blocks, an allow opens, removing the allow
    blocks again. Off again: nothing blocks. Detection sees the engine while it is on."""
    _no_lab_enforcement(lab)
    pairs = _pairs(lab, ns)
    _default_deny(lab, ns)
    time.sleep(3)  # long enough for an enforcer to act, were there one
    for pair in pairs:
        assert lab.can_connect(ns, pair.client, pair.server_ip, PORT), \
            f"{pair.client} -> {pair.server}: blocked before the cloud turned policy on"
    assert (engine, daemonset) not in _engines_seen(lab)

    on()
    engines.wait_enforcing(kube, timeout=120)
    _all(lab, ns, pairs, False, "by the default-deny once the engine runs")
    _until_detected(lab, engine, daemonset)
    for pair in pairs:
        _allow(lab, ns, pair)
    _all(lab, ns, pairs, True, "by the allow for its client")
    for pair in pairs:
        lab.networking.delete_namespaced_network_policy(f"allow-{pair.server}", ns)
    _all(lab, ns, pairs, False, "again once the allows are gone")

    off()
    engines.wait_not_enforcing(kube, timeout=120)
    _all(lab, ns, pairs, True, "once the engine is off (the default-deny is still there)")
    assert (engine, daemonset) not in _engines_seen(lab)
    _no_lab_enforcement(lab)
    return pairs


def test_enabling_refuses_beside_the_labs_own_enforcement(lab: LabClient, kube: Kube) -> None:
    flavour("gke")
    # The module-level lab_mod calls, not LabClient's: its spec is the session's, not gke's.
    with lab_mod.exclusive():
        lab_mod.set_enforcement(True, log=lambda _text: None)
    try:
        with pytest.raises(engines.EngineError, match="the lab's own enforcement runs on"):
            engines.gke_network_policy(kube, True)
    finally:
        with lab_mod.exclusive():
            lab_mod.set_enforcement(False, log=lambda _text: None)
    assert _engines_seen(lab) == {}
    with pytest.raises(engines.EngineError, match="unknown AKS network policy 'kubenet'"):
        engines.aks_network_policy(kube, "kubenet")
    with pytest.raises(engines.EngineError, match="kube-system/aws-node does not exist"):
        engines.eks_policy_agent(kube, True)


def _calico_readiness_follows_the_first_sync(lab: LabClient) -> None:
    """calico-node's readiness probe (`/bin/calico-node -felix-ready`) passes only while the
    double's first-sync mark is there: without it, the DaemonSet counts one pod less ready."""
    pods = lab.core.list_namespaced_pod("kube-system", label_selector="k8s-app=calico-node")
    pod = sorted(p.metadata.name for p in pods.items)[0]
    mark = engine_double.SYNCED_FILE
    nodes = len(lab.spec.nodes)
    assert lab.exec_in_pod("kube-system", pod, ["rm", mark]).returncode == 0
    _until("calico-node ready one less without the mark",
           lambda: _engines_seen(lab).get(("calico", "kube-system/calico-node")) ==
           (nodes - 1, nodes), 60)
    assert lab.exec_in_pod("kube-system", pod, ["touch", mark]).returncode == 0
    _until("calico-node ready again", lambda: _engines_seen(lab).get(
        ("calico", "kube-system/calico-node")) == (nodes, nodes), 60)


def test_gke_network_policy_brings_up_gkes_calico(lab: LabClient, kube: Kube,
                                                  namespace: str) -> None:
    flavour("gke")

    def on() -> None:
        engines.gke_network_policy(kube, True)
        engines.gke_network_policy(kube, True)  # idempotent

    def off() -> None:
        _calico_readiness_follows_the_first_sync(lab)
        engines.gke_network_policy(kube, False)

    _cycle(lab, kube, namespace, on, off, "calico", "kube-system/calico-node")
    engines.gke_network_policy(kube, False)  # idempotent: nothing left to delete


def test_aks_network_policies_bring_up_their_engines(lab: LabClient, kube: Kube,
                                                     namespace: str) -> None:
    flavour("aks")
    pairs = _cycle(lab, kube, namespace, lambda: engines.aks_network_policy(kube, "azure"),
                   lambda: engines.aks_network_policy(kube, "none"), "azure-npm",
                   "kube-system/azure-npm")
    # AKS's Calico and Cilium: the default-deny (still in place) blocks under each, detection
    # names each, and switching replaces one engine with the other.
    for policy, engine, daemonset in (("calico", "calico", "calico-system/calico-node"),
                                      ("cilium", "cilium", "kube-system/cilium")):
        engines.aks_network_policy(kube, policy)
        engines.aks_network_policy(kube, policy)  # idempotent
        engines.wait_enforcing(kube, timeout=120)
        _all(lab, namespace, pairs, False, f"by the default-deny under AKS {policy}")
        _until_detected(lab, engine, daemonset)
        seen = {e for e, _d in _engines_seen(lab)}
        assert seen == {engine}, seen
    engines.aks_network_policy(kube, "none")
    engines.wait_not_enforcing(kube, timeout=120)
    _all(lab, namespace, pairs, True, "once AKS's network policy is none")
    assert _engines_seen(lab) == {}


def test_eks_policy_agent_enforces_when_the_add_on_enables_it(lab: LabClient, kube: Kube,
                                                              namespace: str) -> None:
    flavour("eks")
    _cycle(lab, kube, namespace, lambda: engines.eks_policy_agent(kube, True),
           lambda: engines.eks_policy_agent(kube, False), "aws-network-policy-agent",
           "kube-system/aws-node")
    ds = lab.apps.read_namespaced_daemon_set("aws-node", "kube-system")
    (agent,) = [c for c in ds.spec.template.spec.containers if c.name == "aws-eks-nodeagent"]
    # The other args kept, the flag once, and the add-on's field manager owns the args.
    assert agent.args.count("--enable-network-policy=false") == 1, agent.args
    assert "--enable-ipv6=false" in agent.args and "--metrics-bind-addr=:8162" in agent.args
    managers = {m.manager for m in ds.metadata.managed_fields}
    assert "eks" in managers, managers
