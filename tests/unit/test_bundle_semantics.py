"""The rendered bundle means what it says: checked by evaluating flows, not by comparing text.

A deliberately small NetworkPolicy evaluator lives here (matchLabels/matchExpressions, peers,
ipBlock with except, ports, policyTypes, additive semantics). It can model Cilium-style
dataplanes where ``ipBlock`` never matches pod IPs, which is exactly the trap the metadata
deny must survive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from netiso.bundle import (
    BUNDLE_VERSION,
    BUNDLE_VERSION_LABEL,
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    WARNING_ANNOTATION,
    bundle_notes,
    bundle_warnings,
    render_bundle,
)
from netiso.config import Values, load_values

Obj = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = "10.244.1.10"


@dataclass(frozen=True)
class Ext:
    """A non-pod address: the internet, the metadata server, NodeLocal DNS."""

    ip: str


Endpoint = Pod | Ext


def _ns_labels(ns: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": ns}


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(
    peer: Mapping[str, Any], policy_ns: str, ep: Endpoint, *, ipblock_matches_pods: bool
) -> bool:
    if "ipBlock" in peer:
        if isinstance(ep, Pod) and not ipblock_matches_pods:
            return False
        addr = ipaddress.ip_address(ep.ip)
        block = peer["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        if addr.version != net.version or addr not in net:
            return False
        return not any(
            addr in ipaddress.ip_network(e)
            for e in block.get("except", [])
            if ipaddress.ip_network(e).version == addr.version
        )
    if not isinstance(ep, Pod):
        return False
    ns_sel = peer.get("namespaceSelector")
    if ns_sel is not None:
        if not _selects(ns_sel, _ns_labels(ep.namespace)):
            return False
    elif ep.namespace != policy_ns:
        return False
    pod_sel = peer.get("podSelector")
    return pod_sel is None or _selects(pod_sel, ep.labels)


def _ports_match(ports: Sequence[Mapping[str, Any]] | None, port: int, proto: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == proto and p.get("port") in (None, port) for p in ports)


def allowed(
    objs: Sequence[Obj],
    src: Endpoint,
    dst: Endpoint,
    port: int,
    proto: str = "TCP",
    *,
    ipblock_matches_pods: bool = True,
) -> bool:
    """Both ends must allow: egress policies of src (if a pod) and ingress policies of dst."""

    def side(pod: Pod, direction: str, other: Endpoint) -> bool:
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        selecting = [
            o
            for o in objs
            if o["metadata"]["namespace"] == pod.namespace
            and direction in o["spec"]["policyTypes"]
            and _selects(o["spec"]["podSelector"], pod.labels)
        ]
        if not selecting:
            return True
        for o in selecting:
            for rule in o["spec"].get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(
                    _peer_matches(
                        p,
                        o["metadata"]["namespace"],
                        other,
                        ipblock_matches_pods=ipblock_matches_pods,
                    )
                    for p in peers
                )
                if peer_ok and _ports_match(rule.get("ports"), port, proto):
                    return True
        return False

    if isinstance(src, Pod) and not side(src, "Egress", dst):
        return False
    return not (isinstance(dst, Pod) and not side(dst, "Ingress", src))


# --- fixtures ------------------------------------------------------------------------------

WEB = Pod("production", {"app": "web-server"}, "10.244.1.20")
API = Pod("production", {"app": "api"}, "10.244.1.21")
OTHER = Pod("staging", {"app": "client"}, "10.244.2.30")
INGRESS = Pod("ingress-nginx", {"app": "controller"}, "10.244.3.40")
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.244.0.5")
INTERNET = Ext("203.0.113.7")
INTERNET6 = Ext("2001:db8::7")
METADATA = Ext("169.254.169.254")
METADATA6_EKS = Ext("fd00:ec2::254")
POD_IDENTITY = Ext("169.254.170.23")
NODELOCAL = Ext("169.254.20.10")


def _bundle(provider: str = "generic", values: Values | None = None) -> list[Obj]:
    vals = values or load_values(None, provider=provider, namespaces=["production"])
    return render_bundle(vals, ["production"])


# --- the four classic policies -----------------------------------------------------------------


@pytest.mark.parametrize("dataplane_ipblock_matches_pods", [True, False])
@pytest.mark.parametrize("provider", ["generic", "eks", "gke", "aks"])
def test_classic_intent(provider: str, dataplane_ipblock_matches_pods: bool) -> None:
    objs = _bundle(provider)
    ipm = dataplane_ipblock_matches_pods
    # 1. default-deny ingress: another namespace cannot reach an unlabelled pod.
    assert not allowed(objs, OTHER, API, 8080, ipblock_matches_pods=ipm)
    assert not allowed(objs, INTERNET, API, 443, ipblock_matches_pods=ipm)
    # 2. same-namespace allow: any port, any pod of production.
    assert allowed(objs, WEB, API, 8080, ipblock_matches_pods=ipm)
    assert allowed(objs, API, WEB, 9999, ipblock_matches_pods=ipm)
    # 3. app=web-server on 8000 from anywhere (other namespaces and outside), and only 8000.
    assert allowed(objs, OTHER, WEB, 8000, ipblock_matches_pods=ipm)
    assert allowed(objs, INTERNET, WEB, 8000, ipblock_matches_pods=ipm)
    assert not allowed(objs, OTHER, WEB, 8001, ipblock_matches_pods=ipm)
    assert not allowed(objs, OTHER, WEB, 8000, "UDP", ipblock_matches_pods=ipm)
    # 4. metadata egress denied...
    assert not allowed(objs, API, METADATA, 80, ipblock_matches_pods=ipm)
    # ...without cutting other egress: internet, DNS, in-cluster pods (even on Cilium-style
    # dataplanes where ipBlock does not match pod IPs), NodeLocal DNSCache.
    assert allowed(objs, API, INTERNET, 443, ipblock_matches_pods=ipm)
    assert allowed(objs, API, KUBE_DNS, 53, "UDP", ipblock_matches_pods=ipm)
    assert allowed(objs, API, KUBE_DNS, 53, "TCP", ipblock_matches_pods=ipm)
    assert allowed(objs, API, NODELOCAL, 53, "UDP", ipblock_matches_pods=ipm)
    assert allowed(
        objs, API, Pod("staging", {"app": "x"}, "10.244.2.9"), 8000, ipblock_matches_pods=ipm
    )
    assert allowed(
        objs, API, Pod("kube-system", {"k8s-app": "metrics"}), 443, ipblock_matches_pods=ipm
    )
    # IPv6 twin: IPv6 egress keeps working.
    assert allowed(objs, API, INTERNET6, 443, ipblock_matches_pods=ipm)


def test_eks_denies_ipv6_imds_but_never_pod_identity() -> None:
    objs = _bundle("eks")
    assert not allowed(objs, API, METADATA6_EKS, 80)
    assert allowed(objs, API, POD_IDENTITY, 80)
    assert allowed(objs, API, Ext("fd00:ec2::23"), 80)


def test_metadata_rule_alone_would_cut_dns_on_cilium() -> None:
    """Guard the guard: without the extra peers, the evaluator does see the breakage."""
    objs = _bundle("generic")
    deny = next(o for o in objs if o["metadata"]["name"] == "netiso-deny-metadata-egress")
    stripped = [o for o in objs if o is not deny] + [
        {**deny, "spec": {**deny["spec"], "egress": deny["spec"]["egress"][:1]}}
    ]
    assert allowed(stripped, API, KUBE_DNS, 53, "UDP", ipblock_matches_pods=True)
    assert not allowed(stripped, API, KUBE_DNS, 53, "UDP", ipblock_matches_pods=False)


def test_gke_metadata_policy_carries_the_warning() -> None:
    objs = _bundle("gke")
    deny = next(o for o in objs if o["metadata"]["name"] == "netiso-deny-metadata-egress")
    assert "Workload Identity" in deny["metadata"]["annotations"][WARNING_ANNOTATION]
    for provider in ("generic", "eks", "aks"):
        for o in _bundle(provider):
            assert WARNING_ANNOTATION not in o["metadata"].get("annotations", {})


@pytest.mark.parametrize("deny_egress", [False, True])
@pytest.mark.parametrize("dataplane_ipblock_matches_pods", [True, False])
def test_gke_cloud_dns_at_the_metadata_address(
    tmp_path: Any, deny_egress: bool, dataplane_ipblock_matches_pods: bool
) -> None:
    """GKE with Cloud DNS: resolv.conf says 169.254.169.254, so port 53 there is DNS."""
    f = tmp_path / "v.yaml"
    f.write_text(f"policies: {{defaultDenyEgress: {str(deny_egress).lower()}}}\n")
    ipm = dataplane_ipblock_matches_pods
    for provider in ("gke", "generic", "eks", "aks"):
        objs = render_bundle(
            load_values(f, provider=provider, namespaces=["production"]), ["production"]
        )
        gke = provider == "gke"
        assert allowed(objs, API, METADATA, 53, "UDP", ipblock_matches_pods=ipm) is gke, provider
        assert allowed(objs, API, METADATA, 53, "TCP", ipblock_matches_pods=ipm) is gke, provider
        # The credential path stays denied by policy (GKE's redirect is what the warning is for).
        assert not allowed(objs, API, METADATA, 80, ipblock_matches_pods=ipm), provider
        assert not allowed(objs, API, METADATA, 8080, "UDP", ipblock_matches_pods=ipm), provider
        # DNS through kube-dns still works everywhere.
        assert allowed(objs, API, KUBE_DNS, 53, "UDP", ipblock_matches_pods=ipm), provider


def test_gke_default_deny_egress_keeps_the_warning(tmp_path: Any) -> None:
    """Default-deny egress does not block GKE's metadata server either: warn, do not claim it."""
    f = tmp_path / "v.yaml"
    f.write_text("policies: {defaultDenyEgress: true}\n")
    vals = load_values(f, provider="gke", namespaces=["production"])
    warnings = bundle_warnings(vals)
    assert len(warnings) == 1
    assert warnings[0].startswith("netiso-default-deny-egress: ")
    assert "Workload Identity" in warnings[0]
    notes = bundle_notes(vals)
    assert notes and not any("blocks the metadata" in n for n in notes)
    assert any("redirected" in n for n in notes)
    deny = next(
        o
        for o in render_bundle(vals, ["production"])
        if o["metadata"]["name"] == "netiso-default-deny-egress"
    )
    assert "Workload Identity" in deny["metadata"]["annotations"][WARNING_ANNOTATION]
    # Elsewhere default-deny egress does deny the metadata endpoints, and says so; no warning.
    generic = load_values(f, provider="generic", namespaces=["production"])
    assert bundle_warnings(generic) == []
    assert any("denies the metadata endpoints" in n for n in bundle_notes(generic))
    # Without default-deny egress the GKE warning names the metadata deny.
    plain = load_values(None, provider="gke", namespaces=["production"])
    assert [w.split(":")[0] for w in bundle_warnings(plain)] == ["netiso-deny-metadata-egress"]
    assert bundle_notes(plain) == []


