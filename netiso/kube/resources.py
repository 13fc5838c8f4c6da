"""Where kinds live on the API server: the known-kinds table, discovery, and the apply order.

Design decisions:

* **A fast path and a real mapper.** The kinds netiso itself reads and writes (NetworkPolicy,
  Namespace, Pod, the policy CRDs of Cilium and Calico, ...) are a table: no request is needed
  to find them, and ``resource_type`` stays a pure lookup. Any other kind (a RoleBinding, a
  CustomResourceDefinition's instances, ``operator.tigera.io`` objects) is found by API
  discovery, as kubectl's RESTMapper does: one pass over the server's discovery documents per
  run, cached, and redone only when told (after CRDs were established).
* **Aggregated discovery first.** Since Kubernetes 1.30, ``/api`` and ``/apis`` answer the whole
  group/version/resource tree in two requests when asked for ``APIGroupDiscoveryList``. An
  older server answers the plain group list instead; then each group-version is fetched once,
  when a kind of it is first asked for.
* **Ranked by kind.** An install applies what others depend on first: CRDs, Namespaces, RBAC,
  ServiceAccounts/ConfigMaps/Secrets, Services and policies, then workloads, then webhooks, and
  custom resources last (their CRDs must be established first); a removal goes in reverse.
  NetworkPolicies come before workloads so a pod never starts unisolated. Any kind not in the
  rank table is treated as a custom resource: applying it last is never wrong for a built-in
  kind the table forgot, while applying a custom resource early is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from netiso.errors import UsageError


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives on the API server."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``networkpolicies.networking.k8s.io`` style, as RBAC and kubectl name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        return base


def _rt(api_version: str, kind: str, plural: str, namespaced: bool = True) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(group, version, kind, plural, namespaced)


NAMESPACE = _rt("v1", "Namespace", "namespaces", namespaced=False)
POD = _rt("v1", "Pod", "pods")
SERVICE = _rt("v1", "Service", "services")
ENDPOINT_SLICE = _rt("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
CONFIGMAP = _rt("v1", "ConfigMap", "configmaps")
SERVICEACCOUNT = _rt("v1", "ServiceAccount", "serviceaccounts")
NODE = _rt("v1", "Node", "nodes", namespaced=False)
NETWORK_POLICY = _rt("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
DEPLOYMENT = _rt("apps/v1", "Deployment", "deployments")
DAEMONSET = _rt("apps/v1", "DaemonSet", "daemonsets")
JOB = _rt("batch/v1", "Job", "jobs")
CLUSTER_ROLE = _rt(
    "rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False
)
CLUSTER_ROLE_BINDING = _rt(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False
)
CRD = _rt(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions",
    namespaced=False,
)

_KNOWN: dict[tuple[str, str], ResourceType] = {
    (rt.api_version, rt.kind): rt
    for rt in (
        NAMESPACE, POD, SERVICE, CONFIGMAP, SERVICEACCOUNT, NODE, NETWORK_POLICY, DEPLOYMENT,
        DAEMONSET, JOB, ENDPOINT_SLICE, CLUSTER_ROLE, CLUSTER_ROLE_BINDING, CRD,
        _rt("cilium.io/v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"),
        _rt("cilium.io/v2", "CiliumClusterwideNetworkPolicy",
            "ciliumclusterwidenetworkpolicies", namespaced=False),
        _rt("crd.projectcalico.org/v1", "NetworkPolicy", "networkpolicies"),
        _rt("crd.projectcalico.org/v1", "GlobalNetworkPolicy", "globalnetworkpolicies",
            namespaced=False),
        _rt("projectcalico.org/v3", "NetworkPolicy", "networkpolicies"),
        _rt("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies",
            namespaced=False),
        _rt("networking.gke.io/v1alpha3", "FQDNNetworkPolicy", "fqdnnetworkpolicies"),
    )
}


def known_resource_type(api_version: str, kind: str) -> ResourceType | None:
    """The fast path: a kind netiso knows without asking the server."""
    return _KNOWN.get((api_version, kind))


def resource_type(api_version: str, kind: str) -> ResourceType:
    """The resource type of a kind netiso knows; a clear error for one it does not.

    Without a connection only the table answers; ``Kube.resource_for`` also asks discovery."""
    rt = _KNOWN.get((api_version, kind))
    if rt is None:
        raise UsageError(
            f"netiso does not know where {kind} ({api_version}) lives on the API server",
            hint="only built-in kinds and the network-policy CRDs it manages are supported",
        )
    return rt


def resource_type_of(obj: Mapping[str, Any]) -> ResourceType:
    return resource_type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


# --- discovery --------------------------------------------------------------------------------

# Aggregated discovery (KEP-3352, GA in 1.30); the trailing plain JSON lets an older server
# answer its unaggregated list instead of 406.
AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)

GvkMap = dict[tuple[str, str], ResourceType]


def parse_aggregated_discovery(doc: Mapping[str, Any]) -> GvkMap:
    """(apiVersion, kind) → ResourceType from an ``APIGroupDiscoveryList``. Pure."""
    out: GvkMap = {}
    for group_doc in doc.get("items") or []:
        group = str((group_doc.get("metadata") or {}).get("name") or "")
        for version_doc in group_doc.get("versions") or []:
            version = str(version_doc.get("version") or "")
            for res in version_doc.get("resources") or []:
                kind = str((res.get("responseKind") or {}).get("kind") or "")
                plural = str(res.get("resource") or "")
                if not kind or not plural or "/" in plural:
                    continue
                rt = ResourceType(group, version, kind, plural,
                                  namespaced=res.get("scope") == "Namespaced")
                out.setdefault((rt.api_version, kind), rt)
    return out


def parse_resource_list(doc: Mapping[str, Any]) -> GvkMap:
    """(apiVersion, kind) → ResourceType from one group-version's ``APIResourceList``. Pure."""
    group, _, version = str(doc.get("groupVersion") or "").rpartition("/")
    out: GvkMap = {}
    for res in doc.get("resources") or []:
        plural = str(res.get("name") or "")
        kind = str(res.get("kind") or "")
        if not kind or not plural or "/" in plural:  # subresources: pods/log, .../status
            continue
        rt = ResourceType(group, version, kind, plural, namespaced=bool(res.get("namespaced")))
        out.setdefault((rt.api_version, kind), rt)
    return out


