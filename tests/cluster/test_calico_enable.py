"""`netiso enable --provider eks` end to end: the EKS test server and the EKS-flavoured lab.

The EKS API is tests/servers/eks.py (moto plus the add-on API, in-process, reached by netiso's
real boto3 through ``AWS_ENDPOINT_URL_EKS``); Calico is the real Tigera operator and felix of
the lab; ``--engine vpc-cni`` ends in the lab's double of AWS's policy agent
(tests/lab/engines.py), which the server's add-on manager turns on as EKS would.

Order and cleanup (this file runs in the same session and lab as test_calico.py, after it):

1. the module's ``fresh`` fixture makes the lab look like an EKS cluster Calico never ran on:
   test_calico.py leaves the CRDs and the operator (it deletes the Installation and APIServer)
   and felix's iptables chains and ipsets in both node netns (felix never removes them: that test
   pins it).
   The fixture deletes the operator's objects and CRDs, then removes felix's chains and ipsets
   from each node netns, as replacing the nodes would. It also adds a ClusterRole aws-node like
   EKS's (the lab has the DaemonSet only), so the guide's patch runs against a real object;
2. refusals, the checksum mismatch, AccessDenied and the dry run, each checked to change nothing
   (the server's call log and the cluster);
3. the Calico install, verify, the no-op second run, ``--calico-apiserver`` on top (Calico's
   aggregated API, every TigeraStatus Available), a Degraded operator, the vpc-cni refusal while
   Calico runs;
4. Calico removed again the same way as in 1 (``fresh`` once more), then ``--engine vpc-cni``:
   UPDATE_FAILED, then the update that turns the lab's policy agent on, and verify.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import build
from tests.lab.client import LabClient
from tests.servers.eks import MUTATING, EksServer

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
MANIFESTS = build.shared_dir() / "calico" / build.CALICO_VERSION
CLUSTER = "netiso-lab"
VALUES = '{"env":{"WARM_IP_TARGET":"5"}}'
# EKS's ClusterRole aws-node, the rules that matter here (the real one has more).
AWS_NODE_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "aws-node", "labels": {"app.kubernetes.io/name": "aws-node"}},
    "rules": [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list", "watch", "get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch", "get"]},
    ],
}
# Rejected by the real operator's validation (pkg/controller/installation/validation.go: "is not
# an absolute path") with nothing rolled out, on a field netiso does not set. Calico IPAM was
# avoided: the operator writes a default VXLAN IP pool into the spec, which then stays invalid.
BAD_SPEC = '{"spec":{"flexVolumePath":"not/absolute"}}'
FIX_SPEC = '{"spec":{"flexVolumePath":null}}'


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)


@pytest.fixture(scope="module")
def eks(lab: LabClient) -> LabClient:
    if lab.spec.flavor != "eks" or lab.spec.enforce:
        message = (f"needs an EKS-flavoured lab without enforcement (running: {lab.spec.flavor}, "
                   f"enforce={lab.spec.enforce}); scripts/test runs this file with "
                   "NETISO_LAB_FLAVOR=eks")
        if _ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert (MANIFESTS / "operator-crds.yaml").is_file(), f"{MANIFESTS} missing"
    return lab


@pytest.fixture(scope="module")
def server(eks: LabClient) -> Iterator[EksServer]:
    srv = EksServer().start()
    srv.seed(CLUSTER, configuration_values=VALUES)
    srv.seed("auto", auto_mode=True)
    srv.seed("fargate", nodegroups=(), fargate=("fp-default",))
    srv.seed("windows", nodegroups=(("win", "WINDOWS_CORE_2022_x86_64"),))
    srv.seed("old-cni", addon_version="v1.13.4-eksbuild.1")
    srv.seed("self-managed", addon_version=None)
    try:
        yield srv
    finally:
        srv.stop()


def netiso(lab: LabClient, server: EksServer, *args: str, timeout: float = 600,
           kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.env()}
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def enable(lab: LabClient, server: EksServer, *args: str, cluster: str = CLUSTER,
           manifests: Path = MANIFESTS, timeout: float = 600,
           kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return netiso(lab, server, "enable", "--provider", "eks", "--cluster-name", cluster,
                  "--calico-manifests", str(manifests), "--timeout", "420", *args,
                  timeout=timeout, kubeconfig=kubeconfig)


@pytest.fixture(scope="module")
def enable_identity(eks: LabClient) -> Iterator[Path]:
    """A ServiceAccount holding exactly the shipped roles enable is documented to need: the
    day-to-day one (`render --rbac`: detection's reads) and `render --rbac --for enable`."""
    namespace = "t-netiso-enable-rbac"
    _kubectl_ok(eks, "create", "namespace", namespace)
    _wait("default ServiceAccount", lambda: _json(eks, "get", "serviceaccount", "default",
                                                   "-n", namespace), 30, 0.2)
    kubeconfig = eks.service_account_kubeconfig(namespace, "netiso")
    names = []
    for role_for in ("default", "enable"):
        out = subprocess.run([*NETISO, "render", "--rbac", "--for", role_for],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        for doc in yaml.safe_load_all(out):
            if not doc or doc["kind"] != "ClusterRole":
                continue
            name = f"{doc['metadata']['name']}-test"
            doc["metadata"]["name"] = name
            binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": name},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                   "kind": "ClusterRole", "name": name},
                       "subjects": [{"kind": "ServiceAccount", "name": "netiso",
                                     "namespace": namespace}]}
            for obj in (doc, binding):
                _kubectl_ok(eks, "create", "-f", "-", input=json.dumps(obj))
            names.append(name)
    try:
        yield kubeconfig
    finally:
        for name in names:
            eks.kubectl("delete", "clusterrolebinding,clusterrole", name, check=False)
        eks.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _json(lab: LabClient, *args: str) -> Any:
    proc = lab.kubectl(*args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def snapshot(lab: LabClient) -> dict[str, Any]:
    """What enable could change in the cluster: names, and each object's spec by its generation
    (RBAC objects have none: their resourceVersion), so status updates of a rollout still in
    progress, or of the operator, do not count as changes."""
    def rv(*args: str) -> str | None:
        obj = _json(lab, "get", *args)
        if obj is None:
            return None
        meta = obj["metadata"]
        return str(meta.get("generation") or meta["resourceVersion"])

    crds = _json(lab, "get", "crd") or {"items": []}
    namespaces = _json(lab, "get", "namespaces") or {"items": []}
    return {
        "crds": sorted(c["metadata"]["name"] for c in crds["items"]),
        "namespaces": sorted(n["metadata"]["name"] for n in namespaces["items"]
                             if not n["metadata"]["name"].startswith(("t-", "netiso-verify-"))),
        "aws-node": rv("daemonset", "aws-node", "-n", "kube-system"),
        "aws-node-role": rv("clusterrole", "aws-node"),
        "installation": rv("installation.operator.tigera.io", "default"),
        "apiserver": rv("apiserver.operator.tigera.io", "default"),
        "operator": rv("deployment", "tigera-operator", "-n", "tigera-operator"),
    }


def _kubectl_ok(lab: LabClient, *args: str, timeout: float = 300, input: str | None = None
                ) -> None:
    proc = lab.kubectl(*args, check=False, timeout=timeout, input=input)
    assert proc.returncode == 0, proc.stderr


def _calico_workloads(lab: LabClient) -> list[str]:
    pods = _json(lab, "get", "pods", "-n", "calico-system") or {"items": []}
    return [p["metadata"]["name"] for p in pods["items"]]


def make_fresh(lab: LabClient) -> None:
    """The lab as an EKS cluster Calico never ran on (see the module notes, step 1)."""
    # The APIServer first: the operator holds the Installation (a finalizer) until the API
    # server's pods are gone, and they go only with the APIServer.
    lab.kubectl("delete", "apiserver.operator.tigera.io", "default", "--ignore-not-found",
                "--wait=true", check=False, timeout=180)
    lab.kubectl("delete", "installation.operator.tigera.io", "default", "--ignore-not-found",
                "--wait=true", check=False, timeout=180)
    _wait("calico-system's pods gone", lambda: not _calico_workloads(lab), 180, 2)
    _kubectl_ok(lab, "delete", "--ignore-not-found", "--wait=true", "-f",
                str(MANIFESTS / "tigera-operator.yaml"))
    _kubectl_ok(lab, "delete", "--ignore-not-found", "--wait=true", "-f",
                str(MANIFESTS / "operator-crds.yaml"))
    _wait("namespaces calico-system and tigera-operator gone",
          lambda: not {"calico-system", "tigera-operator"} & set(snapshot(lab)["namespaces"]),
          180, 2)
    lab.replace_nodes_felix_state()
    lab.kubectl("set", "env", "daemonset/aws-node", "-n", "kube-system", "-c", "aws-node",
                "ANNOTATE_POD_IP-", check=False)
    lab.kubectl("delete", "clusterrole", "aws-node", "--ignore-not-found", check=False)
    _kubectl_ok(lab, "create", "-f", "-", input=json.dumps(AWS_NODE_ROLE))


@pytest.fixture(scope="module")
def fresh(eks: LabClient) -> LabClient:
    make_fresh(eks)
    return eks


def _no_mutation(server: EksServer) -> None:
    assert [c.operation for c in server.calls if c.operation in MUTATING] == []


# --- 2. refusals and failures that change nothing ---------------------------------------------


@pytest.mark.parametrize(("cluster", "words"), [
    ("auto", "EKS Auto Mode manages this cluster's networking"),
    ("fargate", "runs on Fargate only"),
    ("windows", "has Windows nodes only"),
])
def test_preflight_refusal_exit_4_nothing_changed(fresh: LabClient, server: EksServer,
                                                  cluster: str, words: str) -> None:
    before = snapshot(fresh)
    server.clear_calls()
    proc = enable(fresh, server, cluster=cluster)
    assert proc.returncode == 4, proc.stderr
    assert words in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("netiso: error: ")
    assert "DescribeCluster" in server.operations()
    _no_mutation(server)
    assert snapshot(fresh) == before


def test_vpc_cni_refusals(fresh: LabClient, server: EksServer) -> None:
    before = snapshot(fresh)
    server.clear_calls()
    proc = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                  "--cluster-name", "old-cni")
    assert proc.returncode == 4, proc.stderr
    assert "the vpc-cni add-on is v1.13.4-eksbuild.1; its network policy agent needs v1.14" \
        in proc.stderr
    proc = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                  "--cluster-name", "self-managed")
    assert proc.returncode == 4, proc.stderr
    assert "is self-managed (eks:DescribeAddon: ResourceNotFoundException)" in proc.stderr
    _no_mutation(server)
    assert snapshot(fresh) == before


