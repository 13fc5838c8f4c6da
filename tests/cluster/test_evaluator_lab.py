"""The evaluator against real traffic: `netiso simulate --live` predicts what kube-router does.

For each policy set, the test applies the policies to the lab's real API server and asks both
code paths of the evaluator, on the live objects read through netiso.kube: the per-flow one
(``netiso simulate --live --flows``, the real CLI, every pod pair on two ports) and the bitset
one (``Engine.matrix`` for each port over every pair, and the CLI's matrix mode, ``simulate
--live -o json`` without flows, for the declared ports it streams). It measures the same pairs
with real TCP connections from inside the pods, and each path must agree with them cell by
cell. Every pod listens on both ports whatever it declares, so a connection fails only because
of policy; declared container ports differ per pod so named ports mean different numbers on
different destinations. Pod-to-itself cells are left out: the spec always allows them, but
through the pod's own IP the packets hairpin, which is where plugins differ.

kube-router applies changes asynchronously, so each set is measured until the real matrix
equals the prediction or the settle time runs out; then the last difference is reported cell by
cell. The lab is shared: if someone else's test has enforcement off while we measure, the round
does not count (we never toggle it ourselves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso.cli import main
from netiso.commands.simulate import load_cluster
from netiso.console import GlobalOptions, Reporter
from netiso.policy import Engine
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

PORTS = (8080, 9090)
SETTLE = 45.0
WAIT_FOR_ENFORCEMENT = 300.0
SERVE = ("nc -ll -p 8080 -e echo ok & nc -ll -p 9090 -e echo ok & wait")

# name -> (namespace key, labels, declared container ports)
PODS: dict[str, tuple[str, dict[str, str], list[dict[str, Any]]]] = {
    "web": ("a", {"app": "web", "tier": "front"},
            [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}]),
    "api": ("a", {"app": "api", "tier": "back"},
            [{"containerPort": 9090, "name": "http"}, {"containerPort": 8080}]),
    "db": ("a", {"app": "db"}, [{"containerPort": 8080, "name": "db"}]),
    "client": ("b", {"app": "client", "team": "x"}, [{"containerPort": 8080, "name": "http"}]),
    "other": ("b", {"app": "other"}, []),
}


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def policy_sets(ns_b: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(namespace key, policy) per set; each set replaces the previous one."""
    return {
        "named-ports": [
            ("a", policy("deny-in", {"podSelector": {}, "policyTypes": ["Ingress"]})),
            # "http" is 8080 on web, 9090 on api, absent on db.
            ("a", policy("allow-http", {"podSelector": {}, "ingress": [
                {"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]})),
        ],
        "match-expressions": [
            ("a", policy("tiers", {
                "podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "back"]}]},
                "ingress": [{"from": [{
                    "namespaceSelector": {"matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                         "values": ["nothing-here"]}]},
                    # NotIn matches pods without the key: every pod but the client.
                    "podSelector": {"matchExpressions": [
                        {"key": "team", "operator": "NotIn", "values": ["x"]}]},
                }]}]})),
            ("a", policy("untiered", {
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
                "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "Exists"}]}}], "ports": [{"port": 8080}]}]})),
        ],
        "egress-and-ingress": [
            ("b", policy("client-out", {
                "podSelector": {"matchLabels": {"team": "x"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {
                    "matchLabels": {"app": "web"}}}], "ports": [{"port": "metrics"}]},
                    {"to": [{"podSelector": {}}], "ports": [{"port": 8080, "protocol": "TCP"}]}],
            })),
            ("a", policy("db-from-b", {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": ns_b}}}]}]})),
        ],
    }


@pytest.fixture
def world(lab: LabClient, namespace: str) -> Iterator[dict[str, str]]:
    """Namespaces a and b with the five pods, all Running; yields key -> namespace name."""
    ns_b = f"{namespace}-b"[:63]
    lab.core.create_namespace({"metadata": {"name": ns_b, "labels": {"netiso-lab/test": "true"}}})
    names = {"a": namespace, "b": ns_b}
    try:
        nodes = [n.name for n in lab.spec.nodes]
        for i, (pod, (key, labels, ports)) in enumerate(PODS.items()):
            container: dict[str, Any] = {"name": "main", "image": "busybox:1.36",
                                         "command": ["sh", "-c", SERVE]}
            if ports:
                container["ports"] = ports
            lab.core.create_namespaced_pod(names[key], {
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": [container], "restartPolicy": "Never",
                         "terminationGracePeriodSeconds": 1,
                         "nodeName": nodes[i % len(nodes)]},
            })
        for pod, (key, _, _) in PODS.items():
            lab.wait_for_pod_running(names[key], pod)
        yield names
    finally:
        lab.core.delete_namespace(ns_b, propagation_policy="Background")


def predicted(lab: LabClient, names: dict[str, str], tmp_path: Path,
              capsys: pytest.CaptureFixture[str]) -> dict[tuple[str, str, int], bool]:
    """`netiso simulate --live --flows` for every ordered pair of distinct pods and port."""
    keys = {pod: f"{names[key]}/{pod}" for pod, (key, _, _) in PODS.items()}
    flows = [{"from": keys[s], "to": keys[d], "port": port}
             for s in PODS for d in PODS if s != d for port in PORTS]
    path = tmp_path / "flows.yaml"
    path.write_text(yaml.safe_dump({"flows": flows}))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["--kubeconfig", str(lab.kubeconfig), "-o", "json", "simulate", "--live",
              "--flows", str(path)])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    inverse = {v: k for k, v in keys.items()}
    return {(inverse[f["from"]], inverse[f["to"]], f["port"]): f["allowed"]
            for f in json.loads(out)["flows"]}


Cell = tuple[str, str, int]


def predicted_by_matrix(lab: LabClient, names: dict[str, str],
                        capsys: pytest.CaptureFixture[str]) -> tuple[dict[Cell, bool],
                                                                     dict[Cell, bool]]:
    """The bitset path: ``Engine.matrix`` per port over the live objects (every cell), and the
    CLI's streamed matrix (the cells of each destination's declared ports)."""
    keys = {pod: f"{names[key]}/{pod}" for pod, (key, _, _) in PODS.items()}
    rep = Reporter(GlobalOptions(kubeconfig=str(lab.kubeconfig), verbosity=-1))
    engine = Engine(load_cluster(rep, [], live=True))
    by_engine: dict[Cell, bool] = {}
    for port in PORTS:
        m = engine.matrix(port, "TCP")
        for s in PODS:
            for d in PODS:
                if s != d:
                    by_engine[(s, d, port)] = m.allowed(keys[s], keys[d])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["--kubeconfig", str(lab.kubeconfig), "-o", "json", "simulate", "--live"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    inverse = {v: k for k, v in keys.items()}
    by_cli = {(inverse[f["from"]], inverse[f["to"]], f["port"]): f["allowed"]
              for f in json.loads(out)["flows"]
              if f["from"] in inverse and f["to"] in inverse and f["from"] != f["to"]
              and f["protocol"] == "TCP"}
    declared = {(s, d, p["containerPort"]) for s in PODS for d, (_, _, ports) in PODS.items()
                for p in ports if s != d}
    assert set(by_cli) == declared, "the CLI matrix covers each destination's declared ports"
    return by_engine, by_cli


def measured(lab: LabClient, names: dict[str, str]) -> dict[tuple[str, str, int], bool] | None:
    """Real connections for every cell; None when enforcement was off at any point."""
    if lab.enforcement_state != "on":
        return None
    ips = {pod: lab.pod_ip(names[key], pod) for pod, (key, _, _) in PODS.items()}
    cells = [(s, d, port) for s in PODS for d in PODS if s != d for port in PORTS]

    def probe(cell: tuple[str, str, int]) -> bool:
        s, d, port = cell
        return lab.can_connect(names[PODS[s][0]], s, ips[d], port, timeout=2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(cells, pool.map(probe, cells), strict=True))
    if lab.enforcement_state != "on":
        return None
    return results


def apply_set(lab: LabClient, names: dict[str, str],
              policies: list[tuple[str, dict[str, Any]]]) -> None:
    for ns in names.values():
        for old in lab.networking.list_namespaced_network_policy(ns).items:
            lab.networking.delete_namespaced_network_policy(old.metadata.name, ns)
    for key, body in policies:
        lab.networking.create_namespaced_network_policy(names[key], body)


def test_simulate_matches_real_traffic(lab: LabClient, world: dict[str, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """For several policy sets (named ports, matchExpressions, egress + ingress), the
    evaluator's verdict for every pod pair and port equals what real traffic does, on both of
    its paths: per flow (`--flows`) and the whole matrix (`Engine.matrix`, and the CLI's
    streamed matrix)."""
    for name, policies in policy_sets(world["b"]).items():
        apply_set(lab, world, policies)
        expected = predicted(lab, world, tmp_path, capsys)
        assert any(expected.values()) and not all(expected.values()), \
            f"{name}: a set that allows everything or nothing proves little"
        by_matrix, by_cli_matrix = predicted_by_matrix(lab, world, capsys)
        # Only rounds measured with enforcement on spend the settle time; waiting for someone
        # else's enforcement-off block to end is capped separately.
        settle_left, give_up = SETTLE, time.monotonic() + WAIT_FOR_ENFORCEMENT
        real: dict[tuple[str, str, int], bool] | None = None
        while settle_left > 0 and time.monotonic() < give_up:
            started = time.monotonic()
            attempt = measured(lab, world)
            if attempt is None:
                time.sleep(2)
                continue
            real = attempt
            if real == expected:
                break
            time.sleep(2)
            settle_left -= time.monotonic() - started
        assert real is not None, f"{name}: enforcement was never on while measuring"
        for path, predicted_cells in (("--flows", expected), ("Engine.matrix", by_matrix),
                                      ("the CLI matrix", by_cli_matrix)):
            diff = [f"{s} -> {d}:{p} netiso {'allow' if want else 'deny'}, "
                    f"real {'open' if real[(s, d, p)] else 'closed'}"
                    for (s, d, p), want in sorted(predicted_cells.items())
                    if want != real[(s, d, p)]]
            assert not diff, (f"{name}: the evaluator ({path}) and real traffic disagree:\n"
                              + "\n".join(diff))