def test_allow_from_namespaces(tmp_path: Any) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("allowFromNamespaces: [ingress-nginx, monitoring]\n")
    objs = render_bundle(load_values(f, namespaces=["production"]), ["production"])
    assert allowed(objs, INGRESS, API, 8080)
    assert allowed(objs, Pod("monitoring", {}, "10.244.4.1"), API, 9090)
    assert not allowed(objs, OTHER, API, 8080)


def test_default_deny_egress(tmp_path: Any) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("policies: {defaultDenyEgress: true}\n")
    for provider in ("generic", "eks"):
        vals = load_values(f, provider=provider, namespaces=["production"])
        objs = render_bundle(vals, ["production"])
        names = {o["metadata"]["name"] for o in objs}
        # The metadata deny's "allow all but metadata" would re-open egress: not rendered.
        assert "netiso-deny-metadata-egress" not in names
        assert "netiso-default-deny-egress" in names
        assert not allowed(objs, API, INTERNET, 443)
        assert not allowed(objs, API, METADATA, 80)
        assert not allowed(objs, API, OTHER, 8000)
        assert allowed(objs, API, KUBE_DNS, 53, "UDP", ipblock_matches_pods=False)
        assert allowed(objs, API, NODELOCAL, 53, "UDP")
        # same namespace still talks (the allow gets its egress half)
        assert allowed(objs, API, WEB, 8080, ipblock_matches_pods=False)
        assert allowed(objs, API, POD_IDENTITY, 80) is (provider == "eks")