def test_calico_while_the_vpc_cni_agent_is_on_exit_4(fresh: LabClient, server: EksServer
                                                      ) -> None:
    patch = ('[{"op":"replace","path":"/spec/template/spec/containers/1/args/1",'
             '"value":"--enable-network-policy=%s"}]')
    _kubectl_ok(fresh, "patch", "daemonset", "aws-node", "-n", "kube-system", "--type=json",
                "-p", patch % "true")
    try:
        before = snapshot(fresh)
        server.clear_calls()
        proc = enable(fresh, server, "--engine", "calico")
        assert proc.returncode == 4, proc.stderr
        assert "Calico requested while the VPC CNI's network policy agent is on" in proc.stderr
        _no_mutation(server)
        assert snapshot(fresh) == before
    finally:
        _kubectl_ok(fresh, "patch", "daemonset", "aws-node", "-n", "kube-system",
                    "--type=json", "-p", patch % "false")


def test_checksum_mismatch_exit_1_names_file_and_hashes(fresh: LabClient, server: EksServer,
                                                        tmp_path: Path) -> None:
    for name in ("operator-crds.yaml", "tigera-operator.yaml"):
        shutil.copy(MANIFESTS / name, tmp_path / name)
    changed = tmp_path / "tigera-operator.yaml"
    changed.write_bytes(changed.read_bytes() + b"# mirrored\n")
    actual = hashlib.sha256(changed.read_bytes()).hexdigest()
    before = snapshot(fresh)
    proc = enable(fresh, server, manifests=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert (f"{tmp_path}/tigera-operator.yaml: sha256 {actual}, expected "
            "f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f") in proc.stderr
    assert snapshot(fresh) == before


def test_access_denied_exit_1(fresh: LabClient, server: EksServer) -> None:
    server.clear_calls()
    server.fail("DescribeCluster", 403, "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: "
                "eks:DescribeCluster on resource: arn:aws:eks:us-west-2:123456789012:cluster/"
                "netiso-lab")
    before = snapshot(fresh)
    proc = enable(fresh, server)
    assert proc.returncode == 1, proc.stderr
    assert ("netiso: error: eks:DescribeCluster: AccessDeniedException: User: "
            "arn:aws:iam::123456789012:user/dev is not authorized") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(fresh) == before


def test_dry_run_shows_every_call_and_object_and_sends_none(fresh: LabClient,
                                                            server: EksServer) -> None:
    before = snapshot(fresh)
    server.clear_calls()
    proc = enable(fresh, server, "--dry-run", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "dry-run" and doc["engine"] == "calico"
    calls = {s["name"]: s["call"] for s in doc["steps"]}
    assert len(calls["calico-crds"]["serverSideApply"]) == 32
    assert "Deployment tigera-operator/tigera-operator" in calls["tigera-operator"][
        "serverSideApply"]
    assert calls["calico-installation"]["object"]["spec"]["kubernetesProvider"] == "EKS"
    assert calls["aws-node-clusterrole"]["jsonPatch"] == "ClusterRole aws-node"
    assert not any(s["ran"] for s in doc["steps"])
    assert doc["cloud"]["vpcCni"]["configurationValues"] == VALUES
    _no_mutation(server)
    assert snapshot(fresh) == before


# --- 3. Calico --------------------------------------------------------------------------------


def test_enable_calico_then_verify_passes_and_second_run_is_a_no_op(
        fresh: LabClient, server: EksServer, enable_identity: Path) -> None:
    # Under the shipped roles only: they must cover everything enable does.
    started = time.monotonic()
    proc = enable(fresh, server, "-o", "json", kubeconfig=enable_identity)
    assert proc.returncode == 0, proc.stderr
    print(f"enable (Calico) took {time.monotonic() - started:.0f} s\n{proc.stderr}")
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "enabled", doc
    assert [s["name"] for s in doc["steps"] if s["ran"]] == [
        "calico-crds", "tigera-operator", "aws-node-clusterrole", "aws-node-annotate-pod-ip",
        "calico-installation", "wait-tigerastatus"]
    assert doc["enforcement"]["status"] == "enforcing"
    role = _json(fresh, "get", "clusterrole", "aws-node")
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]} in role["rules"]
    assert role["rules"][:2] == AWS_NODE_ROLE["rules"]  # EKS's rules kept
    ds = _json(fresh, "get", "daemonset", "aws-node", "-n", "kube-system")
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0][
        "env"]}
    assert env["ANNOTATE_POD_IP"] == "true" and env["AWS_VPC_ENI_MTU"] == "9001"
    installation = _json(fresh, "get", "installation.operator.tigera.io", "default")
    assert installation["status"]["calicoVersion"] == "v3.32.1"

    verify = netiso(fresh, server, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    before = snapshot(fresh)
    server.clear_calls()
    again = enable(fresh, server, kubeconfig=enable_identity)
    assert again.returncode == 0, again.stderr
    assert "already enforcing (calico): nothing to do" in again.stderr
    _no_mutation(server)
    assert snapshot(fresh) == before


def _tigera_available(lab: LabClient) -> dict[str, bool]:
    listing = _json(lab, "get", "tigerastatus") or {"items": []}
    return {item["metadata"]["name"]: any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in (item.get("status") or {}).get("conditions") or [])
        for item in listing["items"]}


