"""The Kubernetes seam: the one module that imports the ``kubernetes`` client.

Design decisions:

* **Connection.** Kubeconfig files follow kubectl's rules, not the Python client's:
  ``--kubeconfig`` names exactly one file (a ``:`` in it is part of the path), ``$KUBECONFIG``
  is a ``:``-separated list whose missing and empty entries are skipped, the first file that
  defines a cluster/user/context name wins, and the *first* file that sets ``current-context``
  wins (the client's merger lets the last one win). Relative paths are resolved against the
  file that holds them. The client's own loader does the rest, which is
  why exec credential plugins (``aws eks get-token``, ``gke-gcloud-auth-plugin``, ``kubelogin``)
  keep working, including their token refresh. With no kubeconfig at all and the pod environment
  present, netiso uses the in-cluster ServiceAccount.
* **Wire level.** Requests go through the client's REST layer as plain JSON (dicts in, dicts
  out). The generated model classes are skipped on purpose: deserialising every NetworkPolicy
  into models and back costs more CPU than the request itself when applying thousands of
  objects, and netiso compares and prints objects as plain data anyway.
* **One write path.** Writes are server-side apply (``PATCH`` with
  ``application/apply-patch+yaml``, field manager ``netiso``); JSON is valid YAML, so the body is
  JSON. Dry runs are the same request with ``dryRun=All``, so the API server (admission,
  defaulting, field ownership) decides what would change, not a client-side guess.
* **Errors.** Every failure leaves this module as a netiso error naming what was refused:
  401 and an RBAC 403 say the verb, resource and namespace; any other 403 (a quota, an
  admission webhook or policy, a namespace being deleted) keeps the server's own words, since
  binding a role would not fix it; a 404 for a whole resource type names the
  component that should have installed its CRD; a 409 apply conflict names the other field
  manager and fields; an unreachable server names its URL. Nothing above sees an SDK exception.
* **Concurrency.** One ``Kube`` is shared by worker threads: urllib3's pool manager is
  thread-safe, and its pool is sized to the caller's worker count so threads do not queue for
  connections.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from kubernetes.config import incluster_config as _incluster
from kubernetes.config import kube_config as _kube_config

from netiso.errors import OperationFailed, PreconditionFailed, UsageError

# The client's loader functions are untyped; call them through Any-typed names.
_InClusterLoader: Any = _incluster.InClusterConfigLoader
_Merger: Any = _kube_config.KubeConfigMerger
_Loader: Any = _kube_config.KubeConfigLoader

FIELD_MANAGER = "netiso"
IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

Obj = dict[str, Any]


# --- resource types -------------------------------------------------------------------------


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
        DAEMONSET, JOB, CLUSTER_ROLE, CLUSTER_ROLE_BINDING, CRD,
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

# Which component installs the CRDs of an API group: a 404 for the whole resource type is
# almost always "that component is not installed (yet)", and saying which one is the fix.
CRD_COMPONENTS: dict[str, str] = {
    "cilium.io": "Cilium (its agent/operator installs the cilium.io CRDs)",
    "crd.projectcalico.org": "Calico (the tigera-operator or calico manifests install it)",
    "projectcalico.org": "the Calico API server (calico-apiserver)",
    "policy.networking.k8s.io": "the network-policy-api CRDs (sigs.k8s.io/network-policy-api)",
    "networking.gke.io": "GKE Dataplane V2 (enable it on the cluster)",
    "monitoring.coreos.com": "the Prometheus operator",
    "snapshot.storage.k8s.io": "the external-snapshotter CRDs",
}


def resource_type(api_version: str, kind: str) -> ResourceType:
    """The resource type of a kind netiso knows; a clear error for one it does not."""
    rt = _KNOWN.get((api_version, kind))
    if rt is None:
        raise UsageError(
            f"netiso does not know where {kind} ({api_version}) lives on the API server",
            hint="only built-in kinds and the network-policy CRDs it manages are supported",
        )
    return rt


def resource_type_of(obj: Mapping[str, Any]) -> ResourceType:
    return resource_type(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


# --- errors ---------------------------------------------------------------------------------


class KubeError(OperationFailed):
    """An API request failed; carries the HTTP status and the API's reason."""

    def __init__(
        self, message: str, *, status: int = 0, reason: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason


class Unreachable(KubeError):
    """The API server did not answer (connection refused, timeout, TLS failure)."""


class Unauthorized(KubeError):
    """401: the credentials were rejected."""


class Forbidden(KubeError):
    """403 from the authorizer: RBAC refused a verb on a resource."""

    def __init__(self, message: str, *, verb: str, resource: str, namespace: str | None,
                 user: str | None, hint: str | None = None) -> None:
        super().__init__(message, status=403, reason="Forbidden", hint=hint)
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.user = user


class Denied(KubeError):
    """403 from anything but the authorizer: admission (a quota, a webhook, a policy) or a
    namespace being deleted. The server's message is the only useful explanation."""


class NotFound(KubeError):
    """404 for a named object (or its namespace)."""


class ApplyConflict(KubeError):
    """409 from server-side apply: another field manager owns fields netiso sets."""

    def __init__(self, message: str, *, managers: list[str], fields: list[str],
                 hint: str | None = None) -> None:
        super().__init__(message, status=409, reason="Conflict", hint=hint)
        self.managers = managers
        self.fields = fields


class MissingResourceType(PreconditionFailed):
    """The API server does not serve a resource type (a CRD is not installed)."""

    def __init__(self, message: str, *, group: str, component: str | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.group = group
        self.component = component


@dataclass(frozen=True)
class Request:
    """What a request was trying to do, so an error can say it in RBAC terms."""

    verb: str  # the RBAC verb: get, list, watch, create, patch, delete
    rt: ResourceType
    namespace: str | None = None
    name: str | None = None

    def describe(self) -> str:
        target = self.rt.qualified + (f"/{self.name}" if self.name else "")
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        if not self.rt.namespaced:
            where = " (cluster-scoped)"
        elif not self.namespace and self.verb in ("list", "watch"):
            where = " across all namespaces"
        return f"{self.verb} {target}{where}"


_USER_RE = re.compile(r'User "([^"]+)"')
# Only the authorizer words a refusal as `User "…" cannot <verb> resource|path "…"`; quota,
# admission webhooks and the namespace lifecycle plugin answer 403 too, in their own words.
_RBAC_RE = re.compile(r'User "[^"]*" cannot [a-z]+ (?:resource|path) "')
_TERMINATING_RE = re.compile(r"because it is being terminated")
# The authorizer's own words: `cannot create resource "networkpolicies" in API group
# "networking.k8s.io" in the namespace "a"`. Server-side apply of a new object is a PATCH whose
# create half is authorised separately as "create", so the refused verb is read from here.
_CANNOT_RE = re.compile(
    r'cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]+)")?'
)
_MANAGER_RE = re.compile(r'conflict with "([^"]+)"')


def translate_status(
    status: int, body: Mapping[str, Any] | None, req: Request, server: str
) -> KubeError | MissingResourceType:
    """Turn an API error response (status + Status body) into a netiso error. Pure."""
    body = body or {}
    message = str(body.get("message") or "").strip()
    reason = str(body.get("reason") or "")
    details = body.get("details") or {}
    what = req.describe()
    if status == 401:
        return Unauthorized(
            f"the API server at {server} rejected the credentials (401) for: {what}",
            status=401, reason=reason,
            hint="the token may have expired or the exec credential plugin failed; "
                 "check `kubectl auth whoami` with the same kubeconfig/context",
        )
    if status == 403 and not _RBAC_RE.search(message):
        if _TERMINATING_RE.search(message):
            hint = "the namespace is being deleted; nothing new can be created in it"
        else:
            hint = ("not a permissions problem: the server's reason above says what refused "
                    "it (a quota, an admission webhook or policy)")
        return Denied(
            f"the API server refused to {what}: {message or reason or 'forbidden'}",
            status=403, reason=reason or "Forbidden", hint=hint,
        )
    if status == 403:
        user_match = _USER_RE.search(message)
        user = user_match.group(1) if user_match else None
        as_user = f" as {user}" if user else ""
        verb, resource, namespace = req.verb, req.rt.qualified, req.namespace
        cannot = _CANNOT_RE.search(message)
        if cannot:
            verb = cannot.group("verb")
            group = cannot.group("group")
            resource = f"{cannot.group('resource')}.{group}" if group else cannot.group("resource")
            namespace = cannot.group("ns") or namespace
            what = Request(verb, req.rt, namespace, req.name).describe()
        return Forbidden(
            f"forbidden{as_user}: cannot {what}",
            verb=verb, resource=resource, namespace=namespace, user=user,
            hint="bind the ClusterRole printed by `netiso render --rbac` to this identity",
        )
    if status == 404:
        # A missing resource type answers either a Status "could not find the requested
        # resource" (known group, unknown resource) or the plain-text "404 page not found" of
        # the mux (unknown group); a missing object always names it in details.
        if not details.get("name") and (
            "could not find the requested resource" in message
            or "page not found" in message or not message
        ):
            component = CRD_COMPONENTS.get(req.rt.group)
            if component:
                return MissingResourceType(
                    f"the API server at {server} does not serve {req.rt.qualified} "
                    f"({req.rt.api_version} {req.rt.kind}): its CRD is not installed",
                    group=req.rt.group, component=component,
                    hint=f"install {component} first",
                )
            return MissingResourceType(
                f"the API server at {server} does not serve {req.rt.qualified} "
                f"({req.rt.api_version} {req.rt.kind})",
                group=req.rt.group, component=None,
                hint="the cluster's Kubernetes version may be too old for it",
            )
        return NotFound(f"not found: {what}: {message}", status=404, reason=reason)
    if status == 409 and reason == "Conflict":
        causes = [c for c in details.get("causes") or [] if isinstance(c, Mapping)]
        managers: list[str] = []
        fields: list[str] = []
        for cause in causes:
            m = _MANAGER_RE.search(str(cause.get("message", "")))
            if m and m.group(1) not in managers:
                managers.append(m.group(1))
            if cause.get("field"):
                fields.append(str(cause["field"]))
        if not managers:
            managers = list(dict.fromkeys(_MANAGER_RE.findall(message)))
        if managers:
            return ApplyConflict(
                f"apply conflict on {req.rt.kind} {req.namespace + '/' if req.namespace else ''}"
                f"{req.name}: field manager(s) {', '.join(repr(m) for m in managers)} own "
                f"{', '.join(fields) or 'fields netiso sets'}",
                managers=managers, fields=fields,
                hint="rerun with --force-conflicts to take those fields over, or remove the "
                     "other tool's edits",
            )
    if status == 429:
        return KubeError(f"the API server at {server} is throttling requests (429) for: {what}",
                         status=status, reason=reason, hint="retry later")
    detail = f": {message}" if message else ""
    return KubeError(f"API request failed ({status} {reason or 'error'}) for: {what}{detail}",
                     status=status, reason=reason)


# --- kubeconfig -----------------------------------------------------------------------------


@dataclass
class KubeconfigSource:
    """Where the connection settings came from (for messages and ``-o json``)."""

    files: list[str] = field(default_factory=list)
    context: str | None = None
    in_cluster: bool = False


def kubeconfig_paths(explicit: str | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """kubectl's precedence: --kubeconfig (one file), else $KUBECONFIG (a list), else
    ~/.kube/config."""
    if explicit:
        # kubectl never splits --kubeconfig: only the environment variable is a list.
        return [os.path.expanduser(explicit)]
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG", "")
    if raw:
        return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def first_current_context(configs: Sequence[Mapping[str, Any] | None]) -> str | None:
    """kubectl takes current-context from the first file that sets it (the client: the last)."""
    for cfg in configs:
        if cfg and cfg.get("current-context"):
            return str(cfg["current-context"])
    return None


def _in_cluster_available(environ: Mapping[str, str], sa_dir: Path) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").exists()


class _LogCapture(logging.Handler):
    """The client logs (and swallows) exec-plugin failures; keep them to report them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _load_configuration(
    kubeconfig: str | None, context: str | None, environ: Mapping[str, str], sa_dir: Path
) -> tuple[Any, KubeconfigSource]:
    cfg = Configuration()
    paths = kubeconfig_paths(kubeconfig, environ)
    existing = [p for p in paths if os.path.exists(p)]
    if kubeconfig and not existing:
        raise UsageError(f"kubeconfig not found: {kubeconfig}")
    if not existing:
        if _in_cluster_available(environ, sa_dir) and not context:
            try:
                _InClusterLoader(
                    token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt"),
                    environ=environ,
                ).load_and_set(cfg)
            except ConfigException as exc:
                raise UsageError(f"in-cluster configuration unusable: {exc}") from exc
            return cfg, KubeconfigSource(in_cluster=True, context="in-cluster")
        raise UsageError(
            f"no kubeconfig found (looked at {', '.join(paths)})",
            hint="pass --kubeconfig or set KUBECONFIG",
        )
    configs: list[Any] = []
    loaded: list[str] = []
    for path in existing:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"kubeconfig {path} is not readable YAML: {exc}") from exc
        if doc is None:
            # kubectl reads an empty file as an empty config; the client's merger refuses it
            # ("file is empty"), so it must not reach the merger at all.
            continue
        if not isinstance(doc, Mapping):
            raise UsageError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping)")
        configs.append(doc)
        loaded.append(path)
    if not loaded:
        raise UsageError(f"kubeconfig {', '.join(existing)} holds no configuration",
                         hint="pass --kubeconfig or set KUBECONFIG to a non-empty file")
    existing = loaded
    try:
        # File by file: the merger's own constructor splits a path string at ':', which
        # would break a --kubeconfig whose name contains one.
        merger = _Merger("")
        for path in existing:
            merger.load_config(path)
        merged = merger.config
        if merged is None:
            raise UsageError(f"kubeconfig {', '.join(existing)} holds no configuration")
        # The merger wraps each entry in a ConfigNode (its ``value`` is the dict).
        names = [str(getattr(c, "value", c).get("name"))
                 for c in (merged.value.get("contexts") or [])]
        active = context or first_current_context(configs)
        if not active:
            raise UsageError(
                f"kubeconfig {', '.join(existing)} sets no current-context",
                hint=f"pass --context (one of: {', '.join(names) or 'none defined'})",
            )
        if active not in names:
            raise UsageError(
                f"context {active!r} is not in {', '.join(existing)}",
                hint=f"known contexts: {', '.join(names) or 'none'}",
            )
        capture = _LogCapture()
        root = logging.getLogger()
        root.addHandler(capture)
        try:
            loader = _Loader(
                config_dict=merged, config_base_path=None, active_context=active
            )
            loader.load_and_set(cfg)
        finally:
            root.removeHandler(capture)
    except ConfigException as exc:
        raise UsageError(f"kubeconfig {', '.join(existing)}: {exc}") from exc
    user = loader._user  # the loader exposes no accessor for the active user entry
    if user is not None and "exec" in user and not (
        cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization") or cfg.cert_file
    ):
        command = getattr(user["exec"], "value", {}).get("command", "?")
        why = "; ".join(capture.messages) or "it returned no credentials"
        raise OperationFailed(
            f"the exec credential plugin {command!r} of context {active!r} failed: {why}",
            hint="run the plugin by hand to see its error (is it installed and logged in?)",
        )
    return cfg, KubeconfigSource(files=existing, context=active)


# --- cluster reference (for detection) ------------------------------------------------------


@dataclass(frozen=True)
class ClusterRef:
    """What the kubeconfig says about the cluster, read without the network.

    The one kubeconfig reading detection uses (``netiso.bootstrap.detect``): the context and
    cluster names, the server URL and the user's exec credential plugin are *hints* (users
    rename contexts and front servers with proxies), reported as such, never decisive.
    """

    context: str | None = None
    cluster: str | None = None
    server: str | None = None
    exec_command: str | None = None
    exec_args: tuple[str, ...] = ()
    in_cluster: bool = False


def _named(docs: Sequence[Mapping[str, Any]], section: str, name: str) -> Mapping[str, Any]:
    # kubectl's merge: the first file that defines a name wins.
    for doc in docs:
        for entry in doc.get(section) or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                body = entry.get(section.rstrip("s"))
                return body if isinstance(body, Mapping) else {}
    return {}


def read_cluster_ref(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> ClusterRef:
    """The active context's cluster, server and exec plugin, by kubectl's file rules.

    Files that cannot be read are skipped here (``connect`` is the one that reports them); an
    absent kubeconfig with the pod environment present is the in-cluster ServiceAccount.
    """
    env = os.environ if environ is None else environ
    docs: list[Mapping[str, Any]] = []
    for path in kubeconfig_paths(kubeconfig, env):
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, Mapping):
            docs.append(doc)
    if not docs:
        if _in_cluster_available(env, in_cluster_dir) and not context:
            host = env.get("KUBERNETES_SERVICE_HOST", "")
            port = env.get("KUBERNETES_SERVICE_PORT", "443")
            host = f"[{host}]" if ":" in host else host
            return ClusterRef(context="in-cluster", server=f"https://{host}:{port}",
                              in_cluster=True)
        return ClusterRef(context=context)
    active = context or first_current_context(docs)
    if not active:
        return ClusterRef()
    ctx = _named(docs, "contexts", active)
    cluster = str(ctx["cluster"]) if ctx.get("cluster") else None
    user = str(ctx["user"]) if ctx.get("user") else None
    server = _named(docs, "clusters", cluster).get("server") if cluster else None
    exec_cfg = _named(docs, "users", user).get("exec") if user else None
    command: str | None = None
    args: tuple[str, ...] = ()
    if isinstance(exec_cfg, Mapping) and exec_cfg.get("command"):
        command = str(exec_cfg["command"])
        args = tuple(str(a) for a in exec_cfg.get("args") or [])
    return ClusterRef(context=active, cluster=cluster,
                      server=str(server) if server else None,
                      exec_command=command, exec_args=args)


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What server-side apply returned, with the object as it was before."""

    obj: Obj
    before: Obj | None

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def changed(self) -> bool:
        if self.before is None:
            return True
        rv_before = self.before.get("metadata", {}).get("resourceVersion")
        return bool(rv_before != self.obj.get("metadata", {}).get("resourceVersion"))


class Kube:
    """A connection to one API server. Thread-safe; share one across workers."""

    def __init__(self, api_client: Any, source: KubeconfigSource, *,
                 timeout: float = 30.0) -> None:
        self._api = api_client
        self.source = source
        self.server: str = str(api_client.configuration.host)
        self.timeout = timeout

    @property
    def context(self) -> str | None:
        return self.source.context

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the one request function ---------------------------------------------------------

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "netiso"}
        if content_type:
            headers["Content-Type"] = content_type
        # auth_settings() runs the client's refresh hook, which re-runs exec plugins when
        # their token expires.
        for setting in self._api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def request(
        self,
        method: str,
        path: str,
        req: Request,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Any:
        """One API call. Returns the decoded JSON (or the raw response when streaming)."""
        url = self.server + path + (("?" + urlencode(list(query))) if query else "")
        if body is not None and content_type is None:
            content_type = "application/json"
        t = timeout if timeout is not None else self.timeout
        request_timeout: Any = (min(10.0, t), t)
        try:
            resp = self._api.rest_client.request(
                method, url, headers=self._headers(content_type), body=body,
                _request_timeout=request_timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"cannot reach the API server at {self.server} ({req.describe()}): "
                f"{_root_cause(exc)}",
                hint="is the cluster up and the kubeconfig context right?",
            ) from exc
        except ApiException as exc:  # the REST layer reports TLS failures this way
            raise Unreachable(
                f"cannot reach the API server at {self.server} ({req.describe()}): "
                f"{str(exc.reason).splitlines()[-1] if exc.reason else exc}",
            ) from exc
        if stream and 200 <= resp.status < 300:
            return resp.response
        try:
            data = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"the API server at {self.server} dropped the connection ({req.describe()}): "
                f"{_root_cause(exc)}",
            ) from exc
        decoded: Any = None
        if data:
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = {"message": data[:300].decode("utf-8", "replace")}
        if not 200 <= resp.status < 300:
            raise translate_status(
                resp.status, decoded if isinstance(decoded, dict) else None, req, self.server
            )
        return decoded

    # --- reads ----------------------------------------------------------------------------

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        req = Request("get", rt, namespace, name)
        try:
            obj: Obj = self.request("GET", rt.path(namespace, name), req)
        except NotFound:
            return None
        return obj

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> list[Obj]:
        """All objects (paginated), each with apiVersion/kind filled in like a GET returns."""
        return self.list_with_version(rt, namespace, label_selector=label_selector,
                                      field_selector=field_selector, page_size=page_size)[0]

    def list_with_version(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[Obj], str | None]:
        """The objects and the list's resourceVersion (where a watch can start)."""
        req = Request("list", rt, namespace)
        items: list[Obj] = []
        cont: str | None = None
        while True:
            query = [("limit", str(page_size))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if cont:
                query.append(("continue", cont))
            page = self.request("GET", rt.path(namespace), req, query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items, (page.get("metadata") or {}).get("resourceVersion")

    def list_namespaces(self, label_selector: str | None = None) -> list[Obj]:
        return self.list_objects(NAMESPACE, label_selector=label_selector)

    def list_pods(self, namespace: str | None = None, label_selector: str | None = None
                  ) -> list[Obj]:
        return self.list_objects(POD, namespace, label_selector=label_selector)

    def list_network_policies(self, namespace: str | None = None,
                              label_selector: str | None = None) -> list[Obj]:
        return self.list_objects(NETWORK_POLICY, namespace, label_selector=label_selector)

    def server_version(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request(
            "GET", "/version", Request("get", _rt("v1", "Version", "version", False))
        )
        return data

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 60,
    ) -> Iterator[tuple[str, Obj]]:
        """(event type, object) pairs until the server closes the watch (timeout_seconds)."""
        req = Request("watch", rt, namespace)
        query = [("watch", "true"), ("timeoutSeconds", str(timeout_seconds)),
                 ("allowWatchBookmarks", "false")]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        resp = self.request("GET", rt.path(namespace), req, query=query,
                            timeout=timeout_seconds + 10, stream=True)
        buffer = b""
        try:
            for chunk in resp.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise translate_status(
                            int(event["object"].get("code") or 500), event["object"], req,
                            self.server,
                        )
                    yield str(event["type"]), event["object"]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"watch of {rt.qualified} at {self.server} broke: "
                              f"{_root_cause(exc)}") from exc
        finally:
            resp.release_conn()

    def wait_for(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        predicate: Callable[[Obj | None], bool],
        *,
        timeout: float = 60.0,
        what: str = "the condition",
    ) -> Obj | None:
        """Poll-free wait: list-then-watch one object until ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        field_sel = f"metadata.name={name}"
        while True:
            objs, list_rv = self.list_with_version(rt, namespace, field_selector=field_sel)
            current = objs[0] if objs else None
            if predicate(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                for etype, obj in self.watch(
                    rt, namespace, resource_version=list_rv,
                    field_selector=field_sel, timeout_seconds=max(1, int(remaining)),
                ):
                    current = None if etype == "DELETED" else obj
                    if predicate(current):
                        return current
                    if time.monotonic() >= deadline:
                        break
            except KubeError as exc:
                if exc.status != 410:  # 410 Gone: the resourceVersion is too old; relist
                    raise
            if time.monotonic() >= deadline:
                break
        where = f"{namespace}/" if namespace else ""
        raise KubeError(f"timed out after {timeout:.0f}s waiting for {what} on "
                        f"{rt.kind} {where}{name}")

    # --- writes ---------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False, force: bool = False
              ) -> Obj:
        """Server-side apply as field manager ``netiso``; returns the object the server holds
        (or would hold, with ``dry_run``)."""
        rt = resource_type_of(obj)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        namespace = meta.get("namespace") if rt.namespaced else None
        query = [("fieldManager", FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        result: Obj = self.request(
            "PATCH", rt.path(namespace, name), Request("patch", rt, namespace, name),
            query=query, body=dict(obj), content_type="application/apply-patch+yaml",
        )
        return result

    def create(self, obj: Mapping[str, Any]) -> Obj:
        rt = resource_type_of(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        result: Obj = self.request(
            "POST", rt.path(namespace), Request("create", rt, namespace),
            query=[("fieldManager", FIELD_MANAGER)], body=dict(obj),
        )
        return result

    def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool:
        """Delete one object; False when it was already gone. ``uid`` guards against
        deleting a same-named object created after it was listed."""
        query: list[tuple[str, str]] = []
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": "Background"}
        if dry_run:
            # Both places: with a DeleteOptions body the API server takes dryRun from the
            # body and ignores the query parameter (a dry run would really delete).
            query.append(("dryRun", "All"))
            body["dryRun"] = ["All"]
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", rt.path(namespace, name),
                         Request("delete", rt, namespace, name), query=query, body=body)
        except NotFound:
            return False
        except KubeError as exc:
            if exc.status == 409 and uid:  # precondition failed: someone recreated it
                return False
            raise
        return True


def _root_cause(exc: BaseException) -> str:
    """The innermost reason ("Connection refused"), not urllib3's nested repr."""
    inner: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    text = str(inner)
    for marker in ("Connection refused", "timed out", "Name or service not known",
                   "No route to host", "Connection reset", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    if "Remote end closed connection" in text or "Connection aborted" in text:
        return "the server closed the connection mid-request"
    return text.split(": ", 1)[-1] if ": " in text else text or type(inner).__name__


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    workers: int = 8,
    timeout: float = 30.0,
    environ: Mapping[str, str] | None = None,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> Kube:
    """Open a connection from kubeconfig (kubectl's rules) or the in-cluster ServiceAccount."""
    cfg, source = _load_configuration(
        kubeconfig, context, os.environ if environ is None else environ, in_cluster_dir
    )
    cfg.connection_pool_maxsize = max(4, workers + 2)
    # urllib3 retries connects 3 times by default; a dead server should fail in seconds so
    # the caller can say what was and was not applied.
    cfg.retries = 2
    return Kube(ApiClient(cfg), source, timeout=timeout)


def strip_server_fields(obj: Mapping[str, Any]) -> Obj:
    """The object without what the server adds (status, uid, managedFields, ...), for diffs."""
    out: Obj = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                "selfLink"):
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def field_managers(obj: Mapping[str, Any]) -> list[str]:
    """Names of the managers recorded in managedFields (who else edits this object)."""
    return sorted({str(m.get("manager")) for m in
                   (obj.get("metadata") or {}).get("managedFields") or [] if m.get("manager")})
