"""AKS's plan_enable against the ARM test server: which cluster, which step, what it says.

No cluster is needed for a plan: the facts are values and the kube client is never touched
before enable runs (the lab tests in tests/cluster/test_aks_enable.py run the whole sequence).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import pytest

from netiso.errors import PreconditionFailed, UsageError
from netiso.kube import ClusterRef
from netiso.providers.aks import PROVIDER as AKS
from netiso.providers.base import (
    ClusterFacts,
    EnableContext,
    EnableRequest,
    EnforcementState,
    EngineSeen,
)
from tests.servers.arm import ArmServer, managed_cluster

if TYPE_CHECKING:
    from netiso.kube import Kube

SUB = "11111111-2222-3333-4444-555555555555"
SERVER = "https://prod-dns-1a2b.hcp.westeurope.azmk8s.io:443"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmServer]:
    with ArmServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


def ctx(identity: dict[str, str], *, engines: tuple[EngineSeen, ...] = (),
        options: dict[str, str] | None = None) -> EnableContext:
    request = EnableRequest(options=options or {})
    return EnableContext(facts=ClusterFacts(ref=ClusterRef(server=SERVER)),
                         state=EnforcementState(engines=engines), identity=identity,
                         request=request, kube=cast("Kube", None))


def test_found_by_listing_when_the_node_resource_group_names_no_cluster(arm: ArmServer) -> None:
    arm.add(managed_cluster(SUB, "team-a", "other"))
    arm.add(managed_cluster(SUB, "payments", "prod", fqdn="prod-dns-1a2b.hcp.westeurope."
                            "azmk8s.io", network_plugin="kubenet"))
    plan = AKS.plan_enable(ctx({"subscription": SUB}))
    assert plan.engine == "calico" and plan.needs_consent
    [step] = plan.pending
    assert step.call is not None and step.call["set"] == {"networkPolicy": "calico"}
    assert step.call["url"].endswith("/resourceGroups/payments/providers/"
                                     "Microsoft.ContainerService/managedClusters/prod")
    assert any("kubenet retires on 2028-03-31" in w for w in plan.warnings)
    assert plan.cloud["networkProfile"]["networkPlugin"] == "kubenet"
    assert [c.path.rsplit("/", 1)[-1] for c in arm.log()] == ["managedClusters"]  # one list


def test_an_engine_installed_outside_aks_counts_as_enforcing(arm: ArmServer) -> None:
    arm.add(managed_cluster(SUB, "rg", "byo", network_plugin="none"))
    running = (EngineSeen("cilium", "kube-system/cilium", 3, 3),)
    plan = AKS.plan_enable(ctx({"subscription": SUB, "resourceGroup": "rg",
                                "clusterName": "byo"}, engines=running))
    assert (plan.already, plan.pending) == ("cilium", ())
    assert "installed outside AKS" in plan.warnings[0]
    with pytest.raises(PreconditionFailed) as exc:  # and without one: nothing AKS can turn on
        AKS.plan_enable(ctx({"subscription": SUB, "resourceGroup": "rg",
                             "clusterName": "byo"}))
    assert "networkPlugin none" in exc.value.message


def test_cilium_through_the_dataplane_on_overlay(arm: ArmServer) -> None:
    arm.add(managed_cluster(SUB, "rg", "ov", network_plugin_mode="overlay"))
    plan = AKS.plan_enable(ctx({"subscription": SUB, "resourceGroup": "rg", "clusterName": "ov"},
                               options={"networkPolicy": "cilium"}))
    [step] = plan.pending
    assert step.call is not None
    network = step.call["body"]["properties"]["networkProfile"]
    assert (network["networkDataplane"], network["networkPolicy"]) == ("cilium", "cilium")
    assert network["networkPluginMode"] == "overlay"
    assert plan.engine == "cilium"


def test_bad_and_foreign_options_are_usage_errors(arm: ArmServer) -> None:
    with pytest.raises(UsageError, match="--network-policy: 'kubenet' is not one of azure, "
                                         "calico, cilium"):
        AKS.plan_enable(ctx({"subscription": SUB}, options={"networkPolicy": "kubenet"}))
    with pytest.raises(UsageError, match="--calico-manifests does not apply to --provider aks"):
        AKS.plan_enable(ctx({"subscription": SUB}, options={"calicoManifests": "/m"}))
    assert arm.log() == []
