"""Every rule of networking.k8s.io/v1 NetworkPolicy that issue 3 lists, one table per rule.

Each test quotes its rule and runs a table of (source, destination, port, protocol, expected)
rows against a small world built from the spec, not from the implementation. Each row is also
checked against the whole-matrix path when both ends are pods, so the two code paths of the
engine (per-flow explanation and bitset matrix) are held to the same answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from netiso.policy import Engine, PodEndpoint, Protocol

from .policy_builders import Obj, engine, expr, netpol, ns, pod, sel

Row = tuple[str, str, int | str, str | None, bool]

WORLD: list[Obj] = [
    ns("prod", env="prod"),
    ns("dev", env="dev"),
    ns("other"),
    pod("prod/web", "10.0.1.1", [{"containerPort": 8080, "name": "http"},
                                 {"containerPort": 9090, "name": "metrics"}], app="web",
        tier="front"),
    pod("prod/db", "10.0.1.2", [{"containerPort": 5432, "name": "pg"}], app="db"),
    pod("prod/job", "10.0.1.3"),
    pod("dev/web", "10.0.2.1", [{"containerPort": 8080, "name": "http"}], app="web"),
    pod("dev/tool", "10.0.2.2", app="tool", team="a"),
    pod("other/x", "10.0.3.1", [{"containerPort": 8080, "name": "web"},
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"}],
        app="x"),
]


def run_table(policies: list[Obj], rows: list[Row], world: list[Obj] | None = None) -> None:
    eng = engine(*(world if world is not None else WORLD), *policies)
    for src, dst, port, proto, want in rows:
        verdict = eng.check(src, dst, port, proto)
        assert verdict.allowed is want, (src, dst, port, proto, verdict)
        _agrees_with_matrix(eng, src, dst, verdict.port, verdict.protocol, want)


def _agrees_with_matrix(eng: Engine, src: str, dst: str, port: int, proto: Protocol,
                        want: bool) -> None:
    flow = eng.flow(src, dst, port, proto)
    if isinstance(flow.src, PodEndpoint) and isinstance(flow.dst, PodEndpoint):
        m = eng.matrix(port, proto)
        assert m.allowed(flow.src.index, flow.dst.index) is want, ("matrix", src, dst, port)


def deny_all(namespace: str, *types: str) -> Obj:
    spec: dict[str, Any] = {"podSelector": {}}
    if types:
        spec["policyTypes"] = list(types)
    return netpol(f"{namespace}/deny-all", spec)


def test_pods_no_policy_selects_are_not_isolated() -> None:
    """"pods no policy selects are not isolated" (both directions, any port)."""
    run_table([netpol("prod/only-db", {"podSelector": sel(app="db")})], [
        ("dev/tool", "prod/web", 8080, None, True),
        ("prod/web", "dev/tool", 1, "UDP", True),
        ("dev/tool", "prod/db", 5432, None, False),
        ("prod/db", "dev/tool", 80, None, True),  # only ingress is isolated by default
    ])


def test_policy_types_default() -> None:
    """"policyTypes defaults to [Ingress], plus Egress only when the egress list is non-empty"."""
    # No egress list: egress stays open while ingress is isolated.
    run_table([netpol("prod/p", {"podSelector": {}})], [
        ("prod/web", "dev/tool", 80, None, True),
        ("dev/tool", "prod/web", 8080, None, False),
    ])
    # An empty egress list counts as absent: still Ingress only.
    run_table([netpol("prod/p", {"podSelector": {}, "egress": []})], [
        ("prod/web", "dev/tool", 80, None, True),
    ])
    # A non-empty egress list adds Egress (and Ingress stays, with no rules: deny all in).
    run_table([netpol("prod/p", {"podSelector": {}, "egress": [{"to": [
        {"namespaceSelector": sel(env="dev")}]}]})], [
        ("prod/web", "dev/tool", 80, None, True),
        ("prod/web", "other/x", 8080, None, False),
        ("dev/tool", "prod/web", 8080, None, False),
    ])
    # Explicit [Egress]: ingress rules are ignored and ingress is not isolated.
    run_table([netpol("prod/p", {"podSelector": {}, "policyTypes": ["Egress"],
                                 "ingress": [{"from": [{"podSelector": sel(app="none")}]}]})], [
        ("dev/tool", "prod/web", 8080, None, True),
        ("prod/web", "dev/tool", 80, None, False),
    ])


def test_protocol_defaults_to_tcp() -> None:
    """"protocol defaults to TCP" (a port entry without protocol does not admit UDP)."""
    run_table([netpol("other/p", {"podSelector": {}, "ingress": [{"ports": [{"port": 53}]}]})], [
        ("dev/tool", "other/x", 53, "TCP", True),
        ("dev/tool", "other/x", 53, "UDP", False),
        ("dev/tool", "other/x", 53, "SCTP", False),
    ])


def test_match_labels_and_match_expressions() -> None:
    """"podSelector and namespaceSelector with matchLabels and matchExpressions (In; NotIn,
    which matches a missing key; Exists; DoesNotExist)"."""
    def allow_from(selector: Obj) -> list[Obj]:
        return [netpol("prod/p", {"podSelector": sel(app="db"), "ingress": [
            {"from": [{"namespaceSelector": {}, "podSelector": selector}]}]})]

    cases: list[tuple[Obj, dict[str, bool]]] = [
        (sel(app="web"), {"prod/web": True, "dev/web": True, "dev/tool": False,
                          "prod/job": False}),
        ({"matchExpressions": [expr("app", "In", "web", "tool")]},
         {"prod/web": True, "dev/tool": True, "other/x": False, "prod/job": False}),
        ({"matchExpressions": [expr("app", "NotIn", "web")]},
         {"prod/web": False, "dev/tool": True, "prod/job": True}),  # job has no app label
        ({"matchExpressions": [expr("team", "Exists")]},
         {"dev/tool": True, "prod/web": False}),
        ({"matchExpressions": [expr("team", "DoesNotExist")]},
         {"dev/tool": False, "prod/web": True, "prod/job": True}),
        # matchLabels AND matchExpressions
        ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("tier", "Exists")]},
         {"prod/web": True, "dev/web": False}),
    ]
    for selector, expected in cases:
        run_table(allow_from(selector),
                  [(src, "prod/db", 5432, None, want) for src, want in expected.items()])

    # The same operators on namespace labels.
    run_table([netpol("prod/p", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {"matchExpressions": [expr("env", "NotIn", "prod")]}}]}
    ]})], [
        ("dev/tool", "prod/db", 5432, None, True),
        ("other/x", "prod/db", 5432, None, True),  # other has no env label: NotIn matches
        ("prod/web", "prod/db", 5432, None, False),
    ])


