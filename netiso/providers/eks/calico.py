"""Calico policy-only beside the Amazon VPC CNI, installed through the Tigera operator.

Design decisions:

* **Pinned in code.** One Calico release (``VERSION``), its two upstream manifests by URL and
  sha256. ``--calico-manifests DIR|URL`` only changes where the same bytes are read from (a
  mirror, an air-gapped copy); a file whose sha256 differs is refused (exit 1, naming the file,
  the expected and the actual hash) before anything is sent to the cluster.
* **Server-side apply only.** The CRD file holds objects over a megabyte (the Installation CRD
  alone is ~1.4 MB) and client-side apply's last-applied annotation is capped at 256 KiB, so
  everything goes through ``Kube.apply_all`` (server-side apply as field manager ``netiso``,
  CRDs first and waited on until Established). A second apply of the same bytes changes nothing.
* **aws-node as Calico's EKS guide prepares it.** The VPC CNI's ClusterRole gets ``patch`` on
  pods and its DaemonSet ``ANNOTATE_POD_IP=true`` (so a pod's IP is on the pod as soon as the CNI
  assigned it, which Calico's policy needs before the kubelet reports it). The env var is a
  server-side apply of just that entry (containers and env are lists keyed by name, so the rest
  stays the EKS add-on's). A ClusterRole's ``rules`` is an atomic list, so a partial apply would
  conflict with (or, forced, replace) EKS's rules: the rule is appended by JSON patch instead,
  guarded by a ``test`` of the resourceVersion read, as the guide's ``kubectl patch`` does.
* **Ready means the operator says so.** The wait reads TigeraStatus, the operator's own verdict
  per component: every one Available=True and not Degraded. ``tiers`` is the exception when no
  ``APIServer`` was asked for: the operator's tiers controller needs the projectcalico.org/v3
  API that only the Calico API server serves, so without one it stays Degraded ("Waiting for
  Tigera API server to be ready") on every cluster; enforcement does not depend on it, and the
  result says so. A component Degraded for a reason about the spec (InvalidConfigurationError,
  ResourceCreateError, ...) for ``DEGRADED_GRACE`` fails the wait with the operator's words and
  the non-ready pods' reasons, rather than after the whole timeout; PodFailure and
  ResourceNotReady mean "still starting" during a rollout and fail only at the timeout.
* **Version from the operator.** ``Installation default``'s ``status.calicoVersion`` is what the
  operator last rolled out: the pinned version and Available means there is nothing to do; an
  older one is refused unless ``--upgrade``.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netiso.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from netiso.kube import Kube, Obj

VERSION = "v3.32.1"
OPERATOR_IMAGE = "quay.io/tigera/operator:v1.42.3"
UPSTREAM = f"https://raw.githubusercontent.com/projectcalico/calico/{VERSION}/manifests"
#: The release's own files (projectcalico/calico tag v3.32.1, manifests/).
SHA256: Mapping[str, str] = {
    "operator-crds.yaml": "192f8b2d934ef24b62e86b7e1a6e1762d1c8af26a916f78057bc13fa5ed60f71",
    "tigera-operator.yaml": "f18e073794207d372606bc3ea6f8fd73972f86d6828f4ba666dfe0d4aa8ab07f",
}
CRDS, OPERATOR = "operator-crds.yaml", "tigera-operator.yaml"

INSTALLATION: Mapping[str, Any] = {
    "apiVersion": "operator.tigera.io/v1",
    "kind": "Installation",
    "metadata": {"name": "default"},
    "spec": {
        "kubernetesProvider": "EKS",
        "cni": {"type": "AmazonVPC"},
        "calicoNetwork": {"bgp": "Disabled"},
    },
}
APISERVER: Mapping[str, Any] = {
    "apiVersion": "operator.tigera.io/v1",
    "kind": "APIServer",
    "metadata": {"name": "default"},
    "spec": {},
}
# Calico's EKS guide: the VPC CNI annotates each pod with its IP, which needs patch on pods.
AWS_NODE_RULE: Mapping[str, Any] = {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}
AWS_NODE_ENV: Mapping[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "aws-node", "namespace": "kube-system"},
    "spec": {"template": {"spec": {"containers": [
        {"name": "aws-node", "env": [{"name": "ANNOTATE_POD_IP", "value": "true"}]},
    ]}}},
}
#: The TigeraStatus that stays Degraded without an APIServer (see the module notes).
TIERS = "tiers"
# A Degraded condition is taken as the operator's verdict once it held this long: during a
# rollout the operator briefly reports Degraded while a component it just created starts.
DEGRADED_GRACE = 10.0
STARTING = ("PodFailure", "ResourceNotReady")


@dataclass(frozen=True)
class Manifests:
    """The pinned manifests, checked, as objects; ``source`` is where they were read."""

    source: str
    crds: tuple[Obj, ...]
    operator: tuple[Obj, ...]


def _read(source: str, name: str) -> bytes:
    if "://" in source:
        url = f"{source.rstrip('/')}/{name}"
        if not url.startswith(("https://", "http://", "file://")):
            raise UsageError(f"--calico-manifests {source}: not a directory or an http(s) URL")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (scheme checked)
                data: bytes = resp.read()
                return data
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OperationFailed(f"cannot download {url}: {reason}",
                                  hint="pass --calico-manifests DIR with a copy of the release's "
                                       "files") from exc
    path = Path(source).expanduser() / name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--calico-manifests {source}: cannot read {name}: "
                         f"{exc.strerror or exc}") from exc


def load(source: str | None) -> Manifests:
    """Read both manifests from ``source`` (default: upstream), check each sha256, parse."""
    from netiso.kube import parse_manifests

    where = source or UPSTREAM
    parsed: dict[str, tuple[Obj, ...]] = {}
    for name, expected in SHA256.items():
        data = _read(where, name)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise OperationFailed(
                f"{where.rstrip('/')}/{name}: sha256 {actual}, expected {expected} "
                f"(Calico {VERSION})",
                hint="use the release's unchanged file; nothing was applied",
            )
        parsed[name] = tuple(parse_manifests(data.decode("utf-8"), f"{where}/{name}"))
    return Manifests(where, parsed[CRDS], parsed[OPERATOR])


def refs(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """"Kind namespace/name" of each object, as a dry run lists them."""
    out = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
        out.append(f"{obj.get('kind')} {ns}{meta.get('name')}")
    return out


# --- what is on the cluster --------------------------------------------------------------------


@dataclass(frozen=True)
class CalicoState:
    """What the cluster shows of a Calico install (operator-managed)."""

    installation: Obj | None  # Installation default
    version: str  # status.calicoVersion ("" before the operator rolled anything out)
    statuses: Mapping[str, Mapping[str, Mapping[str, Any]]]  # TigeraStatus name -> type -> cond
    apiserver: bool  # an APIServer resource exists
    operator_image: str  # the tigera-operator Deployment's image ("" when absent)
    crds: frozenset[str]  # names of the CRDs present (Calico's among them)

    def available(self, *, apiserver: bool) -> bool:
        return bool(self.statuses) and not self.not_ready(apiserver=apiserver)

    def not_ready(self, *, apiserver: bool) -> list[str]:
        """The components that hold the install back: 'name: condition (reason: message)'."""
        out = []
        if "calico" not in self.statuses:
            out.append("calico: no TigeraStatus yet")
        for name, cond in sorted(self.statuses.items()):
            if name == TIERS and not (apiserver or self.apiserver):
                continue
            degraded = cond.get("Degraded", {})
            available = cond.get("Available", {})
            if degraded.get("status") == "True":
                out.append(f"{name}: Degraded ({_why(degraded)})")
            elif available.get("status") != "True":
                progressing = cond.get("Progressing", {})
                why = _why(progressing) if progressing.get("status") == "True" else _why(
                    available)
                out.append(f"{name}: not Available ({why})")
        return out

    def degraded(self, *, apiserver: bool) -> list[str]:
        return [line for line in self.not_ready(apiserver=apiserver) if ": Degraded (" in line]


def _why(cond: Mapping[str, Any]) -> str:
    reason = str(cond.get("reason") or "").strip()
    message = str(cond.get("message") or "").strip().replace("\n", " ")
    return ": ".join(p for p in (reason, message) if p) or "no reason given"


def read_state(kube: Kube) -> CalicoState:
    from netiso.kube import MissingResourceType

    crd_rt = kube.resource_for("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    crds = frozenset(str(o["metadata"]["name"]) for o in kube.list_objects(crd_rt))
    installation: Obj | None = None
    statuses: dict[str, dict[str, Mapping[str, Any]]] = {}
    apiserver = False
    try:
        installation = kube.get(kube.resource_for("operator.tigera.io/v1", "Installation"),
                                "default")
        for item in kube.list_objects(kube.resource_for("operator.tigera.io/v1",
                                                        "TigeraStatus")):
            conditions = (item.get("status") or {}).get("conditions") or []
            statuses[str(item["metadata"]["name"])] = {str(c.get("type")): c for c in conditions}
        apiserver = bool(kube.list_objects(kube.resource_for("operator.tigera.io/v1",
                                                             "APIServer")))
    except MissingResourceType:
        pass  # the operator's CRDs are not installed: no Calico
    deploy = kube.get(kube.resource_for("apps/v1", "Deployment"), "tigera-operator",
                      "tigera-operator")
    image = ""
    if deploy is not None:
        containers = deploy["spec"]["template"]["spec"].get("containers") or []
        image = str(containers[0].get("image", "")) if containers else ""
    version = str(((installation or {}).get("status") or {}).get("calicoVersion") or "")
    return CalicoState(installation, version, statuses, apiserver, image, crds)


def installed_version(state: CalicoState) -> str:
    """The Calico version installed ('' when none): the operator's word, else its image."""
    if state.version:
        return state.version
    return ""