def _is_aggregated(doc: Mapping[str, Any] | None) -> bool:
    return bool(doc) and str((doc or {}).get("kind")) == "APIGroupDiscoveryList"


Fetch = Callable[[str, str], Mapping[str, Any] | None]
"""GET ``path`` with an ``Accept`` header; the decoded JSON, or None when the path is absent."""


class Discovery:
    """A cached map of (apiVersion, kind) to where it lives, filled by API discovery.

    One pass per run: the first lookup reads ``/api`` and ``/apis`` (aggregated: two requests
    for the whole server); later lookups are answered from memory. ``invalidate`` forgets it,
    for the one moment a run knows the server's API changed (CRDs it just established).
    Thread-safe: workers share one ``Kube``.
    """

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._map: GvkMap = {}
        self._loaded = False
        self._aggregated = False
        self._fetched_versions: set[str] = set()
        self._remembered: GvkMap = {}  # survives invalidate: a CRD's word is exact
        self.passes = 0  # how many times the server was asked (for tests and -v)
        self.requests = 0

    def remember(self, types: Iterable[ResourceType]) -> None:
        """Add types the caller knows exactly (from CRDs it applied), without a request."""
        with self._lock:
            for rt in types:
                self._remembered[(rt.api_version, rt.kind)] = rt

    def invalidate(self) -> None:
        with self._lock:
            self._map = {}
            self._loaded = False
            self._fetched_versions = set()

    def _get(self, path: str, accept: str) -> Mapping[str, Any] | None:
        self.requests += 1
        return self._fetch(path, accept)

    def _load(self) -> None:
        self.passes += 1
        core = self._get("/api", AGGREGATED_ACCEPT)
        groups = self._get("/apis", AGGREGATED_ACCEPT)
        self._aggregated = _is_aggregated(core) and _is_aggregated(groups)
        if self._aggregated:
            assert core is not None and groups is not None
            self._map = parse_aggregated_discovery(core)
            for key, rt in parse_aggregated_discovery(groups).items():
                self._map.setdefault(key, rt)
        self._loaded = True

    def lookup(self, api_version: str, kind: str) -> ResourceType | None:
        """Where ``kind`` of ``api_version`` lives, or None when the server does not serve it."""
        with self._lock:
            hit = self._remembered.get((api_version, kind))
            if hit is not None:
                return hit
            if not self._loaded:
                self._load()
            hit = self._map.get((api_version, kind))
            if hit is None and not self._aggregated and api_version not in self._fetched_versions:
                self._fetched_versions.add(api_version)
                path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
                doc = self._get(path, "application/json")
                if doc:
                    for key, rt in parse_resource_list(doc).items():
                        self._map.setdefault(key, rt)
                hit = self._map.get((api_version, kind))
            return hit


