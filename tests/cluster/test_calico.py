"""The real Tigera operator and Calico's own felix in an EKS-flavoured lab.

netiso's EKS path installs Calico through the Tigera operator, so these tests run the real
operator (v1.42.3, from the upstream manifests in the project's shared directory) and the real
Calico v3.32.1 components it deploys (built by tests/lab/build.py, mapped by tests/lab/images.py):
the operator decides whether an Installation is valid and when Calico is Available, and felix's
rules decide whether packets pass. Every verdict here is real TCP between lab pods.

The tests need a lab of the EKS flavour without enforcement (pods look like the VPC CNI made them,
no kube-router), which is not the shape the rest of tests/cluster runs in, so scripts/test runs
this file as its own step with ``NETISO_LAB_FLAVOR=eks`` (its session starts that lab and takes it
down, felix's state with the node namespaces). The tests run in file order and share one
install: no enforcement, install, a rejected spec, uninstall (after which felix's rules stay, as
on a real node: see the last test).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.lab import build
from tests.lab.client import LabClient, tcp_server_command

pytestmark = pytest.mark.lab

T = TypeVar("T")

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
---
apiVersion: operator.tigera.io/v1
kind: APIServer
metadata:
  name: default
spec: {}
"""
# An Installation the real operator rejects: the AmazonVPC CNI on another provider. The words are
# the operator's own (pkg/controller/installation/validation.go), which TigeraStatus must carry.
# Rejections with side effects were avoided: BGP Enabled is checked per IP pool (an AmazonVPC
# install has none, so the operator rolls calico-node out with BIRD), and Calico IPAM makes the
# operator default an IP pool it cannot delete again without the Calico API server.
REJECTED_PATCH = '{"spec":{"kubernetesProvider":"GKE"}}'
RESTORE_PATCH = '{"spec":{"kubernetesProvider":"EKS"}}'
REJECTION = ("Invalid Installation provided: spec.kubernetesProvider GKE is not compatible with "
             "spec.cni.type AmazonVPC")
PORT = 8080
# The TigeraStatus objects of an Installation plus an APIServer. The operator's tiers controller
# (pkg/controller/tiers) creates Calico's tiers through projectcalico.org/v3, which only Calico's
# aggregated API server serves: without the APIServer resource the real operator keeps "tiers"
# Degraded ("Waiting for Tigera API server to be ready") on any cluster, so the install here is
# the upstream one (custom-resources.yaml has both resources) and every status must be Available.
STATUSES = {"apiserver", "calico", "ippools", "tiers"}
# The release's own files (the shared directory's README pins them).
MANIFEST_SHA256 = {
    "operator-crds.yaml": "192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71",
    "tigera-operator.yaml": "f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f",
}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _wait(what: str, probe: Callable[[], T | None], timeout: float, *,
          interval: float = 1.0, detail: Callable[[], str] | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{extra}")
        time.sleep(interval)


@dataclass(frozen=True)
class Pair:
    """A server pod on one node and its client pod on the other."""

    server: str
    client: str
    server_ip: str
    node: str


@pytest.fixture(scope="module")
def eks(lab: LabClient) -> LabClient:
    if lab.spec.flavor != "eks" or lab.spec.enforce:
        message = (f"needs an EKS-flavoured lab without enforcement (running: "
                   f"{lab.spec.flavor}, enforce={lab.spec.enforce}); scripts/test runs this file "
                   f"with NETISO_LAB_FLAVOR=eks")
        if _ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    for name, digest in MANIFEST_SHA256.items():
        path = MANIFESTS / name
        assert path.is_file(), f"{path} missing (set NETISO_SHARED_DIR)"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path}: not the release"
    return lab


@pytest.fixture(scope="module")
def pairs(eks: LabClient) -> Iterator[tuple[str, list[Pair]]]:
    """One namespace, a server and a client per node (client on the other node)."""
    ns = f"t-calico-{uuid.uuid4().hex[:5]}"
    eks.core.create_namespace({"metadata": {"name": ns, "labels": {"netiso-lab/test": "true"}}})
    _wait("default ServiceAccount", lambda: _has_default_sa(eks, ns), 30, interval=0.2)
    nodes = [n.name for n in eks.spec.nodes]
    assert len(nodes) == 2, "the Calico tests need the lab's two nodes"
    made: list[tuple[str, str, str]] = []
    for i, node in enumerate(nodes):
        other = nodes[1 - i]
        server, client = f"srv-{i + 1}", f"cli-{i + 1}"
        eks.run_busybox(ns, server, tcp_server_command(PORT), labels={"app": server},
                        node=node, ports=(PORT,))
        eks.run_busybox(ns, client, ["sleep", "3600"], labels={"role": client}, node=other)
        made.append((server, client, node))
    result = []
    for server, client, node in made:
        pod = eks.wait_for_pod_running(ns, server)
        eks.wait_for_pod_running(ns, client)
        result.append(Pair(server, client, pod.status.pod_ip, node))
    try:
        yield ns, result
    finally:
        eks.core.delete_namespace(ns, propagation_policy="Background")