def test_peer_selectors_and_within_or_between() -> None:
    """"namespaceSelector and podSelector in one peer = AND; separate peers = OR"."""
    run_table([netpol("prod/and", {"podSelector": sel(app="db"), "ingress": [{"from": [
        {"namespaceSelector": sel(env="dev"), "podSelector": sel(app="web")}]}]})], [
        ("dev/web", "prod/db", 5432, None, True),
        ("dev/tool", "prod/db", 5432, None, False),
        ("prod/web", "prod/db", 5432, None, False),
    ])
    run_table([netpol("prod/or", {"podSelector": sel(app="db"), "ingress": [{"from": [
        {"namespaceSelector": sel(env="dev")}, {"podSelector": sel(app="web")}]}]})], [
        ("dev/web", "prod/db", 5432, None, True),
        ("dev/tool", "prod/db", 5432, None, True),
        ("prod/web", "prod/db", 5432, None, True),
        ("prod/job", "prod/db", 5432, None, False),
        ("other/x", "prod/db", 5432, None, False),
    ])


def test_pod_selector_alone_is_the_policys_namespace() -> None:
    """"podSelector alone = the policy's namespace"."""
    run_table([netpol("prod/p", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"podSelector": sel(app="web")}]}]})], [
        ("prod/web", "prod/db", 5432, None, True),
        ("dev/web", "prod/db", 5432, None, False),
    ])
    # The policy itself only selects pods of its own namespace.
    run_table([netpol("prod/p", {"podSelector": sel(app="web")})], [
        ("dev/tool", "prod/web", 8080, None, False),
        ("dev/tool", "dev/web", 8080, None, True),
    ])


