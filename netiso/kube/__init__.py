"""The Kubernetes seam: the one package that imports the ``kubernetes`` client.

Modules, each with its design notes: ``kubeconfig`` (kubectl's file rules, local checks of what
a context holds), ``errors`` (netiso errors for every API answer; ``translate_status``),
``resources`` (where kinds live: the known table, API discovery, the apply order by kind),
``objects`` (objects as plain data; manifests), ``client`` (``Kube``: requests with client-go's
retries, reads, waits, server-side apply, ``apply_all``/``delete_all``).

Everything above this package imports from ``netiso.kube`` itself, never from a module inside,
so the split can change without touching callers. Nothing above it sees an SDK exception.
"""

from __future__ import annotations

from netiso.kube.client import (
    APPLY_PATCH,
    Applied,
    ApplyResult,
    Deleted,
    Kube,
    Response,
    connect,
    is_idempotent,
    retry_policy,
)
from netiso.kube.errors import (
    CRD_COMPONENTS,
    ApplyConflict,
    Denied,
    Forbidden,
    KubeError,
    MissingResourceType,
    NotFound,
    Request,
    Unauthorized,
    Unreachable,
    UntrustedServer,
    explain_tls_failure,
    translate_status,
)
from netiso.kube.kubeconfig import (
    IN_CLUSTER_DIR,
    ClusterRef,
    KubeconfigSource,
    first_current_context,
    kubeconfig_paths,
    read_cluster_ref,
    server_url_problem,
)
from netiso.kube.objects import (
    FIELD_MANAGER,
    LAST_APPLIED,
    Obj,
    field_managers,
    has_condition,
    load_manifests,
    parse_manifests,
    strip_server_fields,
)
from netiso.kube.resources import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CONFIGMAP,
    CRD,
    DAEMONSET,
    DEPLOYMENT,
    JOB,
    NAMESPACE,
    NETWORK_POLICY,
    NODE,
    POD,
    SERVICE,
    SERVICEACCOUNT,
    Discovery,
    ResourceType,
    apply_order,
    delete_order,
    kind_rank,
    resource_type,
    resource_type_of,
    resource_types_of_crd,
)

__all__ = [
    "APPLY_PATCH", "CLUSTER_ROLE", "CLUSTER_ROLE_BINDING", "CONFIGMAP", "CRD", "CRD_COMPONENTS",
    "DAEMONSET", "DEPLOYMENT", "FIELD_MANAGER", "IN_CLUSTER_DIR", "JOB", "LAST_APPLIED",
    "NAMESPACE", "NETWORK_POLICY", "NODE", "POD", "SERVICE", "SERVICEACCOUNT", "Applied",
    "ApplyConflict", "ApplyResult", "ClusterRef", "Deleted", "Denied", "Discovery", "Forbidden",
    "Kube", "KubeError", "KubeconfigSource", "MissingResourceType", "NotFound", "Obj", "Request",
    "ResourceType", "Response", "Unauthorized", "Unreachable", "UntrustedServer", "apply_order",
    "connect", "delete_order", "explain_tls_failure", "field_managers", "first_current_context",
    "has_condition", "is_idempotent", "kind_rank", "kubeconfig_paths", "load_manifests",
    "parse_manifests", "read_cluster_ref", "resource_type", "resource_type_of",
    "resource_types_of_crd", "retry_policy",
    "server_url_problem", "strip_server_fields", "translate_status",
]
