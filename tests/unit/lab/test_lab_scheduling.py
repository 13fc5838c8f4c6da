"""The node agent's scheduling rules (pure): taints and tolerations, DaemonSet node affinity."""

from __future__ import annotations

from tests.lab import node_agent


def test_taints_and_tolerations() -> None:
    taint = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
    plain: dict[str, object] = {"spec": {}}
    assert not node_agent.node_fits(plain, "n1", {}, [taint])
    for tol in ({"key": "dedicated", "value": "infra"},
                {"key": "dedicated", "operator": "Exists"},
                {"operator": "Exists"},
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}):
        assert node_agent.node_fits({"spec": {"tolerations": [tol]}}, "n1", {}, [taint]), tol
    for tol in ({"key": "dedicated", "value": "other"},
                {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}):
        assert not node_agent.node_fits({"spec": {"tolerations": [tol]}}, "n1", {}, [taint])
    soft = {"key": "x", "effect": "PreferNoSchedule"}
    assert node_agent.node_fits(plain, "n1", {}, [soft])
    cordoned = node_agent.node_taints({"spec": {"unschedulable": True}})
    assert cordoned == [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert node_agent.unschedulable_reasons(
        plain, {"n1": {}, "n2": {"zone": "a"}}, {"n1": [taint]}
    ) == "1 node(s) had untolerated taint(s)."


def test_daemonset_affinity_places_on_the_named_node() -> None:
    required = {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["lab-node-2"]}]}]}
    pod = {"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": required}}}}
    assert node_agent.node_fits(pod, "lab-node-2", {})
    assert not node_agent.node_fits(pod, "lab-node-1", {})