def test_calico_apiserver_serves_the_v3_api_and_every_status_is_available(
        fresh: LabClient, server: EksServer, enable_identity: Path) -> None:
    # On the Calico the previous test installed: only the APIServer and the wait are left to do.
    assert _tigera_available(fresh).get("tiers") is False, _tigera_available(fresh)
    proc = enable(fresh, server, "--calico-apiserver", "-o", "json", kubeconfig=enable_identity)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [s["name"] for s in doc["steps"] if s["ran"]] == ["calico-apiserver",
                                                             "wait-tigerastatus"], doc
    assert "--calico-apiserver" not in " ".join(doc.get("warnings") or []), doc
    statuses = _tigera_available(fresh)
    assert {"apiserver", "calico", "ippools", "tiers"} <= set(statuses), statuses
    assert all(statuses.values()), statuses
    # tiers Available: the operator wrote its tier through Calico's aggregated API.
    tiers = _json(fresh, "get", "tiers.projectcalico.org")
    assert tiers is not None and "calico-system" in {
        t["metadata"]["name"] for t in tiers["items"]}, tiers

    before = snapshot(fresh)
    server.clear_calls()
    again = enable(fresh, server, "--calico-apiserver", kubeconfig=enable_identity)
    assert again.returncode == 0, again.stderr
    assert "already enforcing (calico): nothing to do" in again.stderr
    _no_mutation(server)
    assert snapshot(fresh) == before