# --- apply order ------------------------------------------------------------------------------

RANK_CRD = 0
RANK_CUSTOM = 100  # any kind not in the table: custom resources, applied last

_RANKS: dict[tuple[str, str], int] = {
    ("apiextensions.k8s.io", "CustomResourceDefinition"): RANK_CRD,
    ("", "Namespace"): 10,
    ("scheduling.k8s.io", "PriorityClass"): 15,
    ("", "ResourceQuota"): 15,
    ("", "LimitRange"): 15,
    ("rbac.authorization.k8s.io", "ClusterRole"): 20,
    ("rbac.authorization.k8s.io", "Role"): 20,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): 21,
    ("rbac.authorization.k8s.io", "RoleBinding"): 21,
    ("", "ServiceAccount"): 30,
    ("", "Secret"): 30,
    ("", "ConfigMap"): 30,
    ("storage.k8s.io", "StorageClass"): 30,
    ("", "PersistentVolume"): 31,
    ("", "PersistentVolumeClaim"): 32,
    ("networking.k8s.io", "NetworkPolicy"): 40,
    ("policy", "PodDisruptionBudget"): 40,
    ("", "Service"): 40,
    ("apps", "DaemonSet"): 50,
    ("apps", "Deployment"): 50,
    ("apps", "StatefulSet"): 50,
    ("apps", "ReplicaSet"): 50,
    ("", "ReplicationController"): 50,
    ("", "Pod"): 50,
    ("batch", "Job"): 50,
    ("batch", "CronJob"): 50,
    ("autoscaling", "HorizontalPodAutoscaler"): 55,
    ("networking.k8s.io", "IngressClass"): 60,
    ("networking.k8s.io", "Ingress"): 61,
    ("apiregistration.k8s.io", "APIService"): 70,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): 70,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): 70,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): 70,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): 71,
}


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def kind_rank(obj: Mapping[str, Any]) -> int:
    """Where a kind goes in an install: lower first. Pure."""
    key = (group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind", "")))
    return _RANKS.get(key, RANK_CUSTOM)


def _name_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def apply_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Objects in install order: by kind rank, then kind, namespace and name. Pure."""
    return sorted(objects, key=lambda o: (kind_rank(o), *_name_key(o)))


def delete_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Objects in removal order: the reverse ranks of ``apply_order`` (custom resources first,
    CRDs last); within a rank the same kind/namespace/name order. Pure."""
    return sorted(objects, key=lambda o: (-kind_rank(o), *_name_key(o)))


def crd_defined_kinds(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, kind) → CRD name for every CustomResourceDefinition among ``objects``. Pure."""
    out: dict[tuple[str, str], str] = {}
    for obj in objects:
        if (group_of(str(obj.get("apiVersion", ""))), obj.get("kind")) != (
                "apiextensions.k8s.io", "CustomResourceDefinition"):
            continue
        spec = obj.get("spec") or {}
        kind = str((spec.get("names") or {}).get("kind") or "")
        if kind:
            out[(str(spec.get("group") or ""), kind)] = str(
                (obj.get("metadata") or {}).get("name", ""))
    return out


def resource_types_of_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """Every served version of the kind a CustomResourceDefinition defines. Pure.

    The CRD says exactly where its objects live, so a run that applied it needs no discovery
    pass (and no wait for the aggregated discovery document to catch up) to apply them."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = str(spec.get("group") or ""), str(names.get("kind") or ""), str(
        names.get("plural") or "")
    if not (group and kind and plural):
        return []
    namespaced = spec.get("scope") == "Namespaced"
    return [ResourceType(group, str(v.get("name")), kind, plural, namespaced)
            for v in spec.get("versions") or [] if v.get("name") and v.get("served", True)]