def test_policies_can_be_switched_off(tmp_path: Any) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("policies: {defaultDenyIngress: false, denyMetadataEgress: false}\n")
    objs = render_bundle(load_values(f, namespaces=["production"]), ["production"])
    # allow-same-namespace selects every pod, so it isolates ingress on its own: switching off
    # only the default deny changes nothing for cross-namespace traffic (additive semantics).
    assert not allowed(objs, OTHER, API, 8080)
    assert allowed(objs, API, METADATA, 80)
    f.write_text("policies: {defaultDenyIngress: false, allowSameNamespace: false}\n")
    objs = render_bundle(load_values(f, namespaces=["production"]), ["production"])
    assert allowed(objs, OTHER, API, 8080)  # nothing selects api for ingress any more
    assert not allowed(objs, OTHER, WEB, 9999)  # allow-app still isolates the web server
    assert allowed(objs, OTHER, WEB, 8000)


def test_ipv6_off_drops_the_twin(tmp_path: Any) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("ipv6: false\n")
    objs = render_bundle(load_values(f, provider="eks", namespaces=["production"]), ["production"])
    assert allowed(objs, API, INTERNET, 443)
    assert not allowed(objs, API, INTERNET6, 443)
    assert "::" not in str(objs)


def test_labels_names_and_order() -> None:
    objs = render_bundle(load_values(None, provider="eks", namespaces=["b", "a"]), ["b", "a", "b"])
    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert {o["metadata"]["namespace"] for o in objs} == {"a", "b"}
    for o in objs:
        labels = o["metadata"]["labels"]
        assert o["metadata"]["name"].startswith("netiso-")
        assert labels[MANAGED_BY_LABEL] == "netiso"
        assert labels[BUNDLE_VERSION_LABEL] == BUNDLE_VERSION
        assert (
            o["metadata"]["name"]
            .removeprefix("netiso-")
            .startswith(labels[POLICY_LABEL].removesuffix("-ports"))
        )


def test_render_is_pure_and_deterministic() -> None:
    vals = load_values(None, provider="gke", namespaces=["production"])
    first = render_bundle(vals, ["production"])
    first[0]["metadata"]["labels"]["mutated"] = "yes"  # callers may mutate their copy
    again = render_bundle(vals, ["production"])
    assert "mutated" not in again[0]["metadata"]["labels"]