def non_ready_pods(kube: Kube, namespaces: Sequence[str] = ("tigera-operator", "calico-system")
                   ) -> list[str]:
    """'ns/pod: container reason: message' for each pod of Calico's that is not ready."""
    from netiso.kube import KubeError

    out: list[str] = []
    for ns in namespaces:
        try:
            pods = kube.list_pods(ns)
        except KubeError:
            continue
        for pod in pods:
            status = pod.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or [])
            if ready:
                continue
            name = f"{ns}/{pod['metadata']['name']}"
            reasons = []
            for cs in [*(status.get("initContainerStatuses") or []),
                       *(status.get("containerStatuses") or [])]:
                for key in ("waiting", "terminated"):
                    st = (cs.get("state") or {}).get(key)
                    if st and (key == "waiting" or st.get("exitCode")):
                        text = ": ".join(p for p in (st.get("reason"), st.get("message")) if p)
                        reasons.append(f"{cs.get('name')} {text or key}")
                if not cs.get("ready") and (cs.get("state") or {}).get("running"):
                    reasons.append(f"{cs.get('name')} running, not ready")
            if not reasons:
                reasons.append(f"phase {status.get('phase', 'Unknown')}"
                               + (f" ({status['reason']})" if status.get("reason") else ""))
            out.append(f"{name}: {'; '.join(reasons)}")
    return out