def test_empty_namespace_selector_is_every_namespace_never_external() -> None:
    """"namespaceSelector {} = every namespace and never an external IP"."""
    run_table([netpol("prod/p", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {}}]}]})], [
        ("dev/tool", "prod/db", 5432, None, True),
        ("other/x", "prod/db", 5432, None, True),
        ("prod/job", "prod/db", 5432, None, True),
        ("ip:203.0.113.10", "prod/db", 5432, None, False),
    ])
    run_table([deny_all("dev", "Egress"), netpol("dev/out", {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {}}]}]})], [
        ("dev/tool", "prod/db", 5432, None, True),
        ("dev/tool", "203.0.113.10", 443, None, False),
    ])


def test_ip_block_with_except() -> None:
    """"ipBlock with except" (cidr minus the except ranges; IPv4 and IPv6 separately)."""
    run_table([netpol("prod/p", {"podSelector": sel(app="web"), "ingress": [{"from": [
        {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}},
        {"ipBlock": {"cidr": "2001:db8::/32"}}]}]})], [
        ("ip:203.0.113.10", "prod/web", 8080, None, True),
        ("ip:203.0.113.200", "prod/web", 8080, None, False),
        ("198.51.100.1", "prod/web", 8080, None, False),
        ("ip:2001:db8::5", "prod/web", 8080, None, True),
        ("ip:2001:db9::5", "prod/web", 8080, None, False),
    ])
    run_table([netpol("dev/p", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]}]})], [
        ("dev/tool", "ip:8.8.8.8", 53, "UDP", True),
        ("dev/tool", "ip:169.254.169.254", 80, None, False),
    ])


def test_ports_number_named_end_port_and_protocols() -> None:
    """"Ports: number, named port (resolved on the destination pod's container ports, per
    destination), endPort inclusive ranges, protocol TCP/UDP/SCTP"."""
    # Named port "http" is 8080 on prod/web and dev/web; other/x calls 8080 "web".
    run_table([deny_all("other"), deny_all("prod"), netpol("prod/named", {
        "podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}),
        netpol("other/named", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})], [
        ("dev/tool", "prod/web", 8080, None, True),
        ("dev/tool", "prod/web", "http", None, True),
        ("dev/tool", "prod/web", 9090, None, False),
        ("dev/tool", "prod/db", 8080, None, False),   # db declares no "http"
        ("dev/tool", "other/x", 8080, None, False),   # 8080 is named "web" there
    ])
    # endPort: inclusive on both ends.
    run_table([netpol("dev/range", {"podSelector": sel(app="tool"), "ingress": [
        {"ports": [{"port": 32000, "endPort": 32768}]}]})], [
        ("prod/job", "dev/tool", 31999, None, False),
        ("prod/job", "dev/tool", 32000, None, True),
        ("prod/job", "dev/tool", 32768, None, True),
        ("prod/job", "dev/tool", 32769, None, False),
    ])
    # Protocols are distinct, and a protocol-only entry admits every port of it.
    run_table([netpol("dev/proto", {"podSelector": sel(app="tool"), "ingress": [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "SCTP"}]}]})], [
        ("prod/job", "dev/tool", 53, "UDP", True),
        ("prod/job", "dev/tool", 53, "TCP", False),
        ("prod/job", "dev/tool", 9999, "SCTP", True),
        ("prod/job", "dev/tool", 9999, "UDP", False),
    ])
    # Named ports of a UDP container port match only with protocol UDP.
    run_table([netpol("other/dns", {"podSelector": {}, "ingress": [
        {"ports": [{"port": "dns", "protocol": "UDP"}]}]})], [
        ("dev/tool", "other/x", 53, "UDP", True),
        ("dev/tool", "other/x", "dns", None, True),
        ("dev/tool", "other/x", 53, "TCP", False),
    ])