def _has_default_sa(lab: LabClient, ns: str) -> bool:
    try:
        lab.core.read_namespaced_service_account("default", ns)
    except Exception:
        return False
    return True


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
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"role": pair.client}}}],
                "ports": [{"protocol": "TCP", "port": PORT}],
            }],
        },
    })


def _connects(lab: LabClient, ns: str, pair: Pair) -> bool:
    return lab.can_connect(ns, pair.client, pair.server_ip, PORT)


def _until_connect(lab: LabClient, ns: str, pair: Pair, want: bool, timeout: float,
                   why: str) -> None:
    _wait(f"{pair.client} -> {pair.server} ({pair.node}) {'open' if want else 'blocked'} {why}",
          lambda: _connects(lab, ns, pair) is want, timeout, interval=0.5,
          detail=lambda: _calico_state(lab))


def _kubectl_json(lab: LabClient, *args: str) -> Any:
    proc = lab.kubectl(*args, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def _tigera_statuses(lab: LabClient) -> dict[str, dict[str, dict[str, str]]]:
    """name -> condition type -> condition (status, reason, message)."""
    listing = _kubectl_json(lab, "get", "tigerastatus")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for item in (listing or {}).get("items", []):
        conditions = (item.get("status") or {}).get("conditions") or []
        out[item["metadata"]["name"]] = {c["type"]: c for c in conditions}
    return out


def _all_available(lab: LabClient) -> dict[str, dict[str, dict[str, str]]] | None:
    """Every TigeraStatus (at least STATUSES) Available=True; None until then."""
    statuses = _tigera_statuses(lab)
    if not set(statuses) >= STATUSES:
        return None
    for conditions in statuses.values():
        if conditions.get("Available", {}).get("status") != "True":
            return None
    return statuses


def _calico_state(lab: LabClient) -> str:
    """What a failure message needs: TigeraStatus and calico-system's pods, with reasons."""
    lines = [f"tigerastatus: {json.dumps(_tigera_statuses(lab), sort_keys=True)}"]
    for ns in ("tigera-operator", "calico-system"):
        pods = _kubectl_json(lab, "get", "pods", "-n", ns) or {}
        for pod in pods.get("items", []):
            states = [
                (s["name"], s.get("ready"), s.get("restartCount"), s.get("state"))
                for s in (pod.get("status") or {}).get("containerStatuses") or []
            ]
            lines.append(f"{ns}/{pod['metadata']['name']} {pod['status'].get('phase')} {states}")
    return "\n".join(lines)


def _workloads(lab: LabClient) -> list[str]:
    names = []
    for kind in ("daemonsets", "deployments", "pods"):
        listing = _kubectl_json(lab, "get", kind, "-n", "calico-system") or {}
        names += [f"{kind}/{i['metadata']['name']}" for i in listing.get("items", [])]
    return names


def test_eks_lab_without_enforcement_does_not_block(
    eks: LabClient, pairs: tuple[str, list[Pair]]
) -> None:
    ns, both = pairs
    assert eks.enforcement_state == "off"
    _default_deny(eks, ns)
    # Give any enforcer the time it would need to act on the policy; none should exist.
    time.sleep(3)
    for pair in both:
        assert _connects(eks, ns, pair), f"{pair.client} -> {pair.server}: blocked without Calico"


def test_operator_installs_calico_and_felix_enforces(
    eks: LabClient, pairs: tuple[str, list[Pair]]
) -> None:
    ns, both = pairs
    # `create`, not client-side `apply`: the CRD file's largest objects exceed the size of the
    # last-applied annotation.
    eks.kubectl("create", "-f", str(MANIFESTS / "operator-crds.yaml"), timeout=120)
    eks.kubectl("create", "-f", str(MANIFESTS / "tigera-operator.yaml"), timeout=120)
    eks.kubectl("create", "-f", "-", input=INSTALLATION)
    started = time.monotonic()
    statuses = _wait("every TigeraStatus Available=True",
                     lambda: _all_available(eks), 180, interval=2,
                     detail=lambda: _calico_state(eks))
    print(f"TigeraStatus {sorted(statuses)} Available after {time.monotonic() - started:.0f} s")
    for name, conditions in statuses.items():
        assert conditions.get("Degraded", {}).get("status") != "True", (name, conditions)
    # "tiers" Available means the operator wrote its tier through projectcalico.org/v3: the lab's
    # API server proxied to Calico's (aggregation, through its egress selector to the pod IP).
    tiers = _kubectl_json(eks, "get", "tiers.projectcalico.org")
    assert tiers is not None, "projectcalico.org/v3 is not served"
    assert {"default", "calico-system"} <= {t["metadata"]["name"] for t in tiers["items"]}, tiers
    # The default-deny from the previous test is in place; now felix enforces it, on each node.
    for pair in both:
        _until_connect(eks, ns, pair, False, 60, "by the default-deny under Calico")
    for pair in both:
        _allow(eks, ns, pair)
    for pair in both:
        _until_connect(eks, ns, pair, True, 60, "by the allow for its client")


def test_installation_the_operator_rejects_is_degraded(
    eks: LabClient, pairs: tuple[str, list[Pair]]
) -> None:
    assert _all_available(eks), "needs the Installation of the previous test"
    eks.kubectl("patch", "installation", "default", "--type=merge", "-p", REJECTED_PATCH)

    def degraded() -> dict[str, str] | None:
        condition = _tigera_statuses(eks).get("calico", {}).get("Degraded", {})
        return condition if condition.get("status") == "True" else None

    condition = _wait("TigeraStatus calico Degraded=True", degraded, 60,
                      detail=lambda: _calico_state(eks))
    assert condition.get("message") == REJECTION, condition
    assert condition.get("reason") == "InvalidConfigurationError", condition
    eks.kubectl("patch", "installation", "default", "--type=merge", "-p", RESTORE_PATCH)
    _wait("every TigeraStatus Available=True again", lambda: _all_available(eks), 180,
          interval=2, detail=lambda: _calico_state(eks))


def test_deleting_the_installation_removes_calico_but_felix_rules_stay(
    eks: LabClient, pairs: tuple[str, list[Pair]]
) -> None:
    """Deleting the Installation (and the APIServer, as upstream's uninstall deletes both)
    removes calico-system's workloads; felix's rules do not go.

    Felix never removes its iptables chains when it stops (calico-node's preStop `-shutdown`
    only records a timestamp and node conditions), so on a real node, as here, the chains it
    programmed keep enforcing the last policies it saw until the node is rebooted or replaced.
    The issue expected enforcement to go away with the Installation; the real components say
    otherwise, and this test pins what they do, then replaces the nodes' felix state as a node
    replacement would, after which enforcement is gone.
    """
    ns, both = pairs
    assert _workloads(eks), "needs the Installation of the previous tests"
    for pair in both:
        eks.networking.delete_namespaced_network_policy(f"allow-{pair.server}", ns)
    for pair in both:
        _until_connect(eks, ns, pair, False, 60, "by the default-deny alone")
    eks.kubectl("delete", "apiserver.operator.tigera.io,installation.operator.tigera.io",
                "default", timeout=180)
    _wait("calico-system's DaemonSets, Deployments and pods gone",
          lambda: not _workloads(eks), 180, interval=2,
          detail=lambda: f"left: {_workloads(eks)}")
    assert not _calico_node_processes(), "calico-node still runs after its pods are gone"
    # An aggregated API left behind without its server breaks discovery, and with it namespace
    # deletion (NamespaceDeletionDiscoveryFailure): the APIServer's objects must go with it.
    _wait("APIService v3.projectcalico.org gone",
          lambda: _kubectl_json(eks, "get", "apiservice", "v3.projectcalico.org") is None, 120,
          interval=2)
    for node in eks.spec.nodes:
        rules = subprocess.run(["ip", "netns", "exec", node.netns, "iptables-save"],
                               capture_output=True, text=True, check=True, timeout=30).stdout
        assert "-A FORWARD -m comment --comment \"cali:" in rules, f"{node.name}: felix's hook"
    time.sleep(5)
    for pair in both:
        assert not _connects(eks, ns, pair), (
            f"{pair.client} -> {pair.server}: felix's rules stopped blocking without felix")
    # What clears them on EKS: the nodes replaced (or rebooted), as Calico's uninstall guide
    # says. Then enforcement is gone: the same default-deny blocks nothing.
    eks.replace_nodes_felix_state()
    for pair in both:
        _until_connect(eks, ns, pair, True, 30, "with felix's rules gone with the nodes")


def _calico_node_processes() -> list[str]:
    target = str(build.binary("calico-node"))
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.readlink(f"/proc/{pid}/exe") == target:
                found.append(pid)
        except OSError:
            continue
    return found
