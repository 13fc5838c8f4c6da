"""Errors of the Kubernetes seam, and the one function that turns an API answer into one.

Design decisions:

* **Say what was refused, in the terms that fix it.** 401 and an RBAC 403 say the verb,
  resource and namespace (what a Role grants); any other 403 (a quota, an admission webhook or
  policy, a namespace being deleted) keeps the server's own words, since binding a role would not
  fix it; a 404 for a whole resource type names the component that should have installed its
  CRD; a 409 apply conflict names the other field manager and fields; an unreachable server
  names its URL; a TLS failure says which side of the trust is wrong.
* **Pure.** ``translate_status`` takes a status code and the Status body and returns an error
  value; it never talks to a server, so every branch is a unit test.
* **The floor of the package.** Nothing here imports the rest of ``netiso.kube`` at run time
  (``Request`` only names ``ResourceType`` for the type checker), so ``resources`` and ``client``
  can raise these errors without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netiso.errors import OperationFailed, PreconditionFailed

if TYPE_CHECKING:
    from netiso.kube.resources import ResourceType

# Which component installs the CRDs of an API group: a 404 for the whole resource type is
# almost always "that component is not installed (yet)", and saying which one is the fix.
CRD_COMPONENTS: dict[str, str] = {
    "cilium.io": "Cilium (its agent/operator installs the cilium.io CRDs)",
    "crd.projectcalico.org": "Calico (the tigera-operator or calico manifests install it)",
    "projectcalico.org": "the Calico API server (calico-apiserver)",
    "operator.tigera.io": "the tigera-operator CRDs (Calico's operator-crds.yaml)",
    "policy.networking.k8s.io": "the network-policy-api CRDs (sigs.k8s.io/network-policy-api)",
    "networking.gke.io": "GKE Dataplane V2 (enable it on the cluster)",
    "monitoring.coreos.com": "the Prometheus operator",
    "snapshot.storage.k8s.io": "the external-snapshotter CRDs",
}


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


class UntrustedServer(Unreachable):
    """TLS verification of the server failed: the kubeconfig's CA does not sign the server's
    certificate, or the certificate does not name the host. Every request would fail alike."""


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
    status: int, body: Mapping[str, Any] | None, req: Request, server: str, *, retried: int = 0
) -> KubeError | MissingResourceType:
    """Turn an API error response (status + Status body) into a netiso error. Pure.

    ``retried``: how many times the request was already retried for a 429/503 (the message
    then says the server kept refusing, not that it refused once)."""
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
    if status in (429, 503) and retried:
        return KubeError(
            f"the API server at {server} kept refusing ({status} {reason or 'error'}) after "
            f"{retried} retries for: {what}",
            status=status, reason=reason,
            hint="the server is overloaded or throttling this identity (API Priority and "
                 "Fairness); rerun later or with a lower --concurrency",
        )
    if status == 429:
        return KubeError(f"the API server at {server} is throttling requests (429) for: {what}",
                         status=status, reason=reason, hint="retry later")
    detail = f": {message}" if message else ""
    return KubeError(f"API request failed ({status} {reason or 'error'}) for: {what}{detail}",
                     status=status, reason=reason)


# OpenSSL's verify errors, as Python's ssl module words them, and what each means for a user.
_TLS_VERIFY: tuple[tuple[str, str], ...] = (
    ("unable to get local issuer certificate",
     "the server's certificate is not signed by the CA in your kubeconfig"),
    ("self-signed certificate in certificate chain",
     "the server's certificate is not signed by the CA in your kubeconfig"),
    ("self signed certificate in certificate chain",
     "the server's certificate is not signed by the CA in your kubeconfig"),
    ("unable to get issuer certificate",
     "the server's certificate is not signed by the CA in your kubeconfig"),
    # A CA of the same name but another key (kubeadm names every CA "kubernetes"; a cluster
    # recreated keeps the name): OpenSSL finds it by name, then the signature does not verify.
    ("certificate signature failure",
     "the server's certificate is not signed by the CA in your kubeconfig"),
    ("self-signed certificate",
     "the server presents a self-signed certificate that is not the CA in your kubeconfig"),
    ("self signed certificate",
     "the server presents a self-signed certificate that is not the CA in your kubeconfig"),
    ("certificate has expired", "the server's certificate has expired"),
    ("certificate is not yet valid", "the server's certificate is not valid yet (check the clock)"),
    ("Hostname mismatch", "the server's certificate does not name the host in the server URL"),
    ("IP address mismatch",
     "the server's certificate does not name the IP address in the server URL"),
)


def explain_tls_failure(text: str) -> str | None:
    """What a TLS verification failure means, from the ssl module's text; None when ``text``
    is no verification failure. Pure."""
    if "CERTIFICATE_VERIFY_FAILED" not in text and "certificate verify failed" not in text:
        return None
    for marker, meaning in _TLS_VERIFY:
        if marker in text:
            return meaning
    return "the server's certificate failed verification against the CA in your kubeconfig"


def root_cause(exc: BaseException) -> str:
    """The innermost reason ("Connection refused"), not urllib3's nested repr."""
    inner: BaseException = exc
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError carries the cause here
    if isinstance(reason, BaseException):
        inner = reason
    text = str(inner)
    for marker in ("Connection refused", "timed out", "Name or service not known",
                   "No route to host", "Connection reset", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    if "Remote end closed connection" in text or "Connection aborted" in text:
        return "the server closed the connection mid-request"
    return text.split(": ", 1)[-1] if ": " in text else text or type(inner).__name__
