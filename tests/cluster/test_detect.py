"""`netiso detect` and `--provider auto` against the lab, in each of its flavours.

The lab's `up --flavor` re-registers its nodes with that flavour's providerID, labels and kubelet
version (tests/lab/node_agent.py `node_look`): what detection reads from a managed cluster's
nodes. Each test that changes the flavour puts the lab back the way it found it, so later tests
see the lab they expect (generic, unless the session started another).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.lab import lab as lab_mod
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
SCHEMA = json.loads(
    files("netiso.manifests").joinpath("schemas", "detect.schema.json").read_text("utf-8"))
# Run detect and report which cloud SDK modules the process loaded on the way.
DETECT_AND_MODULES = (
    "import sys\n"
    "from netiso.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "sdk = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')\n"
    "             or m.startswith('google.cloud'))\n"
    "sys.stderr.write(f'SDK MODULES {sdk}\\n')\n"
    "sys.exit(code)\n"
)


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def flavour(name: str) -> None:
    """Re-register the lab's nodes as ``name`` (nothing to do when it already is).

    Not restored per test: every `up` that re-registers restarts the node agent, so the tests
    below are ordered to switch as little as possible, and ``_restore_flavour`` puts the lab back
    once, at the end of the module.
    """
    current = lab_mod.load_spec()
    assert current is not None
    if current.flavor != name:
        with lab_mod.exclusive():
            # Enforcement as the lab's default for that flavour: these tests send no traffic.
            lab_mod.up(lab_mod.make_spec(flavor=name, node_count=len(current.nodes)),
                       log=lambda _text: None)


@pytest.fixture(scope="module", autouse=True)
def _restore_flavour(lab: LabClient) -> Iterator[None]:
    before = lab_mod.load_spec()
    assert before is not None
    yield
    flavour(before.flavor)


def detect_json(lab: LabClient) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", DETECT_AND_MODULES, "--kubeconfig",
                          str(lab.kubeconfig), "-o", "json", "detect"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "SDK MODULES []" in out.stderr  # detection loads no cloud SDK
    doc: dict[str, Any] = json.loads(out.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


EXPECTED_IDENTITY = {
    "eks": {"region": "us-west-2"},
    "gke": {"project": "netiso-lab", "zone": "us-central1-a", "region": "us-central1"},
    "aks": {"subscription": "00000000-0000-0000-0000-000000000000",
            "nodeResourceGroup": "mc_netiso-lab_lab_westeurope", "region": "westeurope",
            "resourceGroup": "netiso-lab", "clusterName": "lab"},
    "generic": {},
}
PROVIDER_ID_PREFIX = {"eks": "aws:///us-west-2a/", "gke": "gce://netiso-lab/us-central1-a/",
                      "aks": "azure:///subscriptions/00000000-0000-0000-0000-000000000000/"}
KUBELET_MARK = {"eks": "-eks-", "gke": "-gke."}


def _engine_daemonset(namespace: str, name: str, containers: list[dict[str, Any]]
                      ) -> dict[str, Any]:
    # A node selector no lab node matches: the object is what detection reads, no pod runs.
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"netiso-test/no-such-node": "true"},
                         "containers": containers},
            },
        },
    }


def test_engine_daemonsets_are_read_in_any_namespace(lab: LabClient, namespace: str) -> None:
    lab.apps.create_namespaced_daemon_set(namespace, _engine_daemonset(
        namespace, "calico-node", [{"name": "calico-node", "image": "calico/node:v3.32.1"}]))
    aws_node = _engine_daemonset("kube-system", "aws-node", [
        {"name": "aws-node", "image": "amazon-k8s-cni:v1.19.0"},
        {"name": "aws-eks-nodeagent", "image": "aws-network-policy-agent:v1.1.5",
         "args": ["--enable-ipv6=false", "--enable-network-policy=true"]},
    ])
    flavour("generic")
    try:
        lab.apps.create_namespaced_daemon_set("kube-system", aws_node)
        doc = detect_json(lab)
    finally:
        lab.apps.delete_namespaced_daemon_set("aws-node", "kube-system")
    after = detect_json(lab)
    # Deleted now, not with the namespace later: the next tests expect no engine DaemonSet.
    lab.apps.delete_namespaced_daemon_set("calico-node", namespace)
    engines = {(e["engine"], e["daemonset"], e["ready"]) for e in doc["enforcement"]["engines"]}
    assert engines == {("calico", f"{namespace}/calico-node", 0),
                       ("aws-network-policy-agent", "kube-system/aws-node", 0)}
    assert doc["enforcement"]["status"] == "not-ready"
    # The VPC CNI's DaemonSet is EKS evidence (cluster-side) on otherwise plain nodes.
    assert doc["provider"] == "eks"
    (aws,) = [e for e in doc["evidence"] if e["source"] == "daemonset kube-system/aws-node"]
    assert aws["said"] == ("ready 0/0, container aws-eks-nodeagent "
                           "--enable-network-policy=true")
    assert (aws["strength"], aws["engine"]) == ("workload", "aws-network-policy-agent")
    assert after["provider"] == "generic"
    assert [e["engine"] for e in after["enforcement"]["engines"]] == ["calico"]


def test_reads_an_identity_may_not_make_are_missing_evidence_not_errors(
        lab: LabClient, namespace: str) -> None:
    # A ServiceAccount with no role at all: it may read /version, not nodes or DaemonSets.
    kubeconfig = lab.service_account_kubeconfig(namespace, "no-rights")
    out = netiso(lab, "-o", "json", "detect", kubeconfig=kubeconfig)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["provider"] == "generic"
    assert doc["kubernetesVersion"] == {"server": "v1.37.2", "kubelets": []}
    assert [u.split(" (", 1)[0] for u in doc["unreadable"]] == ["nodes: forbidden",
                                                                "daemonsets: forbidden"]
    assert doc["reason"] == ("no cluster-side provider evidence; could not read nodes, "
                             "daemonsets")
    assert "warning could not read nodes: forbidden" in out.stderr


# Ordered to switch as little as possible: generic (the lab as the session found it, normally),
# gke, aks, then eks, which the --provider tests below keep using.
@pytest.mark.parametrize("name", ["generic", "gke", "aks", "eks"])
def test_detect_each_flavour(lab: LabClient, name: str) -> None:
    flavour(name)
    doc = detect_json(lab)
    nodes = len(lab.core.list_node().items)
    table = netiso(lab, "detect")
    assert doc["provider"] == name
    assert doc["identity"] == EXPECTED_IDENTITY[name]
    assert doc["server"] == "https://10.250.0.1:6443"
    assert doc["kubernetesVersion"]["server"] == "v1.37.2"
    assert doc["unreadable"] == []
    # The lab's kube-router runs as processes in the node netns, not as a DaemonSet: detection
    # (which reads DaemonSets) honestly sees no engine.
    assert doc["enforcement"] == {"status": "none-seen", "engines": []}
    kubelets = doc["kubernetesVersion"]["kubelets"]
    assert len(kubelets) == 1 and kubelets[0].startswith("v1.37.2")
    if name == "generic":
        assert doc["evidence"] == []
        assert doc["reason"] == "no cluster-side provider evidence"
    else:
        first = doc["evidence"][0]
        assert first["source"] == f"node spec.providerID ({nodes} of {nodes} nodes)"
        assert first["said"].startswith(PROVIDER_ID_PREFIX[name])
        assert {e["provider"] for e in doc["evidence"]} == {name}
        assert doc["reason"].endswith(f"point to {name}, none elsewhere")
        if name in KUBELET_MARK:
            assert KUBELET_MARK[name] in kubelets[0]
            assert any(e["strength"] == "version" for e in doc["evidence"])
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"provider     {name}\n")
    assert f"detected provider {name}: " in table.stderr


def _egress(lab: LabClient, namespace: str) -> Any:
    return lab.networking.read_namespaced_network_policy(
        "netiso-deny-metadata-egress", namespace).spec.egress


def test_provider_auto_gives_an_eks_cluster_the_eks_bundle(lab: LabClient, namespace: str
                                                           ) -> None:
    flavour("eks")
    applied = netiso(lab, "-o", "json", "apply", "-n", namespace)
    assert applied.returncode == 0, applied.stderr
    assert re.search(r"detected provider eks \(\d+ cluster-side signals point to eks, "
                     r"none elsewhere\); pass --provider to override", applied.stderr)
    egress = _egress(lab, namespace)
    # The live object: IMDS denied on IPv4 and IPv6, the Pod Identity agent allowed.
    blocks = {r.ip_block.cidr: r.ip_block._except for rule in egress for r in rule.to or []
              if r.ip_block is not None}
    assert blocks["0.0.0.0/0"] == ["169.254.169.254/32"]
    assert blocks["::/0"] == ["fd00:ec2::254/128"]
    pod_identity = [rule for rule in egress
                    if any(r.ip_block is not None and r.ip_block.cidr == "169.254.170.23/32"
                           for r in rule.to or [])]
    assert len(pod_identity) == 1
    assert [(p.protocol, p.port) for p in pod_identity[0].ports] == [("TCP", 80)]

    status = netiso(lab, "-o", "json", "status", "-n", namespace)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["inSync"] is True
    assert "detected provider eks" in status.stderr

    # render stays offline (generic) unless auto is asked for; then it reads the cluster.
    offline = netiso(lab, "render", "-n", namespace)
    auto = netiso(lab, "render", "--provider", "auto", "-n", namespace)
    eks = netiso(lab, "render", "--provider", "eks", "-n", namespace)
    assert auto.returncode == offline.returncode == eks.returncode == 0
    assert auto.stdout == eks.stdout != offline.stdout
    assert "detected provider eks" in auto.stderr and "detected" not in offline.stderr


def test_a_provider_contradicting_the_cluster_is_exit_4_unless_forced(
        lab: LabClient, namespace: str) -> None:
    flavour("eks")
    assert netiso(lab, "apply", "-n", namespace).returncode == 0
    before = {p.metadata.name: p.metadata.resource_version for p in
              lab.networking.list_namespaced_network_policy(namespace).items}

    refused = netiso(lab, "apply", "--provider", "generic", "-n", namespace)
    assert refused.returncode == 4
    assert refused.stdout == ""
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("netiso: error: --provider generic contradicts the cluster, which "
                           "looks like eks (node spec.providerID (")
    assert last.endswith("(use --provider eks or auto, or pass --force to use generic "
                         "anyway)")
    assert "Traceback" not in refused.stderr
    assert {p.metadata.name: p.metadata.resource_version for p in
            lab.networking.list_namespaced_network_policy(namespace).items} == before
    assert netiso(lab, "status", "--provider", "gke", "-n", namespace).returncode == 4

    forced = netiso(lab, "apply", "--provider", "generic", "--force", "-n", namespace)
    assert forced.returncode == 0, forced.stderr
    assert "warning provider generic (--provider, forced over the detected eks" \
        in forced.stderr
    blocks = {r.ip_block.cidr: r.ip_block._except for rule in _egress(lab, namespace)
              for r in rule.to or [] if r.ip_block is not None}
    assert blocks["::/0"] is None  # the generic bundle: no IPv6 metadata deny
    assert "169.254.170.23/32" not in blocks
