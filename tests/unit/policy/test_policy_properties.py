"""Property tests: invariants that hold for every cluster, checked on generated ones.

The strongest check is differential: a deliberately naive oracle, written straight from the
spec text (every pair, every policy, label maps and IP containment, no bitsets), must agree
with both engine paths. The others are invariants of the API's design: policies are a union
(order-free), allow rules only add for a fixed set of isolated pods, a deny-all only removes,
and labels no selector mentions cannot matter.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netiso.policy import Cluster, Direction, Engine, Peer, Pod, PortMatch, Protocol, Rule

from .policy_builders import Obj, netpol, ns, pod

NAMESPACES = ["n0", "n1", "n2"]
KEYS = ["app", "tier", "team"]
VALUES = ["a", "b", "c"]
PORTS = [  # (number, name, protocol): "http" is 80 on some pods and 8080 on others
    (80, "http", "TCP"), (8080, "http", "TCP"), (53, "dns", "UDP"), (443, None, "TCP"),
]
PROBES = [(80, Protocol.TCP), (8080, Protocol.TCP), (53, Protocol.UDP), (443, Protocol.TCP),
          (53, Protocol.TCP)]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)

expression_st = st.one_of(
    st.builds(lambda k, vs: {"key": k, "operator": "In", "values": vs},
              st.sampled_from(KEYS), st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
    st.builds(lambda k, vs: {"key": k, "operator": "NotIn", "values": vs},
              st.sampled_from(KEYS), st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)),
    st.builds(lambda k: {"key": k, "operator": "Exists"}, st.sampled_from(KEYS)),
    st.builds(lambda k: {"key": k, "operator": "DoesNotExist"}, st.sampled_from(KEYS)),
)
selector_st = st.builds(
    lambda ml, me: {**({"matchLabels": ml} if ml else {}),
                    **({"matchExpressions": me} if me else {})},
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1),
    st.lists(expression_st, max_size=2),
)
ipblock_st = st.sampled_from([
    {"cidr": "10.0.0.0/16"}, {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]},
    {"cidr": "10.0.2.0/24"}, {"cidr": "203.0.113.0/24"}, {"cidr": "0.0.0.0/0",
                                                          "except": ["10.0.0.0/8"]},
])
peer_st = st.one_of(
    st.builds(lambda p: {"podSelector": p}, selector_st),
    st.builds(lambda n: {"namespaceSelector": n}, selector_st),
    st.builds(lambda n, p: {"namespaceSelector": n, "podSelector": p}, selector_st, selector_st),
    st.builds(lambda b: {"ipBlock": b}, ipblock_st),
)
port_st = st.sampled_from([
    {"port": 80}, {"port": "http"}, {"port": 50, "endPort": 100}, {"protocol": "UDP"},
    {"port": "dns", "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}, {"port": 8080},
])
rule_st = st.builds(lambda peers, ports: {"peers": peers, "ports": ports},
                    st.lists(peer_st, max_size=2), st.lists(port_st, max_size=2))
policy_st = st.fixed_dictionaries({
    "namespace": st.sampled_from(NAMESPACES),
    "selector": selector_st,
    "types": st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
    "ingress": st.lists(rule_st, max_size=2),
    "egress": st.lists(rule_st, max_size=2),
})
pod_st = st.fixed_dictionaries({
    "namespace": st.sampled_from(NAMESPACES),
    "labels": labels_st,
    "ports": st.lists(st.sampled_from(PORTS), max_size=2, unique_by=lambda p: p[1] or p[0]),
})
world_st = st.fixed_dictionaries({
    "ns_labels": st.lists(labels_st, min_size=3, max_size=3),
    "pods": st.lists(pod_st, min_size=1, max_size=7),
    "policies": st.lists(policy_st, max_size=5),
})


def policy_obj(i: int, p: dict[str, Any]) -> Obj:
    spec: dict[str, Any] = {"podSelector": p["selector"]}
    if p["types"] is not None:
        spec["policyTypes"] = p["types"]
    spec["ingress"] = [{"from": r["peers"], "ports": r["ports"]} for r in p["ingress"]]
    spec["egress"] = [{"to": r["peers"], "ports": r["ports"]} for r in p["egress"]]
    return netpol(f"{p['namespace']}/p{i}", spec)


def objects(world: dict[str, Any], policies: list[dict[str, Any]] | None = None) -> list[Obj]:
    objs = [ns(name, **labels) for name, labels in zip(NAMESPACES, world["ns_labels"],
                                                       strict=True)]
    for i, p in enumerate(world["pods"]):
        ports = [{"containerPort": n, "protocol": proto, **({"name": nm} if nm else {})}
                 for n, nm, proto in p["ports"]]
        objs.append(pod(f"{p['namespace']}/pod{i}", f"10.0.{NAMESPACES.index(p['namespace'])}"
                        f".{i + 1}", ports, **p["labels"]))
    pols = world["policies"] if policies is None else policies
    objs.extend(policy_obj(i, p) for i, p in enumerate(pols))
    return objs


def matrices(objs: list[Obj]) -> dict[tuple[int, Protocol], list[int]]:
    eng = Engine(Cluster.from_objects(objs))
    return {probe: eng.matrix(*probe).allowed_from for probe in PROBES}


# --- the naive oracle, from the spec text ---------------------------------------------------

def _peer_matches(peer: Peer, policy_ns: str, other: Pod, cluster: Cluster) -> bool:
    if peer.ip_block is not None:
        return any(peer.ip_block.contains(ipaddress.ip_address(ip)) for ip in other.ips)
    if peer.namespace_selector is None:
        in_ns = other.namespace == policy_ns
    else:
        ns_labels = next(n.label_map for n in cluster.namespaces if n.name == other.namespace)
        in_ns = peer.namespace_selector.matches(ns_labels)
    return in_ns and (peer.pod_selector is None or peer.pod_selector.matches(other.label_map))


def _port_matches(pm: PortMatch, dst: Pod, port: int, proto: Protocol) -> bool:
    if pm.protocol is not proto:
        return False
    if pm.port is None:
        return True
    if isinstance(pm.port, str):
        return any(cp.name == pm.port and cp.protocol is proto and cp.number == port
                   for cp in dst.ports)
    return pm.port <= port <= (pm.end_port or pm.port)


def _rule_admits(rule: Rule, policy_ns: str, other: Pod, dst: Pod, port: int,
                 proto: Protocol, cluster: Cluster) -> bool:
    ports_ok = not rule.ports or any(_port_matches(pm, dst, port, proto) for pm in rule.ports)
    peers_ok = not rule.peers or any(_peer_matches(p, policy_ns, other, cluster)
                                     for p in rule.peers)
    return ports_ok and peers_ok


def oracle(cluster: Cluster, src: Pod, dst: Pod, port: int, proto: Protocol) -> bool:
    if src.key == dst.key:
        return True  # "a pod cannot block access to itself"

    def side(me: Pod, other: Pod, direction: Direction) -> bool:
        selecting = [p for p in cluster.policies if p.namespace == me.namespace
                     and direction in p.policy_types and p.pod_selector.matches(me.label_map)]
        if not selecting:
            return True
        return any(_rule_admits(r, p.namespace, other, dst, port, proto, cluster)
                   for p in selecting for r in p.rules(direction))

    return side(src, dst, Direction.EGRESS) and side(dst, src, Direction.INGRESS)


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(world_st)
def test_matrix_and_evaluate_agree_with_a_naive_oracle(world: dict[str, Any]) -> None:
    """The spec, evaluated pair by pair and policy by policy, is what both engine paths say."""
    cluster = Cluster.from_objects(objects(world))
    eng = Engine(cluster)
    for port, proto in PROBES:
        m = eng.matrix(port, proto)
        for s, src in enumerate(cluster.pods):
            for d, dst in enumerate(cluster.pods):
                want = oracle(cluster, src, dst, port, proto)
                assert m.allowed(s, d) is want, (src.key, dst.key, port, proto)
                assert eng.check(src.key, dst.key, port, proto).allowed is want


@SETTINGS
@given(world_st, st.randoms(use_true_random=False))
def test_union_is_order_independent(world: dict[str, Any], rnd: random.Random) -> None:
    """"policies are a union": the order of policies, rules and peers changes nothing."""
    before = matrices(objects(world))
    shuffled = []
    for i, p in enumerate(world["policies"]):
        q = dict(p)
        q["ingress"] = [dict(r, peers=rnd.sample(r["peers"], len(r["peers"])))
                        for r in rnd.sample(p["ingress"], len(p["ingress"]))]
        q["egress"] = rnd.sample(p["egress"], len(p["egress"]))
        shuffled.append((i, q))
    rnd.shuffle(shuffled)
    objs = objects(world, [])
    objs.extend(policy_obj(i, q) for i, q in shuffled)
    rnd.shuffle(objs)
    after = matrices(objs)
    # Pod order may differ after shuffling objects: compare by key.
    assert _by_key(objects(world), before) == _by_key(objs, after)


def _by_key(objs: list[Obj], mats: dict[tuple[int, Protocol], list[int]]
            ) -> dict[tuple[int, Protocol], set[tuple[str, str]]]:
    pods = Cluster.from_objects(objs).pods
    return {probe: {(pods[s].key, pods[d].key) for d, bits in enumerate(rows)
                    for s in range(len(pods)) if bits >> s & 1}
            for probe, rows in mats.items()}


@SETTINGS
@given(world_st, rule_st, st.integers(min_value=0), st.booleans())
def test_adding_allow_rules_never_removes_a_connection(world: dict[str, Any],
                                                       extra: dict[str, Any], which: int,
                                                       ingress: bool) -> None:
    """For a fixed set of isolated pods (same podSelectors and policyTypes), adding an allow
    rule to a policy never removes a connection."""
    if not world["policies"]:
        return
    before = matrices(objects(world))
    policies = [dict(p) for p in world["policies"]]
    target = policies[which % len(policies)]
    # Pin policyTypes so the new rule cannot change which pods are isolated (defaulting
    # would add Egress to a policy that gains its first egress rule).
    types = target["types"] or (["Ingress", "Egress"] if target["egress"] else ["Ingress"])
    target["types"] = types
    side = "ingress" if ingress else "egress"
    target[side] = [*target[side], extra]
    after = matrices(objects(world, policies))
    for probe in PROBES:
        for b, a in zip(before[probe], after[probe], strict=True):
            assert b & ~a == 0, probe


@SETTINGS
@given(world_st, st.sampled_from(NAMESPACES), st.sampled_from([["Ingress"], ["Egress"],
                                                                ["Ingress", "Egress"]]))
def test_deny_all_never_adds_a_connection(world: dict[str, Any], namespace: str,
                                          types: list[str]) -> None:
    """A policy with no rules only isolates: it can remove connections, never add one."""
    before = matrices(objects(world))
    objs = objects(world)
    objs.append(netpol(f"{namespace}/deny-all", {"podSelector": {}, "policyTypes": types}))
    after = matrices(objs)
    for probe in PROBES:
        for b, a in zip(before[probe], after[probe], strict=True):
            assert a & ~b == 0, probe


@SETTINGS
@given(world_st, st.sampled_from(VALUES))
def test_renaming_unrelated_labels_changes_nothing(world: dict[str, Any], value: str) -> None:
    """Labels no selector mentions cannot matter: adding or renaming them changes nothing."""
    before = matrices(objects(world))
    renamed = dict(world)
    renamed["pods"] = [dict(p, labels={**{f"unrelated.example/{k}": v
                                          for k, v in p["labels"].items()}, **p["labels"],
                                       "unrelated.example/extra": value})
                       for p in world["pods"]]
    renamed["ns_labels"] = [{**labels, "unrelated.example/ns": value}
                            for labels in world["ns_labels"]]
    assert matrices(objects(renamed)) == before


@SETTINGS
@given(world_st)
def test_unisolated_destinations_admit_everything_their_sources_send(
        world: dict[str, Any]) -> None:
    """"pods no policy selects are not isolated": their ingress side admits every source."""
    cluster = Cluster.from_objects(objects(world))
    eng = Engine(cluster)
    m = eng.matrix(80)
    for d in range(len(cluster.pods)):
        if not cluster.isolated[Direction.INGRESS] >> d & 1:
            assert m.ingress_from[d] == cluster.universe
            assert m.allowed_from[d] == m.egress_from[d]
