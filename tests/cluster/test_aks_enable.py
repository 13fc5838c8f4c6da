"""`netiso enable` on the lab in AKS flavour, ARM answered by tests/servers/arm.py.

The real CLI runs as a subprocess with the standard Azure settings pointing at the in-process
ARM server (HTTPS_PROXY, REQUESTS_CA_BUNDLE, App Service managed identity variables); a
completed PUT brings up AKS's engine in the lab (tests/lab/engines.py), so enforcement appears
because the operation completed and ``netiso verify`` proves it with real traffic. Every
"nothing was sent" is read from the server's call log.

The module switches the lab to the AKS flavour (no lab enforcement) and puts it back at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from netiso.providers.aks.transitions import (
    NPM_RETIREMENT,
    RULE_CILIUM_DATAPLANE,
    RULE_THROUGH_NONE,
)
from tests.lab import engines
from tests.lab import lab as lab_mod
from tests.lab.client import LabClient
from tests.lab.kubeapi import Kube
from tests.servers.arm import ArmServer, lab_hook, managed_cluster

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
SUB = "00000000-0000-0000-0000-000000000000"  # the AKS flavour's nodes' providerID
RG, NAME = "netiso-lab", "lab"  # from the node resource group mc_netiso-lab_lab_westeurope
PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/" \
       f"managedClusters/{NAME}"


@pytest.fixture(scope="module", autouse=True)
def aks_flavour(lab: LabClient) -> Iterator[None]:
    before = lab_mod.load_spec()
    assert before is not None
    if before.flavor != "aks" or before.enforce:
        with lab_mod.exclusive():
            lab_mod.up(lab_mod.make_spec(flavor="aks", node_count=len(before.nodes)),
                       log=lambda _text: None)
    yield
    kube = Kube(str(lab.kubeconfig))
    engines.aks_network_policy(kube, "none")
    engines.wait_not_enforcing(kube)
    with lab_mod.exclusive():
        lab_mod.up(lab_mod.make_spec(before.flavor, len(before.nodes), before.enforce),
                   log=lambda _text: None)


@pytest.fixture(scope="module")
def kube(lab: LabClient) -> Kube:
    return Kube(str(lab.kubeconfig))


@pytest.fixture(scope="module")
def server(lab: LabClient) -> Iterator[ArmServer]:
    with ArmServer(poll_steps=1, on_policy=lab_hook(str(lab.kubeconfig))) as arm:
        yield arm


@pytest.fixture
def arm(server: ArmServer, kube: Kube) -> ArmServer:
    """The lab's managed cluster as ARM holds it: Azure CNI, networkPolicy none, no engine."""
    engines.aks_network_policy(kube, "none")
    engines.wait_not_enforcing(kube)
    server.reset()
    server.add(cluster())
    return server


def cluster(**kw: Any) -> dict[str, Any]:
    return managed_cluster(SUB, RG, NAME, fqdn="10.250.0.1",
                           node_resource_group="mc_netiso-lab_lab_westeurope", **kw)