# --- the writes -----------------------------------------------------------------------------


def apply_objects(kube: Kube, objects: Sequence[Mapping[str, Any]], *, force: bool,
                  timeout: float) -> int:
    """Server-side apply; CRDs are waited on until Established and their kinds remembered (the
    plan looked Installation and TigeraStatus up before they existed, and the aggregated
    discovery document trails a new CRD). How many objects were applied."""
    from netiso.kube import resource_types_of_crd

    applied = kube.apply_all(objects, force=force, establish_timeout=timeout)
    crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    if crds:
        kube.wait_established([str(o["metadata"]["name"]) for o in crds], timeout=timeout)
        for crd in crds:
            kube.discovery.remember(resource_types_of_crd(crd))
    return len(applied)


def apply_custom(kube: Kube, obj: Mapping[str, Any], *, force: bool,
                 timeout: float = 30.0) -> None:
    """Server-side apply of one of the operator's resources, once the API server serves its
    kind: discovery documents can trail a CRD's Established condition by a moment."""
    from netiso.kube import MissingResourceType

    deadline = time.monotonic() + timeout
    while True:
        try:
            kube.server_side_apply(obj, force=force)
            return
        except MissingResourceType:
            if time.monotonic() >= deadline:
                raise
            kube.discovery.invalidate()
            time.sleep(1.0)