def test_vpc_cni_while_calico_runs_exit_4(fresh: LabClient, server: EksServer) -> None:
    server.clear_calls()
    proc = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                  "--cluster-name", CLUSTER)
    assert proc.returncode == 4, proc.stderr
    assert "--engine vpc-cni: Calico runs on this cluster" in proc.stderr
    _no_mutation(server)


def test_degraded_operator_exit_1_with_its_words(fresh: LabClient, server: EksServer) -> None:
    _kubectl_ok(fresh, "patch", "installation.operator.tigera.io", "default", "--type=merge",
                "-p", BAD_SPEC)

    def degraded() -> bool:
        status = _json(fresh, "get", "tigerastatus", "calico") or {}
        return any(c.get("type") == "Degraded" and c.get("status") == "True"
                   for c in (status.get("status") or {}).get("conditions") or [])

    try:
        _wait("TigeraStatus calico Degraded", degraded, 90)
        proc = enable(fresh, server)
        assert proc.returncode == 1, proc.stderr
        assert ("the Tigera operator reports Calico Degraded: calico: Degraded "
                "(InvalidConfigurationError: ") in proc.stderr
        assert "not an absolute path" in proc.stderr
    finally:
        _kubectl_ok(fresh, "patch", "installation.operator.tigera.io", "default",
                    "--type=merge", "-p", FIX_SPEC)
    again = enable(fresh, server)
    assert again.returncode == 0, again.stderr



