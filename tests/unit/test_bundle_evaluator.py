"""The classic intent, checked a second way: by netiso's own evaluator (netiso.policy).

test_bundle_semantics.py checks the bundle with a small independent evaluator written for that
test; this one asks the project's evaluator, so the bundle and ``netiso simulate`` agree.
"""

from __future__ import annotations

from typing import Any

import pytest

from netiso.bundle import render_bundle
from netiso.config import load_values
from netiso.policy import Cluster, Engine


def _ns(name: str) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _pod(key: str, ip: str, **labels: str) -> dict[str, Any]:
    namespace, name = key.split("/")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "status": {"podIP": ip},
    }


WORLD = [
    _ns("production"),
    _ns("staging"),
    _ns("kube-system"),
    _pod("production/web", "10.244.1.10", app="web-server"),
    _pod("production/api", "10.244.1.11", app="api"),
    _pod("staging/client", "10.244.2.10", app="client"),
    _pod("kube-system/coredns", "10.244.0.10", **{"k8s-app": "kube-dns"}),
]

FLOWS = [
    # (src, dst, port, protocol, allowed)
    ("staging/client", "production/api", 8080, "TCP", False),  # default-deny ingress
    ("ip:203.0.113.9", "production/api", 443, "TCP", False),
    ("production/web", "production/api", 8080, "TCP", True),  # same namespace
    ("production/api", "production/web", 9999, "TCP", True),
    ("staging/client", "production/web", 8000, "TCP", True),  # app=web-server:8000 from anywhere
    ("ip:203.0.113.9", "production/web", 8000, "TCP", True),
    ("staging/client", "production/web", 8001, "TCP", False),
    ("production/api", "ip:169.254.169.254", 80, "TCP", False),  # metadata egress denied
    ("production/api", "ip:203.0.113.9", 443, "TCP", True),  # other egress kept
    ("production/api", "kube-system/coredns", 53, "UDP", True),  # DNS kept
    ("production/api", "ip:169.254.20.10", 53, "UDP", True),  # NodeLocal DNSCache
    ("production/api", "staging/client", 8000, "TCP", True),  # in-cluster egress kept
]


@pytest.mark.parametrize("provider", ["generic", "eks", "gke", "aks"])
def test_classic_intent_by_the_evaluator(provider: str) -> None:
    bundle = render_bundle(load_values(None, provider=provider), ["production"])
    engine = Engine(Cluster.from_objects([*WORLD, *bundle]))
    for src, dst, port, proto, expected in FLOWS:
        verdict = engine.check(src, dst, port, proto)
        assert verdict.allowed is expected, (provider, src, dst, port, proto)


def test_eks_pod_identity_and_ipv6_imds() -> None:
    bundle = render_bundle(load_values(None, provider="eks"), ["production"])
    engine = Engine(Cluster.from_objects([*WORLD, *bundle]))
    assert engine.check("production/api", "ip:169.254.170.23", 80).allowed
    assert not engine.check("production/api", "ip:fd00:ec2::254", 80).allowed
    assert engine.check("production/api", "ip:2001:db8::1", 443).allowed


@pytest.mark.parametrize("provider", ["generic", "eks", "gke", "aks"])
def test_gke_cloud_dns_by_the_evaluator(provider: str) -> None:
    """On GKE, 169.254.169.254:53 is Cloud DNS and stays open; port 80 is denied by policy."""
    bundle = render_bundle(load_values(None, provider=provider), ["production"])
    engine = Engine(Cluster.from_objects([*WORLD, *bundle]))
    for proto in ("UDP", "TCP"):
        dns = engine.check("production/api", "ip:169.254.169.254", 53, proto)
        assert dns.allowed is (provider == "gke"), (provider, proto)
    assert not engine.check("production/api", "ip:169.254.169.254", 80).allowed