def clusterrole_has_rule(role: Mapping[str, Any] | None) -> bool:
    for rule in (role or {}).get("rules") or []:
        if ("" in (rule.get("apiGroups") or []) and
                {"pods", "*"} & set(rule.get("resources") or []) and
                {"patch", "*"} & set(rule.get("verbs") or []) and
                not rule.get("resourceNames")):
            return True
    return False


def patch_aws_node_clusterrole(kube: Kube) -> bool:
    """Append the pods/patch rule to ClusterRole aws-node; False when that role is absent."""
    from netiso.kube import Request

    rt = kube.resource_for("rbac.authorization.k8s.io/v1", "ClusterRole")
    role = kube.get(rt, "aws-node")
    if role is None:
        return False
    if clusterrole_has_rule(role):
        return True
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion",
         "value": role["metadata"]["resourceVersion"]},
    ]
    if role.get("rules"):
        ops.append({"op": "add", "path": "/rules/-", "value": dict(AWS_NODE_RULE)})
    else:
        ops.append({"op": "add", "path": "/rules", "value": [dict(AWS_NODE_RULE)]})
    kube.request("PATCH", rt.path(None, "aws-node"), Request("patch", rt, None, "aws-node"),
                 query=[("fieldManager", "netiso")], body=ops,
                 content_type="application/json-patch+json")
    return True


def aws_node_annotates(daemonset: Mapping[str, Any] | None) -> bool:
    for container in ((daemonset or {}).get("spec", {}).get("template", {}).get("spec", {})
                      .get("containers") or []):
        if container.get("name") == "aws-node":
            return any(e.get("name") == "ANNOTATE_POD_IP" and e.get("value") == "true"
                       for e in container.get("env") or [])
    return False


def wait_available(kube: Kube, *, apiserver: bool, timeout: float,
                   log: Callable[[str], None], interval: float = 2.0) -> CalicoState:
    """Until every TigeraStatus is Available and none Degraded (see the module notes)."""
    deadline = time.monotonic() + timeout
    degraded_since: float | None = None
    last: list[str] | None = None
    while True:
        state = read_state(kube)
        waiting = state.not_ready(apiserver=apiserver)
        if not waiting and state.version and state.version != VERSION:
            # After --upgrade the TigeraStatus of the old rollout still reads Available until
            # the new operator has rolled the pinned version out and said so in the
            # Installation's status.
            waiting = [f"Installation default: status.calicoVersion {state.version}, not yet "
                       f"{VERSION}"]
        if not waiting:
            return state
        if waiting != last:
            log("calico: waiting for " + "; ".join(waiting))
            last = waiting
        now = time.monotonic()
        # PodFailure/ResourceNotReady are how the operator says "still starting" (calico-node
        # not ready yet); those fail at the timeout, with the pods' reasons. Any other reason
        # (InvalidConfigurationError, ResourceCreateError, ...) is its verdict on the spec.
        degraded = [line for line in state.degraded(apiserver=apiserver)
                    if not any(f"Degraded ({r}" in line for r in STARTING)]
        degraded_since = (degraded_since or now) if degraded else None
        if degraded and degraded_since is not None and now - degraded_since >= DEGRADED_GRACE:
            raise _failure(kube, "the Tigera operator reports Calico Degraded", degraded)
        if now >= deadline:
            raise _failure(kube, f"Calico not Available after {timeout:.0f} s", waiting)
        time.sleep(min(interval, max(0.1, deadline - now)))


def _failure(kube: Kube, what: str, conditions: Sequence[str]) -> OperationFailed:
    pods = non_ready_pods(kube)
    text = f"{what}: " + "; ".join(conditions)
    if pods:
        text += "; pods not ready: " + "; ".join(pods)
    return OperationFailed(text, hint="kubectl get tigerastatus -o yaml shows the operator's "
                                      "conditions")
