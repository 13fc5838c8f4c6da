"""AKS network policy transitions: defaults from the cluster, refusals quoting the rule."""

from __future__ import annotations

import pytest

from netiso.providers.aks.transitions import (
    KUBENET_RETIREMENT,
    NPM_RETIREMENT,
    RULE_BYO_CNI,
    RULE_CILIUM_DATAPLANE,
    RULE_CILIUM_ONLY,
    RULE_NPM_PLUGIN,
    RULE_THROUGH_NONE,
    Profile,
    Refused,
    decide,
)

AZURE_CNI = Profile(network_plugin="azure", network_policy="none", network_dataplane="azure",
                    nodes=3)
OVERLAY = Profile(network_plugin="azure", network_policy=None, network_dataplane="azure",
                  network_plugin_mode="overlay", nodes=3)
KUBENET = Profile(network_plugin="kubenet", network_policy="none", nodes=3)


def test_azure_cni_defaults_to_azure_npm_with_its_retirement_and_node_limit() -> None:
    d = decide(AZURE_CNI, None)
    assert (d.policy, d.engine, d.already) == ("azure", "azure-npm", False)
    assert d.changes == {"networkPolicy": "azure"}
    assert NPM_RETIREMENT in d.warnings
    assert "2026-09-30" in NPM_RETIREMENT and "2028-09-30" in NPM_RETIREMENT
    assert any("250 nodes (this cluster has 3)" in w for w in d.warnings)


def test_kubenet_defaults_to_calico_and_warns_of_its_retirement() -> None:
    d = decide(KUBENET, None)
    assert (d.policy, d.changes) == ("calico", {"networkPolicy": "calico"})
    assert d.warnings == (KUBENET_RETIREMENT,)
    assert "2028-03-31" in KUBENET_RETIREMENT


def test_cilium_dataplane_means_cilium_policy() -> None:
    p = Profile(network_plugin="azure", network_policy="none", network_dataplane="cilium",
                network_plugin_mode="overlay")
    assert decide(p, None).changes == {"networkPolicy": "cilium"}
    assert decide(p, "cilium").policy == "cilium"
    with pytest.raises(Refused) as exc:
        decide(p, "azure")
    assert RULE_CILIUM_ONLY in exc.value.rule


@pytest.mark.parametrize("profile", [
    OVERLAY,
    Profile(network_plugin="azure", network_policy="none", network_dataplane="azure",
            pod_subnets=True),
])
def test_cilium_only_when_asked_and_the_dataplane_can_move(profile: Profile) -> None:
    assert decide(profile, None).policy == "azure"  # never chosen by default
    d = decide(profile, "cilium")
    assert d.changes == {"networkDataplane": "cilium", "networkPolicy": "cilium"}
    assert d.engine == "cilium"


@pytest.mark.parametrize(("profile", "why"), [
    (AZURE_CNI, "networkPlugin azure without pod subnets"),
    (KUBENET, "networkPlugin kubenet"),
    (Profile(network_plugin="azure", network_policy="none", network_plugin_mode="overlay",
             windows_pools=("win1",)), "Windows node pools win1"),
])
def test_cilium_refused_without_the_cilium_dataplane(profile: Profile, why: str) -> None:
    with pytest.raises(Refused) as exc:
        decide(profile, "cilium")
    assert RULE_CILIUM_DATAPLANE in exc.value.rule
    assert why in exc.value.rule


@pytest.mark.parametrize("policy", ["azure", "calico", "cilium"])
def test_a_set_policy_is_already_enforcing(policy: str) -> None:
    p = Profile(network_plugin="azure", network_policy=policy,
                network_dataplane="cilium" if policy == "cilium" else "azure")
    d = decide(p, None)
    assert d.already and d.policy == policy and d.changes == {}
    assert decide(p, policy).already


@pytest.mark.parametrize(("current", "requested", "rule"), [
    ("azure", "calico", RULE_THROUGH_NONE),
    ("calico", "azure", RULE_THROUGH_NONE),
    ("azure", "cilium", RULE_CILIUM_DATAPLANE),
    ("cilium", "azure", RULE_CILIUM_ONLY),
])
def test_switching_engines_is_refused_quoting_the_rule(current: str, requested: str,
                                                       rule: str) -> None:
    with pytest.raises(Refused) as exc:
        decide(Profile(network_plugin="azure", network_policy=current), requested)
    assert rule in exc.value.rule
    assert f"networkPolicy is {current}" in exc.value.rule
    assert "az aks update" in exc.value.hint


def test_azure_npm_needs_azure_cni() -> None:
    with pytest.raises(Refused) as exc:
        decide(KUBENET, "azure")
    assert RULE_NPM_PLUGIN in exc.value.rule
    assert decide(KUBENET, "calico").policy == "calico"
    assert decide(AZURE_CNI, "calico").policy == "calico"


def test_azure_npm_refused_beyond_250_nodes() -> None:
    big = Profile(network_plugin="azure", network_policy="none", nodes=251)
    with pytest.raises(Refused) as exc:
        decide(big, None)
    assert "not supported beyond 250 nodes; this cluster has 251" in exc.value.rule
    assert decide(Profile(network_plugin="azure", network_policy="none", nodes=250),
                  None).policy == "azure"


def test_windows_pools_warned_for_azure_npm() -> None:
    p = Profile(network_plugin="azure", network_policy="none", windows_pools=("win1",))
    assert any("win1" in w and "retired" in w for w in decide(p, None).warnings)


def test_byo_cni_has_nothing_to_turn_on() -> None:
    with pytest.raises(Refused) as exc:
        decide(Profile(network_plugin="none", network_policy="none"), None)
    assert exc.value.rule == RULE_BYO_CNI