def test_an_older_calico_is_refused_then_upgraded_with_upgrade(fresh: LabClient,
                                                               server: EksServer) -> None:
    # The lab has one Calico release (v3.32.1, built from shared sources), so an older one is
    # played by what netiso reads as the installed version: the Installation's
    # status.calicoVersion, with the operator scaled to zero so that nothing corrects it (as an
    # older operator would report its own release). --upgrade's forced apply of the pinned
    # operator Deployment (replicas 1) brings the real operator back, which rolls out and writes
    # the pinned version; enable must wait for that, not for the old rollout's Available.
    _kubectl_ok(fresh, "scale", "deployment", "tigera-operator", "-n", "tigera-operator",
                "--replicas=0")
    _wait("the operator's pods gone",
          lambda: not (_json(fresh, "get", "pods", "-n", "tigera-operator") or {}).get("items"),
          120)
    _kubectl_ok(fresh, "patch", "installation.operator.tigera.io", "default",
                "--subresource=status", "--type=merge",
                "-p", '{"status":{"calicoVersion":"v3.31.2"}}')
    before = snapshot(fresh)
    server.clear_calls()
    refused = enable(fresh, server)
    assert refused.returncode == 4, refused.stderr
    assert "Calico v3.31.2 is installed; netiso installs v3.32.1" in refused.stderr
    assert "rerun with --upgrade" in refused.stderr
    _no_mutation(server)
    assert snapshot(fresh) == before

    upgraded = enable(fresh, server, "--upgrade", "-o", "json")
    assert upgraded.returncode == 0, upgraded.stderr
    doc = json.loads(upgraded.stdout)
    assert doc["outcome"] == "enabled", doc
    ran = [s["name"] for s in doc["steps"] if s["ran"]]
    assert {"calico-crds", "tigera-operator", "calico-installation",
            "wait-tigerastatus"} <= set(ran), ran
    assert "status.calicoVersion v3.31.2, not yet v3.32.1" in upgraded.stderr
    installation = _json(fresh, "get", "installation.operator.tigera.io", "default")
    assert installation["status"]["calicoVersion"] == "v3.32.1"
    operator = _json(fresh, "get", "deployment", "tigera-operator", "-n", "tigera-operator")
    assert operator["spec"]["replicas"] == 1
    again = enable(fresh, server)
    assert again.returncode == 0, again.stderr
    assert "already enforcing (calico): nothing to do" in again.stderr

