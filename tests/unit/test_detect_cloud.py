"""`detect`'s cloud view: the comparison (pure), the --cloud rule, and each provider's real SDK
against its wire-level test server in-process (no lab, no mock of an SDK), both views together
validated against detect's schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest

from netiso.bootstrap.cloudview import CloudMode, CloudSide, CloudStatus, cloud_side, compare
from netiso.bootstrap.detect import Detection, decide
from netiso.errors import OperationFailed, PreconditionFailed
from netiso.profiles import Provider
from netiso.providers.base import (
    CloudView,
    ClusterFacts,
    ContainerFacts,
    DaemonSetFacts,
    EnforcementState,
    EngineSeen,
    NodeFacts,
)
from tests.servers.arm import ArmServer, managed_cluster
from tests.servers.eks import EksServer
from tests.servers.gke import GkeServer, adc_file, serve

SCHEMA = json.loads(
    files("netiso.manifests").joinpath("schemas", "detect.schema.json").read_text("utf-8"))
NO_KUBE = cast(Any, None)  # cloud_view reads the cloud only; the facts were read already

#: Every variable a provider's credentials_at_hand looks at (cleared so the host's don't count).
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT", "AZURE_CONFIG_DIR")


@pytest.fixture(autouse=True)
def no_host_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def full(detection: Detection, side: CloudSide) -> dict[str, Any]:
    doc = {**detection.to_json(), "cloud": side.to_json()}
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


def ds(namespace: str, name: str, *, ready: int = 2, desired: int = 2,
       argv: tuple[str, ...] = ()) -> DaemonSetFacts:
    return DaemonSetFacts(namespace, name, (ContainerFacts(name, f"example/{name}", argv),),
                          desired=desired, ready=ready)


# --- compare: pure -----------------------------------------------------------------------------


def detection(*engines: EngineSeen, version: str = "v1.31.2",
              identity: dict[str, str] | None = None) -> Detection:
    return Detection(provider=Provider.GKE, reason="test", identity=identity or {},
                     server_version=version, enforcement=EnforcementState(engines=engines))


def gke_view(engine: str | None = "calico", *, state: str = "RUNNING", version: str = "1.31.2",
             identity: dict[str, str] | None = None) -> CloudView:
    return CloudView(Provider.GKE, identity or {"project": "p", "clusterName": "lab"}, version,
                     {"networkPolicyAddon": "enabled",
                      "networkPolicy": {"enabled": engine is not None, "provider": "CALICO"},
                      "datapathProvider": "LEGACY_DATAPATH"}, engine, state)


CALICO_READY = EngineSeen("calico", "kube-system/calico-node", 2, 2)


def test_the_cloud_enforcing_with_no_engine_in_the_cluster_is_an_operation_in_flight() -> None:
    found = compare(detection(), gke_view())
    assert len(found) == 1
    assert found[0].startswith("the cloud's setting (networkPolicyAddon=enabled, "
                               "networkPolicy.enabled=true, networkPolicy.provider=CALICO, "
                               "datapathProvider=LEGACY_DATAPATH) runs calico")
    assert found[0].endswith("no calico DaemonSet is in the cluster: an operation in flight or "
                             "the engine not yet scheduled")


def test_the_engine_ready_on_every_node_agrees() -> None:
    assert compare(detection(CALICO_READY), gke_view()) == []


def test_an_engine_ready_on_some_nodes_is_said_with_its_counts() -> None:
    (line,) = compare(detection(EngineSeen("calico", "kube-system/calico-node", 3, 1)),
                      gke_view())
    assert "its DaemonSet kube-system/calico-node is ready 1/3: an operation in flight" in line


def test_an_engine_the_cloud_does_not_run_is_self_installed() -> None:
    (line,) = compare(detection(EngineSeen("calico", "calico-system/calico-node", 2, 2)),
                      gke_view(None))
    assert line.startswith("the cluster runs calico (calico-system/calico-node, ready 2/2), "
                           "while the cloud's setting")
    assert "installed in the cluster itself (e.g. a self-installed Calico)" in line


def test_a_second_engine_beside_the_clouds_is_said() -> None:
    found = compare(detection(CALICO_READY, EngineSeen("cilium", "kube-system/cilium", 2, 2)),
                    gke_view())
    assert found == ["the cluster also runs cilium (kube-system/cilium), which the cloud does "
                     "not know: installed in the cluster itself; two engines may program the "
                     "same pods"]


def test_nothing_in_either_view_agrees() -> None:
    assert compare(detection(), gke_view(None)) == []


def test_a_cluster_state_other_than_steady_is_an_operation_in_flight() -> None:
    found = compare(detection(CALICO_READY), gke_view(state="RECONCILING"))
    assert found == ["the cloud says the cluster is RECONCILING, not RUNNING: an operation is "
                     "in flight"]


def test_the_minor_version_and_the_identity_are_compared() -> None:
    found = compare(detection(CALICO_READY, version="v1.30.5-gke.1",
                              identity={"project": "acme", "clusterName": "LAB"}),
                    gke_view(version="1.31.2-gke.100",
                             identity={"project": "other", "clusterName": "lab"}))
    assert found == [
        "Kubernetes: the API server says v1.30.5-gke.1, the cloud says 1.31.2-gke.100: an "
        "upgrade in flight, or not the same cluster",
        "identity: the cluster shows project=acme, the cloud says other: the kubeconfig may not "
        "point at the cluster the cloud read",
    ]
    # A patch release apart is the same minor: no finding.
    assert compare(detection(CALICO_READY, version="v1.31.9"), gke_view()) == []


# --- the --cloud rule --------------------------------------------------------------------------

GKE_FACTS = ClusterFacts(
    nodes=(NodeFacts("gke-lab-default-pool-1a2b3c4d-0000",
                     "gce://netiso-lab/us-central1-a/gke-lab-default-pool-1a2b3c4d-0000",
                     {"cloud.google.com/gke-nodepool": "default-pool"},
                     "v1.37.2-gke.100"),),
    server_version="v1.37.2-gke.100")


def test_off_never_asks() -> None:
    side = cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.OFF)
    assert (side.status, side.view, side.agree) == (CloudStatus.OFF, None, None)


def test_generic_has_no_cloud_and_on_refuses_it() -> None:
    facts = ClusterFacts(nodes=(NodeFacts("worker-1", kubelet_version="v1.31.1"),))
    side = cloud_side(decide(facts), facts, NO_KUBE, CloudMode.AUTO)
    assert (side.status, side.reason) == (CloudStatus.SKIPPED, "no cloud provider detected")
    with pytest.raises(PreconditionFailed, match="--cloud on: no cloud provider detected"):
        cloud_side(decide(facts), facts, NO_KUBE, CloudMode.ON)


def test_auto_without_credential_settings_does_not_ask_nor_load_the_sdk() -> None:
    side = cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.AUTO)
    assert side.status is CloudStatus.SKIPPED
    assert side.reason == ("no gke credential settings in the environment; --cloud on asks "
                           "anyway")


def test_gcloud_adc_file_counts_as_credentials_at_hand(tmp_path: Path) -> None:
    from netiso.providers import get

    adc = tmp_path / "home" / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    assert not get(Provider.GKE).credentials_at_hand()
    adc.write_text("{}")
    assert get(Provider.GKE).credentials_at_hand()
    assert not get(Provider.AKS).credentials_at_hand()
    assert not get(Provider.GENERIC).credentials_at_hand()


@pytest.fixture
def gke_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[GkeServer]:
    from netiso.providers.gke import PROVIDER

    # The registry's provider keeps its client for the process (the CLI's one run): a fresh
    # one per test, pointed at this test's server by the standard settings.
    monkeypatch.setattr(PROVIDER, "_cloud", None)
    server = GkeServer()
    with serve(server) as url:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc_file(tmp_path, url)))
        monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER", f"{url}/")
        yield server


def test_auto_with_a_cloud_error_is_a_warning_and_on_fails(gke_cloud: GkeServer) -> None:
    # No cluster named lab in the server: GKE's list finds none.
    warned: list[str] = []
    side = cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.AUTO, warn=warned.append)
    assert side.status is CloudStatus.UNAVAILABLE
    assert side.reason == "GKE has no cluster named lab in project netiso-lab"
    assert warned == ["the gke cloud's view is unavailable: GKE has no cluster named lab in "
                      "project netiso-lab"]
    full(decide(GKE_FACTS), side)
    with pytest.raises(PreconditionFailed, match="GKE has no cluster named lab"):
        cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.ON)


def test_auto_with_an_unreachable_cloud_is_unavailable(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from netiso.providers.gke import PROVIDER

    monkeypatch.setattr(PROVIDER, "_cloud", None)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                       str(adc_file(tmp_path, "http://127.0.0.1:9")))
    monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER", "http://127.0.0.1:9/")
    side = cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.AUTO)
    assert side.status is CloudStatus.UNAVAILABLE
    assert side.reason == ("GKE clusters.list projects/netiso-lab/locations/-: unreachable at "
                           "http://127.0.0.1:9: [Errno 111] Connection refused")
    with pytest.raises(OperationFailed):
        cloud_side(decide(GKE_FACTS), GKE_FACTS, NO_KUBE, CloudMode.ON)


# --- each provider's SDK against its test server: both views --------------------------------


def test_gke_enabled_in_the_api_without_calico_node_then_with_it(gke_cloud: GkeServer) -> None:
    gke_cloud.add_cluster(addon=True, policy=True)
    found = decide(GKE_FACTS)
    side = cloud_side(found, GKE_FACTS, NO_KUBE, CloudMode.AUTO)
    doc = full(found, side)
    assert doc["provider"] == "gke" and doc["enforcement"]["status"] == "none-seen"
    assert doc["cloud"]["status"] == "read" and doc["cloud"]["agree"] is False
    view = doc["cloud"]["view"]
    assert view["identity"] == {"project": "netiso-lab", "location": "us-central1-a",
                                "clusterName": "lab", "id": "projects/netiso-lab/locations/"
                                "us-central1-a/clusters/lab"}
    assert view["setting"] == {"networkPolicyAddon": "enabled",
                               "networkPolicy": {"enabled": True, "provider": "CALICO"},
                               "datapathProvider": "LEGACY_DATAPATH"}
    assert (view["engine"], view["state"], view["kubernetesVersion"]) == (
        "calico", "RUNNING", "1.37.2-gke.100")
    assert len(doc["cloud"]["findings"]) == 1
    assert "an operation in flight" in doc["cloud"]["findings"][0]
    assert not gke_cloud.mutating_calls()

    with_calico = ClusterFacts(nodes=GKE_FACTS.nodes, server_version=GKE_FACTS.server_version,
                               daemonsets=(ds("kube-system", "calico-node"),))
    found = decide(with_calico)
    doc = full(found, cloud_side(found, with_calico, NO_KUBE, CloudMode.AUTO))
    assert doc["enforcement"]["status"] == "enforcing"
    assert (doc["cloud"]["agree"], doc["cloud"]["findings"]) == (True, [])


def test_gke_dataplane_v2_is_anetd_in_both_views(gke_cloud: GkeServer) -> None:
    gke_cloud.add_cluster(datapath="ADVANCED_DATAPATH")
    facts = ClusterFacts(nodes=GKE_FACTS.nodes, server_version=GKE_FACTS.server_version,
                         daemonsets=(ds("kube-system", "anetd"),))
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    assert doc["cloud"]["view"]["engine"] == "anetd" and doc["cloud"]["agree"] is True


@pytest.fixture
def eks(monkeypatch: pytest.MonkeyPatch) -> Iterator[EksServer]:
    srv = EksServer().start()
    for key, value in srv.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield srv
    finally:
        srv.stop()


def eks_facts(*daemonsets: DaemonSetFacts) -> ClusterFacts:
    return ClusterFacts(
        nodes=(NodeFacts("ip-10-0-1-1.us-west-2.compute.internal",
                         "aws:///us-west-2a/i-0a1b2c3d4e5f67890",
                         {"eks.amazonaws.com/nodegroup": "ng-linux",
                          "alpha.eksctl.io/cluster-name": "prod",
                          "topology.kubernetes.io/region": "us-west-2"}, "v1.31.2-eks-94953ac"),),
        daemonsets=daemonsets, server_version="v1.31.2-eks-7f9249a")


def aws_node(policy: str) -> DaemonSetFacts:
    return DaemonSetFacts("kube-system", "aws-node", (
        ContainerFacts("aws-node", "amazon-k8s-cni:v1.19.2"),
        ContainerFacts("aws-eks-nodeagent", "aws-network-policy-agent:v1.1.5",
                       (f"--enable-network-policy={policy}",))), desired=2, ready=2)


def test_eks_addon_policy_on_while_the_agent_is_off_then_on(eks: EksServer) -> None:
    eks.seed("prod", version="1.31",
             configuration_values='{"enableNetworkPolicy":"true","env":{"A":"1"}}')
    facts = eks_facts(aws_node("false"))
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    view = doc["cloud"]["view"]
    assert view["identity"]["clusterName"] == "prod"
    assert view["identity"]["region"] == "us-west-2"
    assert view["identity"]["id"].endswith(":cluster/prod")
    assert view["setting"] == {"autoMode": False, "vpcCni": {
        "version": "v1.19.2-eksbuild.1", "status": "ACTIVE", "enableNetworkPolicy": "true"}}
    assert (view["engine"], view["state"], view["kubernetesVersion"]) == (
        "aws-network-policy-agent", "ACTIVE", "1.31")
    (line,) = doc["cloud"]["findings"]
    assert "runs aws-network-policy-agent, but no aws-network-policy-agent DaemonSet" in line
    assert eks.mutations() == []

    facts = eks_facts(aws_node("true"))
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    assert doc["cloud"]["agree"] is True


def test_eks_calico_installed_in_the_cluster_is_one_the_cloud_does_not_know(
        eks: EksServer) -> None:
    eks.seed("prod", version="1.31")
    facts = eks_facts(aws_node("false"), ds("calico-system", "calico-node"))
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    assert doc["cloud"]["view"]["engine"] is None
    assert doc["cloud"]["view"]["setting"]["vpcCni"]["enableNetworkPolicy"] is None
    (line,) = doc["cloud"]["findings"]
    assert line.startswith("the cluster runs calico (calico-system/calico-node, ready 2/2)")


SUB = "1111aaaa-2222-3333-4444-555566667777"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmServer]:
    with ArmServer(poll_steps=1) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


def aks_facts(*daemonsets: DaemonSetFacts) -> ClusterFacts:
    return ClusterFacts(
        nodes=(NodeFacts("aks-nodepool1-12345678-vmss000000",
                         f"azure:///subscriptions/{SUB}/resourceGroups/MC_payments_prod-aks_"
                         "westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/"
                         "aks-nodepool1-12345678-vmss/virtualMachines/0",
                         {"kubernetes.azure.com/agentpool": "nodepool1",
                          "topology.kubernetes.io/region": "westeurope"}, "v1.37.2"),),
        daemonsets=daemonsets, server_version="v1.37.2")


def test_aks_policy_azure_in_arm_without_azure_npm_then_with_it(arm: ArmServer) -> None:
    arm.add(managed_cluster(SUB, "payments", "prod-aks", network_policy="azure"))
    facts = aks_facts()
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    view = doc["cloud"]["view"]
    assert view["identity"] == {
        "subscription": SUB, "resourceGroup": "payments", "clusterName": "prod-aks",
        "region": "westeurope",
        "id": f"/subscriptions/{SUB}/resourceGroups/payments/providers/"
              "Microsoft.ContainerService/managedClusters/prod-aks"}
    assert view["setting"]["networkPolicy"] == "azure"
    assert view["setting"]["networkDataplane"] == "azure"
    assert (view["engine"], view["state"], view["kubernetesVersion"]) == (
        "azure-npm", "Succeeded", "1.37.2")
    (line,) = doc["cloud"]["findings"]
    assert "runs azure-npm, but no azure-npm DaemonSet is in the cluster" in line

    facts = aks_facts(ds("kube-system", "azure-npm"))
    found = decide(facts)
    doc = full(found, cloud_side(found, facts, NO_KUBE, CloudMode.AUTO))
    assert (doc["cloud"]["agree"], doc["cloud"]["findings"]) == (True, [])
    assert not arm.puts()


def test_eks_cluster_name_from_the_flag_when_the_cluster_does_not_show_it(
        eks: EksServer) -> None:
    # A plain kubeconfig and nodes without eksctl's label: the name is not derivable.
    eks.seed("prod", version="1.31")
    plain = ClusterFacts(
        nodes=(NodeFacts("ip-10-0-1-1.us-west-2.compute.internal",
                         "aws:///us-west-2a/i-0a1b2c3d4e5f67890",
                         {"eks.amazonaws.com/nodegroup": "ng-linux"}, "v1.31.2-eks-94953ac"),),
        daemonsets=(aws_node("false"),), server_version="v1.31.2-eks-7f9249a")
    found = decide(plain)
    unnamed = cloud_side(found, plain, NO_KUBE, CloudMode.AUTO)
    assert unnamed.status is CloudStatus.UNAVAILABLE
    assert "the EKS cluster name is not derivable" in unnamed.reason
    named = cloud_side(found, plain, NO_KUBE, CloudMode.AUTO, identity={"clusterName": "prod"})
    assert named.status is CloudStatus.READ
    assert named.view is not None and named.view.identity["clusterName"] == "prod"
    assert eks.mutations() == []