def netiso(lab: LabClient, arm: ArmServer, *args: str, timeout: float = 600
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **arm.env(no_proxy="10.250.0.1")}
    return subprocess.run([*NETISO, "--kubeconfig", str(lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout, check=False, env=env)


def validated(stdout: str) -> dict[str, Any]:
    text = files("netiso.manifests").joinpath("schemas/enable.schema.json").read_text("utf-8")
    doc = json.loads(stdout)
    jsonschema.Draft202012Validator(json.loads(text)).validate(doc)
    return dict(doc)


def last_line(out: subprocess.CompletedProcess[str]) -> str:
    return out.stderr.strip().splitlines()[-1]


def puts(arm: ArmServer) -> int:
    return len(arm.puts())


# --- no write ----------------------------------------------------------------------------------

def test_no_consent_is_exit_4_and_no_put(lab: LabClient, arm: ArmServer) -> None:
    out = netiso(lab, arm, "enable")
    assert out.returncode == 4, out.stderr
    line = last_line(out)
    assert line.startswith("netiso: error: set-network-policy would change the nodes (AKS "
                           "reimages every node pool at once: nodepool1 (2 Linux nodes))"), line
    assert "nothing was sent" in line and "--yes" in line
    assert puts(arm) == 0
    assert [c.method for c in arm.log()] == ["GET"]  # the plan's read, nothing else


def test_dry_run_shows_the_put_body_and_the_pools(lab: LabClient, arm: ArmServer) -> None:
    out = netiso(lab, arm, "-o", "json", "enable", "--dry-run")
    assert out.returncode == 0, out.stderr
    doc = validated(out.stdout)
    assert (doc["provider"], doc["outcome"], doc["engine"]) == ("aks", "dry-run", "azure-npm")
    assert doc["identity"]["resourceGroup"] == RG and doc["identity"]["clusterName"] == NAME
    assert doc["cloud"]["networkProfile"]["networkPolicy"] == "none"
    [step] = doc["steps"]
    assert step["disruptive"] and not step["ran"]
    call = step["call"]
    assert call["method"] == "PUT" and call["url"] == PATH
    assert call["ifMatch"] == arm.cluster(SUB, RG, NAME)["eTag"]
    network = call["body"]["properties"]["networkProfile"]
    assert network["networkPolicy"] == "azure"
    assert network["networkPlugin"] == "azure" and network["networkDataplane"] == "azure"
    assert call["body"]["properties"]["agentPoolProfiles"] == [
        {"name": "nodepool1", "count": 2, "osType": "Linux", "mode": "System"}]
    assert NPM_RETIREMENT in doc["warnings"]
    assert puts(arm) == 0


def test_cilium_without_the_cilium_dataplane_is_refused(lab: LabClient, arm: ArmServer) -> None:
    out = netiso(lab, arm, "enable", "--yes", "--network-policy", "cilium")
    assert out.returncode == 4, out.stderr
    assert RULE_CILIUM_DATAPLANE in last_line(out)
    assert "networkPlugin azure without pod subnets" in last_line(out)
    assert puts(arm) == 0


def test_a_flag_of_another_provider_is_refused(lab: LabClient, arm: ArmServer) -> None:
    out = netiso(lab, arm, "enable", "--yes", "--region", "eu-west-1")
    assert out.returncode == 2, out.stderr
    assert last_line(out) == "netiso: error: --region does not apply to --provider aks"
    assert arm.log() == []


# --- ARM's refusals ----------------------------------------------------------------------------

def test_409_another_operation_is_exit_1_saying_what_to_do(lab: LabClient,
                                                         arm: ArmServer) -> None:
    arm.busy(SUB, RG, NAME)
    out = netiso(lab, arm, "enable", "--yes")
    assert out.returncode == 1, out.stderr
    line = last_line(out)
    assert "HTTP 409, OperationNotAllowed: Operation is not allowed because there's an in " \
           "progress update managed cluster operation" in line, line
    assert "wait until its provisioningState is Succeeded (az aks show), then rerun" in line
    assert [c.status for c in arm.puts()] == [409]


def test_412_changed_underneath_is_exit_1_saying_rerun(lab: LabClient, arm: ArmServer) -> None:
    arm.change_after_next_get = True  # someone updates the cluster after netiso's plan read
    out = netiso(lab, arm, "enable", "--yes")
    assert out.returncode == 1, out.stderr
    line = last_line(out)
    assert "HTTP 412, PreconditionFailed" in line, line
    assert "changed after netiso read it" in line and "rerun netiso enable" in line
    assert [c.status for c in arm.puts()] == [412]
    assert arm.cluster(SUB, RG, NAME)["properties"]["networkProfile"]["networkPolicy"] == "none"


def test_a_failed_operation_is_exit_1_with_arms_code_and_message(lab: LabClient,
                                                                arm: ArmServer) -> None:
    arm.fail_next_operation = ("ReconcileVMSSAgentPoolFailed",
                               "Agent pool nodepool1 failed to reimage: OS disk quota exceeded")
    out = netiso(lab, arm, "enable", "--yes")
    assert out.returncode == 1, out.stderr
    assert ("the operation failed, ReconcileVMSSAgentPoolFailed: Agent pool nodepool1 failed "
            "to reimage: OS disk quota exceeded") in last_line(out), out.stderr
    assert "fix its cause, then rerun netiso enable" in last_line(out)
    assert puts(arm) == 1
    cluster_now = arm.cluster(SUB, RG, NAME)["properties"]
    assert (cluster_now["provisioningState"], cluster_now["networkProfile"]["networkPolicy"]) \
        == ("Failed", "azure")
    # Cause fixed, rerun: the policy is in the profile already, so the same PUT again (AKS
    # reconciles), and the engine comes up.
    again = netiso(lab, arm, "-o", "json", "enable", "--yes")
    assert again.returncode == 0, again.stderr
    doc = validated(again.stdout)
    assert (doc["outcome"], doc["engine"]) == ("enabled", "azure-npm")
    assert "again (provisioningState Failed: AKS reconciles)" in doc["steps"][0]["description"]
    assert [c.status for c in arm.puts()] == [200, 200]
    assert arm.cluster(SUB, RG, NAME)["properties"]["provisioningState"] == "Succeeded"


# --- enabling, then verify, then a no-op -------------------------------------------------------

def test_none_to_azure_then_verify_then_a_rerun_is_a_no_op(lab: LabClient, arm: ArmServer,
                                                          kube: Kube) -> None:
    out = netiso(lab, arm, "-o", "json", "enable", "--yes")
    assert out.returncode == 0, out.stderr
    doc = validated(out.stdout)
    assert (doc["outcome"], doc["engine"]) == ("enabled", "azure-npm")
    assert doc["steps"][0]["ran"]
    assert doc["enforcement"]["status"] == "enforcing"
    assert [e["daemonset"] for e in doc["enforcement"]["engines"]] == ["kube-system/azure-npm"]
    [put] = arm.puts()
    assert put.status == 200 and put.if_match is not None
    assert put.body["properties"]["networkProfile"]["networkPolicy"] == "azure"
    assert arm.cluster(SUB, RG, NAME)["properties"]["provisioningState"] == "Succeeded"

    verify = netiso(lab, arm, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = netiso(lab, arm, "enable", "--yes")
    assert again.returncode == 0, again.stderr
    assert "already enforcing (azure-npm): nothing to do" in again.stderr
    assert puts(arm) == 1  # still the first run's PUT only


def test_a_run_stopped_mid_operation_is_resumed_without_a_put(lab: LabClient, arm: ArmServer,
                                                               kube: Kube) -> None:
    """ARM already says azure (an earlier run's PUT) while its operation still runs and no
    engine is up: the next run only waits for the operation and the engine."""
    arm.add(cluster(network_policy="azure"))
    arm.busy(SUB, RG, NAME)

    def aks_finishes() -> None:
        time.sleep(3)
        engines.aks_network_policy(kube, "azure")
        engines.wait_enforcing(kube)
        arm.cluster(SUB, RG, NAME)["properties"]["provisioningState"] = "Succeeded"

    finisher = threading.Thread(target=aks_finishes)
    finisher.start()
    try:
        out = netiso(lab, arm, "-o", "json", "enable")  # nothing to consent to: no PUT left
    finally:
        finisher.join()
    assert out.returncode == 0, out.stderr
    doc = validated(out.stdout)
    assert (doc["outcome"], doc["engine"]) == ("enabled", "azure-npm")
    [step] = doc["steps"]
    assert step["done"] and not step["ran"]
    assert doc["enforcement"]["status"] == "enforcing"
    assert "provisioningState Updating" in out.stderr
    assert puts(arm) == 0


def test_azure_to_calico_is_refused_quoting_the_rule(lab: LabClient, arm: ArmServer) -> None:
    arm.add(cluster(network_policy="azure"))  # ARM says azure: refused before any engine matters
    out = netiso(lab, arm, "enable", "--yes", "--network-policy", "calico")
    assert out.returncode == 4, out.stderr
    line = last_line(out)
    assert "networkPolicy is azure, --network-policy calico asked" in line
    assert RULE_THROUGH_NONE in line
    assert puts(arm) == 0


@pytest.mark.parametrize(("policy", "dataplane", "daemonset"), [
    ("calico", "azure", "calico-system/calico-node"),
    ("cilium", "cilium", "kube-system/cilium"),
])
def test_already_enforcing_names_the_engine_and_sends_nothing(
        lab: LabClient, arm: ArmServer, kube: Kube, policy: str, dataplane: str,
        daemonset: str) -> None:
    # The cluster as AKS leaves it with that policy: ARM's profile and the engine running.
    arm.add(cluster(network_policy=policy, network_dataplane=dataplane,
                    network_plugin_mode="overlay"))
    engines.aks_network_policy(kube, policy)
    engines.wait_enforcing(kube)
    out = netiso(lab, arm, "-o", "json", "enable", "--yes")
    assert out.returncode == 0, out.stderr
    doc = validated(out.stdout)
    assert (doc["outcome"], doc["engine"]) == ("already-enforcing", policy)
    assert daemonset in [e["daemonset"] for e in doc["enforcement"]["engines"]]
    assert [c.method for c in arm.log()] == ["GET"]
