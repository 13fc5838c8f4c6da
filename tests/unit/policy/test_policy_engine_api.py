"""The engine API that plan and verify use: matrices, their diff, verdict details."""

from __future__ import annotations

from netiso.policy import Cluster, Direction, Engine, Protocol, explain

from .policy_builders import engine, netpol, ns, pod, sel

WORLD = [
    ns("a"), ns("b", team="x"),
    pod("a/web", "10.0.0.1", [{"containerPort": 80, "name": "http"}], app="web"),
    pod("a/db", "10.0.0.2", app="db"),
    pod("b/cli", "10.0.1.1", app="cli"),
]
DENY_A = netpol("a/deny", {"podSelector": {}})
WEB_FROM_B = netpol("a/web-from-b", {"podSelector": sel(app="web"), "ingress": [
    {"from": [{"namespaceSelector": sel(team="x")}], "ports": [{"port": "http"}]}]})


def test_matrix_accessors() -> None:
    m = engine(*WORLD, DENY_A, WEB_FROM_B).matrix(80, Protocol.TCP)
    assert m.allowed("b/cli", "a/web") and not m.allowed("a/db", "a/web")
    assert m.sources("a/web") == ["a/web", "b/cli"]  # a pod cannot block access to itself
    assert m.ingress_allows("b/cli", "a/web") and m.egress_allows("a/db", "a/web")
    pairs = set(m.allowed_pairs())
    assert ("b/cli", "a/web") in pairs and ("a/web", "b/cli") in pairs
    # web->cli, db->cli, cli->web, and every pod to itself
    assert m.count_allowed() == len(pairs) == 6
    assert {("a/web", "a/web"), ("a/db", "a/db"), ("b/cli", "b/cli")} <= pairs


def test_matrix_diff_before_after() -> None:
    """plan's question: which pairs a change opens and closes."""
    before = engine(*WORLD).matrix(80)
    after = engine(*WORLD, DENY_A, WEB_FROM_B).matrix(80)
    gained, lost = before.diff(after)
    assert gained == []
    # A deny-all never closes a pod to itself ("a pod cannot block access to itself").
    assert set(lost) == {("a/db", "a/web"), ("a/web", "a/db"), ("b/cli", "a/db")}
    # Different pod sets: only pods in both are compared.
    fewer = Engine(Cluster.from_objects([*WORLD[:-1], DENY_A])).matrix(80)
    gained, lost = before.diff(fewer)
    assert gained == [] and ("a/db", "a/web") in lost
    assert all("b/cli" not in pair for pair in lost)


def test_verdict_details_for_verify() -> None:
    """verify's question: what does policy say for this (src, dst, port, proto) flow, and why."""
    eng = engine(*WORLD, DENY_A, WEB_FROM_B)
    v = eng.check("a/db", "a/web", "http")
    assert (v.port, v.protocol, v.allowed) == (80, Protocol.TCP, False)
    assert v.ingress.isolated and v.ingress.policies == ("a/deny", "a/web-from-b")
    assert not v.ingress.allowed_by and "no ingress rule" in v.ingress.reason
    v = eng.check("b/cli", "a/web", 80)
    (match,) = v.ingress.allowed_by
    assert (match.policy, match.direction, match.rule, match.peer) == (
        "a/web-from-b", Direction.INGRESS, 0, 0)
    lines = explain(v)
    assert lines[0].startswith("egress of b/cli: not isolated")
    assert "allowed by a/web-from-b ingress[0]" in lines[1]
    assert eng.cluster.policies_selecting(eng.cluster.pod_index("a/web"), Direction.INGRESS) == (
        "a/deny", "a/web-from-b")
