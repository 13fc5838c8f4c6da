"""Where kinds live, without a cluster: the apply order, discovery parsing and its cache, CRDs
telling their own kinds, manifests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from netiso import kube
from netiso.errors import UsageError
from netiso.kube.resources import (
    AGGREGATED_ACCEPT,
    Discovery,
    crd_defined_kinds,
    parse_aggregated_discovery,
    parse_resource_list,
    resource_types_of_crd,
)


def _obj(api_version: str, kind: str, name: str, namespace: str | None = None
         ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


MIXED = [
    _obj("operator.tigera.io/v1", "Installation", "default"),
    _obj("apps/v1", "Deployment", "op", "tigera-operator"),
    _obj("rbac.authorization.k8s.io/v1", "RoleBinding", "rb", "tigera-operator"),
    _obj("v1", "ServiceAccount", "op", "tigera-operator"),
    _obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "crb"),
    _obj("v1", "ConfigMap", "cfg", "tigera-operator"),
    _obj("networking.k8s.io/v1", "NetworkPolicy", "deny", "tigera-operator"),
    _obj("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "hook"),
    _obj("rbac.authorization.k8s.io/v1", "ClusterRole", "cr"),
    _obj("v1", "Namespace", "tigera-operator"),
    _obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "installations.operator.tigera.io"),
    _obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "apiservers.operator.tigera.io"),
]


def _kinds(objs: list[Mapping[str, Any]]) -> list[str]:
    return [str(o["kind"]) for o in objs]


def test_apply_order_crds_namespaces_rbac_config_policies_workloads_webhooks_custom() -> None:
    assert _kinds(kube.apply_order(MIXED)) == [
        "CustomResourceDefinition", "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding", "RoleBinding",
        "ConfigMap", "ServiceAccount",
        "NetworkPolicy",
        "Deployment",
        "ValidatingWebhookConfiguration",
        "Installation",
    ]
    # Within a rank: by name, so the order does not depend on the input's.
    crds = [o for o in kube.apply_order(MIXED) if o["kind"] == "CustomResourceDefinition"]
    assert [o["metadata"]["name"] for o in crds] == [
        "apiservers.operator.tigera.io", "installations.operator.tigera.io"]
    assert kube.apply_order(MIXED) == kube.apply_order(list(reversed(MIXED)))


def test_delete_order_is_the_reverse_rank() -> None:
    order = _kinds(kube.delete_order(MIXED))
    assert order[0] == "Installation"
    assert order[-2:] == ["CustomResourceDefinition", "CustomResourceDefinition"]
    assert order.index("Deployment") < order.index("ServiceAccount") < order.index("Namespace")
    ranks = [kube.kind_rank(o) for o in kube.delete_order(MIXED)]
    assert ranks == sorted(ranks, reverse=True)


def test_unknown_kinds_rank_as_custom_resources_last() -> None:
    other = _obj("example.com/v1", "Widget", "w")
    assert kube.kind_rank(other) > kube.kind_rank(_obj("apps/v1", "Deployment", "d", "x"))
    assert kube.kind_rank(other) == kube.kind_rank(MIXED[0])
    # Same kind name, another group: not the built-in's rank.
    calico_np = _obj("crd.projectcalico.org/v1", "NetworkPolicy", "p", "x")
    assert kube.kind_rank(calico_np) > kube.kind_rank(MIXED[6])


CRD_DOC: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets"},
             "versions": [{"name": "v1", "served": True}, {"name": "v2", "served": True},
                          {"name": "v0", "served": False}]},
}


def test_a_crd_tells_where_its_objects_live() -> None:
    types = resource_types_of_crd(CRD_DOC)
    assert [(t.api_version, t.kind, t.plural, t.namespaced) for t in types] == [
        ("example.com/v1", "Widget", "widgets", True),
        ("example.com/v2", "Widget", "widgets", True),
    ]
    assert types[0].path("ns", "w") == "/apis/example.com/v1/namespaces/ns/widgets/w"
    assert crd_defined_kinds([CRD_DOC, MIXED[0]]) == {("example.com", "Widget"):
                                                      "widgets.example.com"}


AGGREGATED_CORE: dict[str, Any] = {
    "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
    "items": [{"metadata": {}, "versions": [{"version": "v1", "resources": [
        {"resource": "namespaces", "responseKind": {"group": "", "version": "v1",
                                                    "kind": "Namespace"}, "scope": "Cluster"},
        {"resource": "secrets", "responseKind": {"group": "", "version": "v1",
                                                 "kind": "Secret"}, "scope": "Namespaced",
         "subresources": [{"subresource": "status"}]},
    ]}]}],
}
AGGREGATED_GROUPS: dict[str, Any] = {
    "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
    "items": [
        {"metadata": {"name": "rbac.authorization.k8s.io"}, "versions": [{"version": "v1",
         "resources": [{"resource": "rolebindings", "scope": "Namespaced",
                        "responseKind": {"kind": "RoleBinding"}}]}]},
        {"metadata": {"name": "operator.tigera.io"}, "versions": [{"version": "v1",
         "resources": [{"resource": "installations", "scope": "Cluster",
                        "responseKind": {"kind": "Installation"}}]}]},
    ],
}


def test_parse_aggregated_discovery() -> None:
    core = parse_aggregated_discovery(AGGREGATED_CORE)
    assert core[("v1", "Secret")] == kube.ResourceType("", "v1", "Secret", "secrets", True)
    assert not core[("v1", "Namespace")].namespaced
    groups = parse_aggregated_discovery(AGGREGATED_GROUPS)
    assert groups[("operator.tigera.io/v1", "Installation")].path(None, "default") == \
        "/apis/operator.tigera.io/v1/installations/default"
    assert groups[("rbac.authorization.k8s.io/v1", "RoleBinding")].qualified == \
        "rolebindings.rbac.authorization.k8s.io"


def test_parse_resource_list_skips_subresources() -> None:
    doc = {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "namespaced": True, "kind": "Deployment"},
        {"name": "deployments/scale", "namespaced": True, "kind": "Scale"},
    ]}
    parsed = parse_resource_list(doc)
    assert list(parsed) == [("apps/v1", "Deployment")]


class Server:
    """Discovery documents as a server would answer them, counting requests."""

    def __init__(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        self.docs = docs
        self.calls: list[tuple[str, str]] = []

    def __call__(self, path: str, accept: str) -> Mapping[str, Any] | None:
        self.calls.append((path, accept))
        return self.docs.get(path)


def test_aggregated_discovery_is_one_pass_per_run_and_cached() -> None:
    server = Server({"/api": AGGREGATED_CORE, "/apis": AGGREGATED_GROUPS})
    d = Discovery(server)
    rb = d.lookup("rbac.authorization.k8s.io/v1", "RoleBinding")
    assert rb is not None and rb.plural == "rolebindings"
    assert d.lookup("operator.tigera.io/v1", "Installation") is not None
    assert d.lookup("v1", "Secret") is not None
    assert d.lookup("example.com/v1", "Widget") is None  # not served: no second pass
    assert server.calls == [("/api", AGGREGATED_ACCEPT), ("/apis", AGGREGATED_ACCEPT)]
    assert d.passes == 1
    # Told the API changed (CRDs established): the next lookup reads it again.
    d.invalidate()
    assert d.lookup("v1", "Secret") is not None
    assert d.passes == 2 and len(server.calls) == 4


def test_remembered_crd_types_need_no_request() -> None:
    server = Server({"/api": AGGREGATED_CORE, "/apis": AGGREGATED_GROUPS})
    d = Discovery(server)
    d.remember(resource_types_of_crd(CRD_DOC))
    widget = d.lookup("example.com/v2", "Widget")
    assert widget is not None and widget.namespaced
    assert d.passes == 0 and server.calls == []
    d.invalidate()  # what a CRD said stays true when the rest is read again
    assert d.lookup("example.com/v1", "Widget") is not None
    assert d.lookup("v1", "Secret") is not None
    assert d.passes == 1


def test_unaggregated_server_is_asked_per_group_version_once() -> None:
    server = Server({
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
        "/apis": {"kind": "APIGroupList", "groups": []},
        "/apis/apps/v1": {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "namespaced": True, "kind": "Deployment"},
            {"name": "statefulsets", "namespaced": True, "kind": "StatefulSet"}]},
    })
    d = Discovery(server)
    assert d.lookup("apps/v1", "Deployment") is not None
    assert d.lookup("apps/v1", "StatefulSet") is not None
    assert d.lookup("apps/v1", "Nothing") is None
    assert d.lookup("example.com/v1", "Widget") is None
    assert d.lookup("example.com/v1", "Gadget") is None
    assert [p for p, _ in server.calls] == ["/api", "/apis", "/apis/apps/v1",
                                            "/apis/example.com/v1"]


def test_static_lookup_still_refuses_unknown_kinds() -> None:
    # Without a connection only the table answers (Kube.resource_for also asks discovery).
    with pytest.raises(UsageError):
        kube.resource_type("rbac.authorization.k8s.io/v1", "RoleBinding")


def test_parse_manifests_kubectl_style() -> None:
    text = """
---
# a comment-only document
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: x}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
"""
    objs = kube.parse_manifests(text)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ConfigMap", "a"), ("ConfigMap", "b"), ("Namespace", "x")]
    with pytest.raises(UsageError, match=r"document 2 lacks apiVersion, kind or metadata\.name"):
        kube.parse_manifests("kind: Namespace\nmetadata: {name: x}\napiVersion: v1\n---\n"
                             "kind: Namespace\n", "m.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        kube.parse_manifests("a: [", "m.yaml")
