"""The pure part of `netiso plan`: flows in use, the impact preview, the bundle's actions.

The bundle is the real render for the values given; the live objects are API-shaped dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netiso.bootstrap.plan import bundle_changes, flows_in_use, impact
from netiso.bundle import render_bundle
from netiso.commands.bootstrap import parse_duration
from netiso.config import load_values
from netiso.errors import UsageError
from netiso.policy import Cluster, Protocol
from tests.unit.policy.policy_builders import netpol, ns, pod

Obj = dict[str, Any]


def running(obj: Obj) -> Obj:
    obj["status"]["phase"] = "Running"
    return obj


def endpoint_slice(service: str, pods: list[str], ports: list[int],
                   label: bool = True) -> Obj:
    namespace, name = service.split("/")
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-abc", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": name} if label else {}},
        "endpoints": [{"addresses": ["10.0.0.9"],
                       "targetRef": {"kind": "Pod", "namespace": namespace,
                                     "name": p.split("/")[1]}} for p in pods],
        "ports": [{"port": p, "protocol": "TCP"} for p in ports],
    }


NAMESPACES = [ns("shop"), ns("client"), ns("kube-system")]
WEB = running(pod("shop/web", "10.0.1.1", app="web"))
PEER = running(pod("shop/peer", "10.0.1.2", app="peer"))
CLIENT = running(pod("client/c", "10.0.2.1", app="c"))
HOSTNET = running(pod("shop/agent", "10.9.9.9", host_network=True, node="n1"))
DONE = pod("client/job", "10.0.2.2", app="job")
DONE["status"]["phase"] = "Succeeded"
PODS = [WEB, PEER, CLIENT, HOSTNET, DONE]
SLICES = [endpoint_slice("shop/web", ["shop/web"], [8080, 9090])]


def bundle(tmp_path: Path, text: str, namespaces: list[str]) -> list[Obj]:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return render_bundle(load_values(path, provider="generic"), namespaces)


@pytest.fixture
def desired(tmp_path: Path) -> list[Obj]:
    # Port 9090 is kept open for app=web by the app-port allow; 8080 is not.
    return bundle(tmp_path, "appPorts:\n  - podSelector: {app: web}\n    ports: [9090]\n",
                  ["shop"])


def test_a_service_flow_from_another_namespace_is_cut_by_the_default_deny(
        desired: list[Obj]) -> None:
    found = impact(NAMESPACES, PODS, [], desired, SLICES)
    # One group: web on 8080, cut on ingress, from the client; client/c is the only running
    # pod of its namespace, so it is named as a pod.
    (flow,) = found.cut
    assert (flow.dst, flow.port, flow.protocol) == ("shop/web", 8080, Protocol.TCP)
    assert (flow.sources, flow.namespaces, flow.count) == (("client/c",), (), 1)
    assert found.cut_count == 1
    assert flow.via == ("service shop/web",)
    # Every policy isolating web for ingress, none of whose rules admits client/c on 8080.
    assert set(flow.ingress) == {"shop/netiso-default-deny-ingress",
                                 "shop/netiso-allow-same-namespace", "shop/netiso-allow-app-web"}
    assert flow.egress == ()
    # The app-port allow keeps 9090; the same namespace keeps 8080; a pod never cuts itself.
    assert "shop/peer" not in flow.sources
    # A hostNetwork pod is the node's network namespace: NetworkPolicy never isolates it.
    assert "shop/agent" not in {p.pod for p in found.isolated}


def test_isolated_pods_are_the_running_pods_the_bundle_selects_first(
        desired: list[Obj]) -> None:
    found = impact(NAMESPACES, PODS, [], desired, SLICES)
    isolated = {p.pod: p for p in found.isolated}
    assert set(isolated) == {"shop/web", "shop/peer"}
    assert "shop/netiso-default-deny-ingress" in isolated["shop/web"].ingress
    # Egress deny is opt-in, but the metadata deny selects every pod for egress too.
    assert isolated["shop/web"].egress == ("shop/netiso-deny-metadata-egress",)
    # A pod already isolated by a policy of its own is not "newly isolated" for that side.
    own = netpol("shop/own", {"podSelector": {"matchLabels": {"app": "peer"}},
                              "ingress": [{}]})
    again = impact(NAMESPACES, PODS, [own], desired, SLICES)
    assert {p.pod for p in again.isolated if p.ingress} == {"shop/web"}


def test_an_allow_all_the_cluster_already_has_keeps_every_flow(desired: list[Obj]) -> None:
    allow_all = netpol("shop/allow-all", {"podSelector": {}, "ingress": [{}]})
    found = impact(NAMESPACES, PODS, [allow_all], desired, SLICES)
    assert [c for c in found.cut if c.dst.startswith("shop/")] == []


def test_egress_deny_cuts_on_the_source_side(tmp_path: Path) -> None:
    desired = bundle(tmp_path, "policies:\n  defaultDenyEgress: true\n", ["client"])
    found = impact(NAMESPACES, PODS, [], desired, SLICES)
    # Both of web's ports: the app-port allow opens 9090's ingress, not the client's egress.
    assert [(c.port, c.sources, c.ingress) for c in found.cut] == [
        (8080, ("client/c",), ()), (9090, ("client/c",), ())]
    assert all("client/netiso-default-deny-egress" in c.egress for c in found.cut)


def test_a_namespace_whose_running_pods_are_all_cut_is_named_once(desired: list[Obj]) -> None:
    second = running(pod("client/d", "10.0.2.3", app="d"))
    found = impact(NAMESPACES, [*PODS, second], [], desired, SLICES)
    (flow,) = found.cut
    # client/job has finished: it is no source, and the namespace's running pods are all cut.
    assert (flow.namespaces, flow.sources, flow.count) == (("client",), (), 2)


def test_flows_in_use_are_service_endpoints_and_declared_ports() -> None:
    web = running(pod("shop/web", "10.0.1.1", [{"containerPort": 8080, "name": "http"}],
                      app="web"))
    gone = pod("shop/old", "10.0.1.7", [{"containerPort": 7000}], app="web")
    gone["status"]["phase"] = "Failed"
    cluster = Cluster.from_objects([*NAMESPACES, web, gone, CLIENT])
    slices = [endpoint_slice("shop/web", ["shop/web", "shop/old"], [8080, 9090]),
              endpoint_slice("shop/manual", ["shop/web"], [1234], label=False)]
    used = flows_in_use(cluster, slices)
    web_i = [p.key for p in cluster.pods].index("shop/web")
    assert used == {
        (8080, Protocol.TCP): {web_i: {"containerPort", "service shop/web"}},
        (9090, Protocol.TCP): {web_i: {"service shop/web"}},
    }


def test_counts_cover_every_running_source_but_the_destination(desired: list[Obj]) -> None:
    found = impact(NAMESPACES, PODS, [], desired, SLICES)
    # web on 8080 and 9090; sources: peer, c, agent (running, not web itself).
    assert found.flows_in_use == 2 * 3
    assert found.allowed_before == 6


def test_bundle_changes_create_update_and_prune(desired: list[Obj]) -> None:
    stale = netpol("shop/netiso-allow-app-old", {"podSelector": {}})
    stale["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "netiso"}
    stale["metadata"]["managedFields"] = [{"manager": "netiso", "operation": "Apply"}]
    changed = {**desired[0], "spec": {"podSelector": {"matchLabels": {"x": "y"}}}}
    (shop,) = bundle_changes(desired, ["shop"], [changed, stale])
    actions = dict(shop.objects)
    assert actions[desired[0]["metadata"]["name"]] == "update"
    assert set(actions.values()) == {"create", "update"}
    assert shop.prune == ("netiso-allow-app-old",)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1800", 1800.0), ("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("2.5m", 150.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10d", "m", "0", "0.5s", "1h 2m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--timeout"):
        parse_duration(text)