# --- 4. the VPC CNI's policy agent ------------------------------------------------------------


def _engines() -> Any:
    if importlib.util.find_spec("tests.lab.engines") is None:
        message = "tests/lab/engines.py (the lab's double of AWS's policy agent) is not here"
        if _ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return importlib.import_module("tests.lab.engines")


def test_vpc_cni_update_failed_exit_1(fresh: LabClient, server: EksServer) -> None:
    make_fresh(fresh)
    server.clear_calls()
    server.update_outcome = "Failed"
    try:
        proc = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                      "--cluster-name", CLUSTER)
    finally:
        server.update_outcome = "Successful"
    assert proc.returncode == 1, proc.stderr
    assert "of vpc-cni ended Failed: ConfigurationConflict: Conflicts found" in proc.stderr
    assert server.operations().count("UpdateAddon") == 1


def test_vpc_cni_keeps_configuration_values_and_enforces(fresh: LabClient,
                                                         server: EksServer) -> None:
    engines = _engines()
    from tests.lab.kubeapi import Kube
    from tests.servers.eks import policy_agent_hook

    server.on_addon_updated = policy_agent_hook(str(fresh.kubeconfig))
    server.clear_calls()
    try:
        proc = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                      "--cluster-name", CLUSTER, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["outcome"] == "enabled" and doc["engine"] == "aws-network-policy-agent"
        update = [c for c in server.calls if c.operation == "UpdateAddon"]
        assert len(update) == 1
        assert json.loads(update[0].body["configurationValues"]) == {
            "env": {"WARM_IP_TARGET": "5"}, "enableNetworkPolicy": "true"}
        assert update[0].body["resolveConflicts"] == "PRESERVE"
        engines.wait_enforcing(Kube(str(fresh.kubeconfig)), 120)
        verify = netiso(fresh, server, "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        server.clear_calls()
        again = netiso(fresh, server, "enable", "--provider", "eks", "--engine", "vpc-cni",
                       "--cluster-name", CLUSTER)
        assert again.returncode == 0, again.stderr
        assert "already enforcing (aws-network-policy-agent)" in again.stderr
        _no_mutation(server)
    finally:
        server.on_addon_updated = None
        engines.eks_policy_agent(Kube(str(fresh.kubeconfig)), False)
        engines.wait_not_enforcing(Kube(str(fresh.kubeconfig)), 120)