def test_named_ports_in_egress_resolve_on_the_destination() -> None:
    """"named port (resolved on the destination pod's container ports, per destination)" —
    for egress too; an external IP has no named ports."""
    run_table([netpol("dev/out", {"podSelector": sel(app="tool"), "policyTypes": ["Egress"],
                                  "egress": [{"ports": [{"port": "http"}]}]})], [
        ("dev/tool", "prod/web", 8080, None, True),
        ("dev/tool", "dev/web", 8080, None, True),
        ("dev/tool", "other/x", 8080, None, False),
        ("dev/tool", "ip:203.0.113.10", 8080, None, False),
    ])


def test_empty_from_to_is_everyone_and_empty_rule_allows_all() -> None:
    """"Empty from/to = everyone; `ingress: [{}]` allows all"."""
    run_table([netpol("prod/all", {"podSelector": sel(app="web"), "ingress": [{}]})], [
        ("dev/tool", "prod/web", 8080, None, True),
        ("ip:203.0.113.10", "prod/web", 1234, "UDP", True),
        ("prod/db", "prod/web", 9090, "SCTP", True),
    ])
    run_table([netpol("prod/ports-only", {"podSelector": sel(app="web"), "ingress": [
        {"ports": [{"port": 8080}]}]})], [
        ("ip:203.0.113.10", "prod/web", 8080, None, True),
        ("dev/tool", "prod/web", 8080, None, True),
        ("dev/tool", "prod/web", 9090, None, False),
    ])
    run_table([netpol("dev/egress-all", {"podSelector": {}, "policyTypes": ["Egress"],
                                         "egress": [{}]})], [
        ("dev/tool", "ip:203.0.113.10", 443, None, True),
        ("dev/tool", "prod/web", 8080, None, True),
    ])


def test_policies_are_a_union() -> None:
    """"policies are a union" (no policy can take away what another allows)."""
    run_table([
        deny_all("prod"),
        netpol("prod/from-dev", {"podSelector": sel(app="db"), "ingress": [
            {"from": [{"namespaceSelector": sel(env="dev")}]}]}),
        netpol("prod/from-web", {"podSelector": sel(app="db"), "ingress": [
            {"from": [{"podSelector": sel(app="web")}]}]}),
    ], [
        ("dev/tool", "prod/db", 5432, None, True),
        ("prod/web", "prod/db", 5432, None, True),
        ("prod/job", "prod/db", 5432, None, False),
        ("other/x", "prod/db", 5432, None, False),
    ])


