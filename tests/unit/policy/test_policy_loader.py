"""The loader: file formats, API defaulting, and objects the API server would refuse."""

from __future__ import annotations

import json

import pytest

from netiso.policy import (
    Direction,
    PolicyInputError,
    Protocol,
    load_objects,
    parse_documents,
)

from .policy_builders import netpol, pod


def test_multi_document_yaml_list_and_json() -> None:
    """"FILE: YAML or JSON, multi-document or `kind: List`"."""
    yaml_text = """
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
---
---
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: n}}
- {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: n}}
"""
    objs = parse_documents(yaml_text, "f.yaml")
    assert [o["metadata"]["name"] for o in objs] == ["a", "n", "b"]
    as_json = json.dumps({"apiVersion": "v1", "kind": "PodList", "items": objs})
    assert parse_documents(as_json, "f.json") == objs


def test_json_and_flow_style_yaml_read_alike() -> None:
    """"FILE: YAML or JSON": JSON read as JSON, YAML that merely looks like it (flow style,
    comments) still read as YAML, and a top-level array is not an object in either."""
    as_json = '{"kind": "Pod", "metadata": {"name": "a", "namespace": "n"}, "spec": {}}'
    flow_yaml = "{kind: Pod, metadata: {name: a, namespace: n}, spec: {}}  # flow style\n"
    assert parse_documents(as_json, "a.json") == parse_documents(flow_yaml, "a.yaml") == [
        {"kind": "Pod", "metadata": {"name": "a", "namespace": "n"}, "spec": {}}]
    for text in ('[{"kind": "Pod"}]', "[{kind: Pod}]"):
        with pytest.raises(PolicyInputError, match="document 1 is not an object"):
            parse_documents(text, "array.json")
    with pytest.raises(PolicyInputError, match=r"^bad.json: not valid YAML or JSON"):
        parse_documents('{"kind": "Pod",, }', "bad.json")


def test_other_kinds_are_skipped_with_a_note() -> None:
    """"other kinds are skipped with a note on stderr" (including other APIs' NetworkPolicy)."""
    loaded = load_objects([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
         "metadata": {"name": "calico", "namespace": "x"}, "spec": {}},
        pod("x/p"),
    ], "f.yaml")
    assert len(loaded.pods) == 1 and not loaded.policies
    assert len(loaded.skipped) == 2
    assert all(s.startswith("f.yaml: skipped") for s in loaded.skipped)


def test_defaulting() -> None:
    """"API defaulting first (policyTypes defaults to [Ingress], plus Egress only when the
    egress list is non-empty; protocol defaults to TCP)"."""
    loaded = load_objects([
        netpol("n/a", {"podSelector": {}}),
        netpol("n/b", {"podSelector": {}, "egress": [{}]}),
        netpol("n/c", {"podSelector": {}, "egress": []}),
        netpol("n/d", {"podSelector": {}, "policyTypes": ["Egress"],
                       "ingress": [{"ports": [{"port": 80}]}]}),
    ])
    types = [p.policy_types for p in loaded.policies]
    assert types == [frozenset({Direction.INGRESS}),
                     frozenset({Direction.INGRESS, Direction.EGRESS}),
                     frozenset({Direction.INGRESS}), frozenset({Direction.EGRESS})]
    assert loaded.policies[3].ingress[0].ports[0].protocol is Protocol.TCP
    assert loaded.policies[3].rules(Direction.INGRESS) == ()


def test_pod_ports_and_ips() -> None:
    """Pods: "spec.containers[].ports, status.podIP/podIPs"."""
    p = load_objects([{
        "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
        "spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 53, "protocol": "UDP", "name": "dns"}, {"containerPort": 80}]}]},
        "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
    }]).pods[0]
    assert p.ips == ("10.0.0.1", "fd00::1")
    assert [(c.number, c.protocol, c.name) for c in p.ports] == [
        (53, Protocol.UDP, "dns"), (80, Protocol.TCP, None)]


