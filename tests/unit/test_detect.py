"""Detection's rule on plain facts: each provider, engines, mixed and absent evidence, hints,
the --provider auto|NAME choice, and the JSON schema of `netiso detect -o json`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from typing import TYPE_CHECKING, Any, cast

import jsonschema
import pytest

from netiso.bootstrap.detect import (
    Detection,
    choose_provider,
    decide,
    parse_provider_option,
)
from netiso.errors import ExitCode, PreconditionFailed, UsageError
from netiso.kube import ClusterRef
from netiso.profiles import Provider
from netiso.providers import all_providers, get
from netiso.providers.aks import Aks
from netiso.providers.base import (
    CloudProvider,
    ClusterFacts,
    ContainerFacts,
    DaemonSetFacts,
    EnableContext,
    EnableRequest,
    EnforcementState,
    EngineSeen,
    NodeFacts,
    Strength,
)
from netiso.providers.eks import Eks
from netiso.providers.generic import Generic
from netiso.providers.gke import Gke

if TYPE_CHECKING:
    from netiso.kube import Kube

SCHEMA = json.loads(
    files("netiso.manifests").joinpath("schemas", "detect.schema.json").read_text("utf-8"))


def valid(detection: Detection) -> dict[str, Any]:
    doc = detection.to_json()
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


# --- realistic facts, as the providers' clusters show them ----------------------------------

EKS_NODE = NodeFacts(
    name="ip-192-168-12-34.us-west-2.compute.internal",
    provider_id="aws:///us-west-2b/i-0a1b2c3d4e5f67890",
    labels={"eks.amazonaws.com/nodegroup": "ng-1", "eks.amazonaws.com/capacityType": "ON_DEMAND",
            "topology.kubernetes.io/region": "us-west-2"},
    kubelet_version="v1.31.2-eks-94953ac",
)
GKE_NODE = NodeFacts(
    name="gke-prod-default-pool-1a2b3c4d-x7k2",
    provider_id="gce://acme-prod/europe-west1-b/gke-prod-default-pool-1a2b3c4d-x7k2",
    labels={"cloud.google.com/gke-nodepool": "default-pool",
            "cloud.google.com/gke-os-distribution": "cos",
            "topology.kubernetes.io/region": "europe-west1"},
    kubelet_version="v1.30.5-gke.1014001",
)
AKS_NODE = NodeFacts(
    name="aks-nodepool1-12345678-vmss000000",
    provider_id="azure:///subscriptions/1111aaaa-2222-3333-4444-555566667777/resourceGroups/"
    "mc_payments_prod-aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/"
    "aks-nodepool1-12345678-vmss/virtualMachines/0",
    labels={"kubernetes.azure.com/cluster": "MC_payments_prod-aks_westeurope",
            "kubernetes.azure.com/agentpool": "nodepool1",
            "topology.kubernetes.io/region": "westeurope"},
    kubelet_version="v1.30.6",
)
PLAIN_NODE = NodeFacts(name="worker-1", kubelet_version="v1.31.1")


def aws_node(policy: str | None) -> DaemonSetFacts:
    containers = [ContainerFacts("aws-node", "602401143452.dkr.ecr.us-west-2.amazonaws.com/"
                                 "amazon-k8s-cni:v1.19.0")]
    if policy is not None:
        containers.append(ContainerFacts(
            "aws-eks-nodeagent", "602401143452.dkr.ecr.us-west-2.amazonaws.com/"
            "amazon/aws-network-policy-agent:v1.1.5",
            ("--enable-ipv6=false", f"--enable-network-policy={policy}",
             "--enable-cloudwatch-logs=false")))
    return DaemonSetFacts("kube-system", "aws-node", tuple(containers), desired=3, ready=3)


def ds(namespace: str, name: str, *argv: str, ready: int = 2) -> DaemonSetFacts:
    return DaemonSetFacts(namespace, name, (ContainerFacts(name, f"example/{name}", argv),),
                          desired=2, ready=ready)


def engines(d: Detection) -> list[str]:
    return [e.engine for e in d.enforcement.engines]


# --- each provider ----------------------------------------------------------------------------


def test_eks_from_nodes_with_the_vpc_cni_policy_agent_off() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE, EKS_NODE), daemonsets=(aws_node("false"),),
                            server_version="v1.31.2-eks-7f9249a"))
    assert d.provider is Provider.EKS
    assert d.reason == "5 cluster-side signals point to eks, none elsewhere"
    assert d.identity == {"region": "us-west-2"}
    assert d.kubelet_versions == ("v1.31.2-eks-94953ac",)
    assert engines(d) == []
    assert d.enforcement.status.value == "none-seen"
    sources = [(s.strength, s.source, s.said) for s in d.evidence]
    assert sources[0] == (Strength.NODE, "node spec.providerID (2 of 2 nodes)",
                          "aws:///us-west-2b/i-0a1b2c3d4e5f67890")
    assert (Strength.WORKLOAD, "daemonset kube-system/aws-node",
            "ready 3/3, its network policy agent is off") in sources
    doc = valid(d)
    assert doc["provider"] == "eks"
    assert [s["strength"] for s in doc["evidence"]] == sorted(
        (s["strength"] for s in doc["evidence"]),
        key=["node", "version", "workload", "hint"].index)


def test_eks_vpc_cni_policy_agent_on_is_an_engine() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE,), daemonsets=(aws_node("true"),)))
    assert d.provider is Provider.EKS
    assert engines(d) == ["aws-network-policy-agent"]
    assert d.enforcement.status.value == "enforcing"
    valid(d)


def test_eks_identity_from_arn_context_and_exec_plugin() -> None:
    ref = ClusterRef(context="arn:aws:eks:eu-central-1:123456789012:cluster/payments",
                     server="https://ABCDEF0123456789.gr7.eu-central-1.eks.amazonaws.com",
                     exec_command="aws",
                     exec_args=("--region", "eu-central-1", "eks", "get-token", "--cluster-name",
                                "payments", "--output", "json"))
    node = NodeFacts(name="n", provider_id="aws:///eu-central-1a/i-0123456789abcdef0")
    d = decide(ClusterFacts(nodes=(node,), ref=ref))
    assert d.provider is Provider.EKS
    assert d.identity == {"clusterName": "payments", "region": "eu-central-1",
                          "account": "123456789012"}
    hints = [s.source for s in d.evidence if s.strength is Strength.HINT]
    assert hints == ["kubeconfig server URL", "kubeconfig context", "kubeconfig exec plugin"]
    valid(d)


def test_gke_dataplane_v2_and_identity() -> None:
    ref = ClusterRef(context="gke_acme-prod_europe-west1_prod",
                     exec_command="gke-gcloud-auth-plugin")
    d = decide(ClusterFacts(nodes=(GKE_NODE,), daemonsets=(ds("kube-system", "anetd"),),
                            server_version="v1.30.5-gke.1014001", ref=ref))
    assert d.provider is Provider.GKE
    assert engines(d) == ["anetd"]
    assert d.identity == {"project": "acme-prod", "location": "europe-west1",
                          "clusterName": "prod", "zone": "europe-west1-b",
                          "region": "europe-west1"}
    valid(d)


def test_gke_legacy_calico_is_reported_as_calico() -> None:
    d = decide(ClusterFacts(nodes=(GKE_NODE,), daemonsets=(ds("kube-system", "calico-node"),)))
    assert d.provider is Provider.GKE
    assert engines(d) == ["calico"]
    valid(d)


def test_aks_with_azure_npm_and_identity_from_the_node_resource_group() -> None:
    d = decide(ClusterFacts(nodes=(AKS_NODE,), daemonsets=(ds("kube-system", "azure-npm"),),
                            ref=ClusterRef(server="https://prod-aks-dns-1a2b3c4d.hcp.westeurope."
                                           "azmk8s.io:443")))
    assert d.provider is Provider.AKS
    assert engines(d) == ["azure-npm"]
    assert d.identity == {
        "subscription": "1111aaaa-2222-3333-4444-555566667777",
        "nodeResourceGroup": "mc_payments_prod-aks_westeurope", "region": "westeurope",
        "resourceGroup": "payments", "clusterName": "prod-aks",
    }
    valid(d)


def test_aks_node_resource_group_with_extra_underscores_is_not_split() -> None:
    node = NodeFacts(name="n", provider_id="azure:///subscriptions/s/resourceGroups/"
                     "MC_my_rg_prod_westeurope/providers/x",
                     labels={"topology.kubernetes.io/region": "westeurope"})
    d = decide(ClusterFacts(nodes=(node,)))
    assert d.identity == {"subscription": "s", "nodeResourceGroup": "MC_my_rg_prod_westeurope",
                          "region": "westeurope"}


def test_generic_with_calico_and_cilium_anywhere() -> None:
    d = decide(ClusterFacts(nodes=(PLAIN_NODE,), daemonsets=(
        ds("calico-system", "calico-node"), ds("kube-system", "cilium", ready=0))))
    assert d.provider is Provider.GENERIC
    assert d.reason == "no cluster-side provider evidence"
    assert engines(d) == ["calico", "cilium"]
    assert d.enforcement.status.value == "enforcing"
    valid(d)


def test_kube_router_without_its_firewall_is_no_engine() -> None:
    off = decide(ClusterFacts(daemonsets=(
        ds("kube-system", "kube-router", "/usr/local/bin/kube-router", "--run-firewall=false"),)))
    on = decide(ClusterFacts(daemonsets=(
        ds("kube-system", "kube-router", "--run-router=true", "--run-firewall", "true"),)))
    assert engines(off) == []
    assert off.enforcement.status.value == "none-seen"
    assert engines(on) == ["kube-router"]


def test_engine_daemonset_with_no_ready_pods_is_not_ready() -> None:
    d = decide(ClusterFacts(daemonsets=(ds("calico-system", "calico-node", ready=0),)))
    assert d.enforcement.status.value == "not-ready"


# --- the rule: mixed, absent, hints -------------------------------------------------------------


def test_mixed_cluster_side_evidence_is_generic() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE, GKE_NODE)))
    assert d.provider is Provider.GENERIC
    assert d.reason == "mixed cluster-side evidence (eks, gke): not guessing"
    assert d.identity == {}
    assert {s.points_to for s in d.evidence} == {Provider.EKS, Provider.GKE}
    valid(d)


def test_a_provider_daemonset_on_other_nodes_makes_it_mixed() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE,), daemonsets=(ds("kube-system", "azure-npm"),)))
    assert d.provider is Provider.GENERIC
    assert "mixed" in d.reason
    assert engines(d) == ["azure-npm"]  # still enforcing, whatever the provider


def test_hints_alone_are_not_enough() -> None:
    ref = ClusterRef(context="arn:aws:eks:us-east-1:123456789012:cluster/dev",
                     server="https://0123ABCD.yl4.us-east-1.eks.amazonaws.com")
    d = decide(ClusterFacts(nodes=(PLAIN_NODE,), ref=ref))
    assert d.provider is Provider.GENERIC
    assert d.reason == ("no cluster-side provider evidence; kubeconfig hints for eks are not "
                        "enough (pass --provider to use them)")
    assert [s.strength for s in d.evidence] == [Strength.HINT, Strength.HINT]
    valid(d)


def test_hints_never_override_the_cluster() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE,), ref=ClusterRef(context="gke_p_us-east1_renamed")))
    assert d.provider is Provider.EKS
    assert d.reason.endswith("; kubeconfig hints for gke ignored")


def test_nothing_readable_is_generic_and_says_what_was_missing() -> None:
    d = decide(ClusterFacts(unreadable=("nodes: forbidden (cannot list nodes)",
                                        "daemonsets: forbidden (cannot list daemonsets)")))
    assert d.provider is Provider.GENERIC
    assert d.reason == "no cluster-side provider evidence; could not read nodes, daemonsets"
    assert valid(d)["unreadable"][0].startswith("nodes: forbidden")


def test_empty_cluster_is_generic() -> None:
    d = decide(ClusterFacts())
    assert (d.provider, d.evidence, d.enforcement.engines) == (Provider.GENERIC, (), ())
    valid(d)


# --- --provider auto|NAME -----------------------------------------------------------------------


def test_auto_takes_the_detected_provider() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE,)))
    choice = choose_provider(None, d, force=False)
    assert choice.provider is Provider.EKS
    assert choice.message == ("provider eks (3 cluster-side signals point to eks, none "
                              "elsewhere); pass --provider to override")


def test_explicit_provider_agreeing_or_on_an_undecided_cluster_stands() -> None:
    assert choose_provider(Provider.EKS, decide(ClusterFacts(nodes=(EKS_NODE,))),
                           force=False).provider is Provider.EKS
    assert choose_provider(Provider.GKE, decide(ClusterFacts(nodes=(PLAIN_NODE,))),
                           force=False).provider is Provider.GKE


def test_explicit_provider_contradicting_the_cluster_is_exit_4_unless_forced() -> None:
    d = decide(ClusterFacts(nodes=(EKS_NODE,)))
    for wrong in (Provider.GENERIC, Provider.GKE):
        with pytest.raises(PreconditionFailed) as err:
            choose_provider(wrong, d, force=False)
        assert err.value.exit_code == ExitCode.PRECONDITION
        assert err.value.one_line() == (
            f"--provider {wrong.value} contradicts the cluster, which looks like eks (node "
            "spec.providerID (1 of 1 node): aws:///us-west-2b/i-0a1b2c3d4e5f67890) (use "
            f"--provider eks or auto, or pass --force to use {wrong.value} anyway)")
    forced = choose_provider(Provider.GENERIC, d, force=True)
    assert (forced.provider, forced.overridden) == (Provider.GENERIC, True)


def test_provider_option_values() -> None:
    assert parse_provider_option("auto") is None
    assert parse_provider_option("EKS") is Provider.EKS
    with pytest.raises(UsageError) as err:
        parse_provider_option("openstack")
    assert err.value.one_line() == ("--provider: unknown provider 'openstack'; allowed: auto, "
                                    "eks, gke, aks, generic")


# --- the seam ---------------------------------------------------------------------------------


def test_every_provider_satisfies_the_protocol_and_refuses_enable_naming_its_issue() -> None:
    seams: list[CloudProvider] = [Eks(), Gke(), Aks(), Generic()]
    assert [s.name for s in seams] == [p.name for p in all_providers()]
    # EKS (#10), GKE (#11) and AKS (#12) have landed: each has its own enable tests.
    for provider in (Provider.EKS, Provider.GKE, Provider.AKS):
        assert get(provider).profile.provider is provider
    with pytest.raises(PreconditionFailed):
        get(Provider.GENERIC).plan_enable(_context(EnforcementState()))
    # EKS's (#10): --engine vpc-cni without the cluster's EKS name refuses before any call.
    ctx = _context(EnforcementState())
    with pytest.raises(PreconditionFailed) as eks:
        get(Provider.EKS).plan_enable(EnableContext(
            facts=ctx.facts, state=ctx.state, identity={}, kube=ctx.kube,
            request=EnableRequest(engine="vpc-cni")))
    assert eks.value.hint == "pass --cluster-name (and --region)"
    # GKE's cloud side has landed (#11): without a project it refuses before any cloud call.
    with pytest.raises(PreconditionFailed, match="project") as refused:
        get(Provider.GKE).plan_enable(_context(EnforcementState()))
    assert refused.value.hint == "pass --project"
    # AKS's cloud side landed (#12): with no subscription to ask ARM about, a precondition.
    with pytest.raises(PreconditionFailed) as aks:
        get(Provider.AKS).plan_enable(_context(EnforcementState()))
    assert "--subscription" in (aks.value.hint or "")


def _context(state: EnforcementState) -> EnableContext:
    # No cluster call happens before the refusal: a kube client is never touched here.
    return EnableContext(facts=ClusterFacts(), state=state, identity={}, request=EnableRequest(),
                         kube=cast("Kube", None))


def test_generic_enable_with_an_engine_running_is_already_enforcing() -> None:
    state = EnforcementState(engines=(EngineSeen("cilium", "kube-system/cilium", 2, 2),))
    plan = get(Provider.GENERIC).plan_enable(_context(state))
    assert (plan.already, plan.engine, plan.pending) == ("cilium", "cilium", ())


def test_detection_loads_no_cloud_sdk() -> None:
    # A fresh interpreter: what `netiso detect` imports, then every provider's evidence.
    code = (
        "import sys\n"
        "import netiso.cli, netiso.commands.detect, netiso.bootstrap.detect as d\n"
        "from netiso.providers.base import ClusterFacts, NodeFacts\n"
        "d.decide(ClusterFacts(nodes=(NodeFacts('n', 'aws:///us-east-1a/i-1'),)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')"
        " or m.startswith('google.cloud')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    # google.cloud, not google: the kubernetes client itself imports google.auth (its GCP
    # kubeconfig auth provider) as soon as a command reads a cluster.
    assert out.stdout.strip() == "[]"


def test_help_loads_no_cloud_sdk_nor_the_kubernetes_client() -> None:
    code = (
        "import sys\n"
        "from netiso.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}\n"
        "             & {'boto3', 'botocore', 'azure', 'google', 'kubernetes'}), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert "detect" in out.stdout
    assert out.stderr.strip() == "[]"