def test_both_sides_must_allow() -> None:
    """"a connection is allowed iff the source's egress allows it AND the destination's
    ingress allows it"."""
    egress_to_web_only = netpol("dev/out", {"podSelector": sel(app="tool"), "policyTypes": [
        "Egress"], "egress": [{"to": [{"namespaceSelector": {}, "podSelector": sel(app="web")}]}]})
    ingress_db_from_tool = netpol("prod/in", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": sel(app="tool")}]}]})
    run_table([egress_to_web_only, ingress_db_from_tool], [
        ("dev/tool", "prod/web", 8080, None, True),    # egress yes, ingress not isolated
        ("dev/tool", "prod/db", 5432, None, False),    # egress no, ingress yes
        ("prod/job", "prod/db", 5432, None, False),    # egress open, ingress no
    ])
    eng = engine(*WORLD, egress_to_web_only, ingress_db_from_tool)
    v = eng.check("dev/tool", "prod/db", 5432)
    assert (v.egress.allowed, v.egress.isolated, v.ingress.allowed, v.ingress.isolated) == (
        False, True, True, True)
    assert v.egress.policies == ("dev/out",) and v.ingress.policies == ("prod/in",)
    assert [m.policy for m in v.ingress.allowed_by] == ["prod/in"]


def test_external_ips_are_never_isolated() -> None:
    """"external IPs are never isolated themselves" (only the pod side can deny)."""
    eng = engine(*WORLD, deny_all("prod", "Ingress", "Egress"))
    v = eng.check("ip:203.0.113.10", "dev/tool", 80)
    assert v.allowed and not v.egress.isolated and not v.ingress.isolated
    v = eng.check("prod/web", "203.0.113.10", 443)
    assert not v.allowed and v.egress.isolated and not v.ingress.isolated
    assert v.ingress.allowed


def test_namespaces_carry_metadata_name_label() -> None:
    """"Namespaces carry kubernetes.io/metadata.name as the API server sets it" — also when a
    namespace object is not given, and even if a file sets the label to something else."""
    world = [ns("prod", **{"kubernetes.io/metadata.name": "lies"}),
             pod("prod/db", "10.0.1.2", app="db"), pod("dev/tool", "10.0.2.2")]
    run_table([netpol("prod/p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "dev"})}]}]})], [
        ("dev/tool", "prod/db", 5432, None, True),
    ], world)
    run_table([netpol("prod/p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "prod"})}]}]})], [
        ("prod/db", "prod/db", 5432, None, True),
        ("dev/tool", "prod/db", 5432, None, False),
    ], world)


def test_ip_block_covering_pod_ips_is_marked_non_portable() -> None:
    """"Where implementations differ (ipBlock covering pod IPs ...) follow the spec and mark
    the policy as non-portable in the explanation"."""
    eng = engine(*WORLD, netpol("prod/p", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.2.0/24", "except": ["10.0.2.1/32"]}}]}]}))
    v = eng.check("dev/tool", "prod/db", 5432)   # 10.0.2.2: inside the block
    assert v.allowed and any("ipBlock" in n and "non-portable" in n for n in v.notes)
    v = eng.check("dev/web", "prod/db", 5432)    # 10.0.2.1: in except
    assert not v.allowed
    assert eng.matrix(5432).allowed("dev/tool", "prod/db")
    assert not eng.matrix(5432).allowed("dev/web", "prod/db")
    # An IP that is a pod's IP is that pod.
    assert eng.check("ip:10.0.2.2", "prod/db", 5432).src == "dev/tool"


def test_host_network_and_node_local_are_marked_non_portable() -> None:
    """"Where implementations differ (... hostNetwork pods, node-local traffic) follow the spec
    and mark ... non-portable": the spec always admits traffic from the pod's own node."""
    world = [
        pod("prod/db", "10.0.1.2", node="n1", host_ip="192.168.0.1", app="db"),
        pod("kube-system/agent", "192.168.0.1", host_network=True, node="n1",
            host_ip="192.168.0.1"),
        pod("kube-system/agent2", "192.168.0.2", host_network=True, node="n2",
            host_ip="192.168.0.2"),
    ]
    eng = engine(*world, deny_all("prod"))
    v = eng.check("ip:192.168.0.1", "prod/db", 5432)      # the node itself
    assert v.allowed and any("own node" in n for n in v.notes)
    v = eng.check("kube-system/agent", "prod/db", 5432)   # hostNetwork pod on that node
    assert v.allowed and any("hostNetwork" in n for n in v.notes)
    v = eng.check("kube-system/agent2", "prod/db", 5432)  # another node
    assert not v.allowed and any("hostNetwork" in n for n in v.notes)
    m = eng.matrix(5432)
    assert m.allowed("kube-system/agent", "prod/db")
    assert not m.allowed("kube-system/agent2", "prod/db")


def test_named_port_flow_needs_the_port_on_the_destination() -> None:
    """A flow's port name is "resolved on the destination pod's container ports"."""
    eng = engine(*WORLD)
    assert eng.check("dev/tool", "other/x", "dns").protocol is Protocol.UDP
    with pytest.raises(Exception, match="declares no port named 'http'"):
        eng.check("dev/tool", "prod/db", "http")
    with pytest.raises(Exception, match="needs a pod destination"):
        eng.check("dev/tool", "ip:8.8.8.8", "dns")


@pytest.mark.parametrize("text", ["prod/nope", "ip:300.1.1.1", "not-an-ip"])
def test_bad_endpoints_are_input_errors(text: str) -> None:
    """SRC/DST: "NAMESPACE/POD, or an external IP written ip:203.0.113.10 or 203.0.113.10"."""
    from netiso.errors import ExitCode
    from netiso.policy import PolicyInputError

    with pytest.raises(PolicyInputError) as info:
        engine(*WORLD).check("dev/tool", text, 80)
    assert info.value.exit_code == ExitCode.USAGE


def test_a_pod_cannot_block_access_to_itself() -> None:
    """"Other pods that are allowed (exception: a pod cannot block access to itself)" — and the
    upstream e2e netpol Reachability calls AllowLoopback: "loopback logic follows no policy".
    Whatever isolates the pod, in either direction, on any port, by name or by its own IP."""
    rows: list[Row] = [
        ("prod/web", "prod/web", 8080, None, True),
        ("prod/web", "prod/web", 9090, None, True),
        ("prod/web", "ip:10.0.1.1", 1234, "UDP", True),   # its own IP is itself
        ("dev/tool", "dev/tool", 80, "SCTP", True),
        ("prod/web", "prod/db", 5432, None, False),        # the others stay denied
        ("dev/tool", "prod/web", 8080, None, False),
    ]
    run_table([deny_all("prod", "Ingress", "Egress"), deny_all("dev", "Ingress", "Egress")], rows)
    # Rules that name other pods only, in both directions, change nothing for the pod itself.
    run_table([netpol("prod/web-only-db", {
        "podSelector": sel(app="web"), "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": sel(app="db")}]}],
        "egress": [{"to": [{"podSelector": sel(app="db")}], "ports": [{"port": 5432}]}]})], [
        ("prod/web", "prod/web", 8080, None, True),
        ("prod/db", "prod/web", 8080, None, True),
        ("prod/job", "prod/web", 8080, None, False),
        ("prod/web", "prod/job", 80, None, False),
    ])
    eng = engine(*WORLD, deny_all("prod", "Ingress", "Egress"))
    v = eng.check("prod/web", "prod/web", 8080)
    assert v.egress.isolated and v.ingress.isolated
    assert "cannot block access to itself" in v.ingress.reason
    assert "cannot block access to itself" in v.egress.reason
    assert any("itself" in n for n in v.notes)
    m = eng.matrix(8080)
    assert all(m.allowed(i, i) and m.ingress_allows(i, i) and m.egress_allows(i, i)
               for i in range(len(eng.cluster.pods)))


NODE_WORLD = [
    ns("prod"), ns("kube-system"),
    pod("prod/db", "10.0.1.2", node="n1", host_ip="192.168.0.1", app="db"),
    pod("prod/api", "10.0.1.3", node="n2", host_ip="192.168.0.2", app="api"),
    pod("kube-system/agent", "192.168.0.1", host_network=True, node="n1",
        host_ip="192.168.0.1"),
    pod("kube-system/agent2", "192.168.0.2", host_network=True, node="n2",
        host_ip="192.168.0.2"),
]


def test_traffic_to_and_from_the_pods_own_node_is_always_allowed() -> None:
    """"IP blocks (exception: traffic to and from the node where a Pod is running is always
    allowed, regardless of the IP address of the Pod or the node)" — both directions: egress
    to the node (its hostIP, or a hostNetwork pod on it) as well as ingress from it."""
    rows: list[Row] = [
        # egress of an egress-isolated pod
        ("prod/db", "ip:192.168.0.1", 10250, None, True),     # its node, by IP
        ("prod/db", "kube-system/agent", 10250, None, True),  # hostNetwork pod on its node
        ("prod/db", "ip:192.168.0.2", 10250, None, False),    # another node
        ("prod/db", "kube-system/agent2", 10250, None, False),
        ("prod/api", "kube-system/agent2", 53, "UDP", True),
        ("prod/db", "prod/api", 80, None, False),
        # ingress of an ingress-isolated pod
        ("ip:192.168.0.1", "prod/db", 5432, None, True),
        ("kube-system/agent", "prod/db", 5432, None, True),
        ("kube-system/agent2", "prod/db", 5432, None, False),
        ("ip:192.168.0.2", "prod/db", 5432, None, False),
    ]
    run_table([deny_all("prod", "Ingress", "Egress")], rows, NODE_WORLD)
    eng = engine(*NODE_WORLD, deny_all("prod", "Ingress", "Egress"))
    v = eng.check("prod/db", "ip:192.168.0.1", 10250)
    assert v.egress.isolated and "own node" in v.egress.reason
    assert any("own node" in n and "non-portable" in n for n in v.notes)
    v = eng.check("prod/db", "kube-system/agent", 10250)
    assert any("own node" in n for n in v.notes)


def finished(obj: Obj, phase: str) -> Obj:
    obj["status"]["phase"] = phase
    return obj


IP_WORLD = [
    ns("a"), ns("kube-system"),
    finished(pod("a/old", "10.0.0.5", app="new"), "Succeeded"),
    pod("a/new", "10.0.0.5", app="new"),
    finished(pod("a/crashed", "10.0.0.6", app="new"), "Failed"),
    pod("a/twin1", "10.0.0.9", app="new"),
    pod("a/twin2", "10.0.0.9", app="new"),
    pod("a/db", "10.0.0.2", [{"containerPort": 5432}], node="n1", host_ip="192.168.0.1", app="db"),
    pod("kube-system/agent", "192.168.0.7", host_network=True, node="n7",
        host_ip="192.168.0.7"),
]
DB_FROM_NEW = netpol("a/db-from-new", {"podSelector": sel(app="db"), "ingress": [
    {"from": [{"podSelector": sel(app="new")}]}]})


def test_an_ip_is_the_running_pod_that_has_it() -> None:
    """"an IP that is exactly one pod's is that pod" — among pods that can still have traffic: a
    pod in phase Succeeded or Failed has terminated ("will not be restarted"), its IP goes back
    to the pool and may already be a running pod's. An IP that several running pods claim is
    no one pod's: it is evaluated as an external IP, with a warning."""
    run_table([DB_FROM_NEW], [
        ("10.0.0.5", "a/db", 5432, None, True),       # a/new, not the finished a/old
        ("ip:10.0.0.6", "a/db", 5432, None, False),   # only a Failed pod had it: external
        ("ip:10.0.0.9", "a/db", 5432, None, False),   # two running pods: external
        ("a/twin1", "a/db", 5432, None, True),
    ], IP_WORLD)
    eng = engine(*IP_WORLD, DB_FROM_NEW)
    v = eng.check("10.0.0.5", "a/db", 5432)
    assert v.src == "a/new" and not v.warnings
    v = eng.check("ip:10.0.0.9", "a/db", 5432)
    assert v.src == "ip:10.0.0.9"
    assert v.warnings == ("ip:10.0.0.9 is the IP of several running pods (a/twin1, a/twin2): "
                          "evaluated as an external IP",)
    v = eng.check("a/old", "a/db", 5432)   # named explicitly: evaluated, but said
    assert v.allowed and any("a/old has finished (phase Succeeded)" in w for w in v.warnings)
    assert eng.cluster.live == sum(1 << i for i, p in enumerate(eng.cluster.pods)
                                   if p.name not in ("old", "crashed"))


def test_a_host_network_pods_ip_is_marked_non_portable() -> None:
    """"Where plugins differ (... hostNetwork pods ...) the spec is followed and the verdict
    carries a non-portable note" — also when the hostNetwork pod is named by its IP (the node's
    IP, so evaluated as that external IP)."""
    eng = engine(*IP_WORLD, DB_FROM_NEW)
    for text in ("ip:192.168.0.7", "192.168.0.7"):
        v = eng.check(text, "a/db", 5432)
        assert not v.allowed and v.src == "ip:192.168.0.7"
        assert any("non-portable" in n and "hostNetwork" in n and "kube-system/agent" in n
                   for n in v.notes), v.notes
        v = eng.check("a/db", text, 80)
        assert any("hostNetwork" in n and "kube-system/agent" in n for n in v.notes)
    assert not eng.check("ip:203.0.113.1", "a/db", 5432).notes