BAD = [
    ("a peer with nothing in it", {"podSelector": {}, "ingress": [{"from": [{}]}]},
     "a peer needs podSelector"),
    ("ipBlock beside a selector", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "cannot be combined"),
    ("except outside cidr", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.2.0.0/16"]}}]}]}, "not inside cidr"),
    ("bad cidr", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]},
     "is not a CIDR"),
    ("endPort on a named port", {"podSelector": {}, "ingress": [{"ports": [
        {"port": "http", "endPort": 90}]}]}, "endPort needs a numeric port"),
    ("endPort below port", {"podSelector": {}, "ingress": [{"ports": [
        {"port": 100, "endPort": 90}]}]}, "must be a number >= port"),
    ("bad protocol", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     "is not TCP, UDP or SCTP"),
    ("bad operator", {"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "Gt", "values": ["1"]}]}}, "operator 'Gt'"),
    ("In without values", {"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "In"}]}}, "needs at least one value"),
    ("Exists with values", {"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "Exists", "values": ["x"]}]}}, "takes no values"),
    ("bad policyType", {"podSelector": {}, "policyTypes": ["Sideways"]}, "'Sideways'"),
    ("non-string label value", {"podSelector": {"matchLabels": {"port": 8080}}},
     "must have a string value"),
    ("numeric port name", {"podSelector": {}, "ingress": [{"ports": [{"port": "80"}]}]},
     "not a valid port name"),
]


@pytest.mark.parametrize(("spec", "message"), [(s, m) for _, s, m in BAD],
                         ids=[i for i, _, _ in BAD])
def test_objects_the_api_would_refuse_are_bad_input(spec: dict[str, object],
                                                    message: str) -> None:
    """"2 for bad input (...: one line naming the file and the object)"."""
    with pytest.raises(PolicyInputError) as info:
        load_objects([netpol("team/bad", spec)], "policies.yaml")
    text = info.value.one_line()
    assert text.startswith("policies.yaml: NetworkPolicy team/bad: ")
    assert message in text and "\n" not in text


def test_unparseable_text_names_the_file_and_line() -> None:
    """"unparseable file: one line naming the file"."""
    with pytest.raises(PolicyInputError, match=r"^broken.yaml: not valid YAML or JSON \(line 2\)"):
        parse_documents("a: b\n  c: [\n", "broken.yaml")
    with pytest.raises(PolicyInputError, match="document 1 is not an object"):
        parse_documents("- 1\n- 2\n", "list.yaml")


def test_host_ip_is_canonical_and_checked() -> None:
    """hostIP names the pod's node ("traffic to and from the node where a Pod is running"), so
    it is compared as an address, whatever its spelling; a non-address is bad input."""
    p = pod("n/p", "fd00::5", host_ip="FD00:0:0::1")
    assert load_objects([p]).pods[0].host_ip == "fd00::1"
    with pytest.raises(PolicyInputError, match=r"f.yaml: Pod n/p: status.hostIP 'node-1'"):
        load_objects([pod("n/p", host_ip="node-1")], "f.yaml")


UNKNOWN = [
    ("to in an ingress rule", {"podSelector": {}, "ingress": [{"to": [{"podSelector": {}}]}]},
     "spec.ingress[0]: unknown field 'to'; allowed: from, ports"),
    ("from in an egress rule", {"podSelector": {}, "egress": [{"from": [{"podSelector": {}}]}]},
     "spec.egress[0]: unknown field 'from'; allowed: to, ports"),
    ("misspelled ingress", {"podSelector": {}, "ingres": [{}]},
     "spec: unknown field 'ingres'; allowed: podSelector, policyTypes, ingress, egress"),
    ("misspelled peer selector", {"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {}, "namspaceSelector": {}}]}]},
     "spec.ingress[0].from[0]: unknown field 'namspaceSelector'; allowed: podSelector, "
     "namespaceSelector, ipBlock"),
    ("misspelled except", {"podSelector": {}, "egress": [{"to": [
        {"ipBlock": {"cidr": "0.0.0.0/0", "excepts": ["10.0.0.0/8"]}}]}]},
     "spec.egress[0].to[0].ipBlock: unknown field 'excepts'; allowed: cidr, except"),
    ("misspelled endPort", {"podSelector": {}, "ingress": [{"ports": [
        {"port": 80, "endport": 90}]}]},
     "spec.ingress[0].ports[0]: unknown field 'endport'; allowed: protocol, port, endPort"),
    ("misspelled matchLabels", {"podSelector": {"matchLabel": {"a": "b"}}},
     "spec.podSelector: unknown field 'matchLabel'; allowed: matchLabels, matchExpressions"),
]


@pytest.mark.parametrize(("spec", "message"), [(s, m) for _, s, m in UNKNOWN],
                         ids=[i for i, _, _ in UNKNOWN])
def test_unknown_fields_are_bad_input(spec: dict[str, object], message: str) -> None:
    """The API server refuses unknown fields (kubectl's default field validation is Strict:
    `strict decoding error: unknown field "spec.ingres"`), so a typo must never load as another
    policy: `ingress: [{to: ...}]` would read as "allow from everyone", `ingres:` as deny-all.
    "2 for bad input, one line naming the file and the object"."""
    with pytest.raises(PolicyInputError) as info:
        load_objects([netpol("team/bad", spec)], "policies.yaml")
    assert info.value.one_line() == f"policies.yaml: NetworkPolicy team/bad: {message}"
