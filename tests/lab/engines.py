"""What the clouds do to a cluster when their network-policy setting changes, done to the lab.

The cloud test servers (EKS add-on updates, GKE setNetworkPolicy operations, AKS managedCluster
PUTs) call these when an operation completes, so that enforcement in the lab appears *because* the
cloud operation completed, the way each cloud's managed engine appears on real nodes. Every
function takes the lab's own admin client (``tests.lab.kubeapi.Kube`` on the admin kubeconfig),
is idempotent, and raises ``EngineError`` (a ``controlplane.LabError``) with one clear line.

API (other helpers code against exactly these):

``eks_policy_agent(kube, enabled: bool) -> None``
    Sets the ``aws-eks-nodeagent`` container's ``--enable-network-policy=true|false`` in
    ``kube-system/aws-node`` as the EKS add-on manager does for ``enableNetworkPolicy`` (server-side
    apply, field manager ``eks``, forced: the add-on owns the field; the other args are kept). The
    DaemonSet rolls its pods; the new agent pods run the double when the flag is true. Needs the
    EKS flavour (aws-node exists); EngineError otherwise.
``gke_network_policy(kube, enabled: bool) -> None``
    Creates (or deletes) GKE's managed Calico: ServiceAccount ``kube-system/calico-sa``,
    ClusterRole/ClusterRoleBinding ``calico``, DaemonSet ``kube-system/calico-node`` with GKE's
    image (``GKE_CALICO_IMAGE``), field manager ``gke``.
``aks_network_policy(kube, policy: str) -> None``
    ``policy`` is ``none``, ``azure``, ``calico`` or ``cilium``: the engine AKS runs for that
    networkPolicy, created, and the other two deleted: Azure NPM (``kube-system/azure-npm``),
    Calico (``calico-system/calico-node``, the namespace AKS's Tigera operator renders into) or
    Cilium (``kube-system/cilium``). Transition rules (azure <-> calico only through none, ...)
    are ARM's, so the ARM test server checks them; this only makes the cluster match.
``wait_enforcing(kube, timeout: float = 120.0) -> None``
    Until every Node has a running double that finished kube-router's first full policy sync
    (its container log says so), so a test can assert enforcement right after. Pod readiness is
    that signal only for the Calico doubles (calico-node's readiness probe ``-felix-ready``); the
    others have no probe, as on the clouds here, and are Ready once launched.
``wait_not_enforcing(kube, timeout: float = 120.0) -> None``
    Until no pod runs an active double on any node and no kube-router chain is left in a node
    netns (the doubles sweep them on SIGTERM): what a test waits for after turning an engine off.

Every enabling call refuses while the lab's own enforcement (``python -m tests.lab enforce on``)
runs: both are kube-router in the same node netns, and a stopping double sweeps every kube-router
chain there. The GKE and AKS flavours start without it, like EKS.

Each object is shaped like the cloud's (names, namespaces, labels, ServiceAccount, image,
hostNetwork, privileged or NET_ADMIN, the node-name env) so that netiso's detection, which reads
them, sees what it sees on the cloud. Left out, because no netiso code reads them and each would
need a stand-in: probes other than calico-node's readiness, volumes, init containers (calico's
install-cni), the engines' Deployments (calico-typha, cilium-operator), metrics Services, and
GKE's ``projectcalico.org/ds-ready`` node selector. The ServiceAccounts' roles are shaped like
the clouds' too; the doubles themselves read the API with the lab's kube-router identity
(engine_double.py says why), whose RBAC every enabling call applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tests.lab import controlplane, enforcement, images, network
from tests.lab.engine_double import AWS_AGENT, synced
from tests.lab.kubeapi import JSON, ApiError, Kube

# Image names and namespaces as the clouds deploy them; the tags are plausible, not checked
# against the clouds' current releases (any tag maps to the double, images.ENGINE_DOUBLE_IMAGES).
# GKE: `gke.gcr.io/calico/node:v<calico>-gke.<n>` (seen: v3.23.5-gke.10, v3.26.3-gke.13).
GKE_CALICO_IMAGE = "gke.gcr.io/calico/node:v3.29.4-gke.2"
# AKS: Azure NPM from the container networking repo; Calico through AKS's Tigera operator into
# calico-system (seen: mcr.microsoft.com/oss/calico/node:v3.24.6 in calico-system); Cilium as
# "Azure CNI powered by Cilium" (seen: mcr.microsoft.com/oss/cilium/cilium:1.16.6, no `v`).
AZURE_NPM_IMAGE = "mcr.microsoft.com/containernetworking/azure-npm:v1.6.29"
AKS_CALICO_IMAGE = "mcr.microsoft.com/oss/calico/node:v3.28.2"
AKS_CILIUM_IMAGE = "mcr.microsoft.com/oss/cilium/cilium:1.16.6"

AKS_POLICIES = ("none", "azure", "calico", "cilium")
EKS_FIELD_MANAGER = "eks"
GKE_FIELD_MANAGER = "gke"
AKS_FIELD_MANAGER = "aks"
AGENT_CONTAINER = "aws-eks-nodeagent"
POLICY_FLAG = "--enable-network-policy"
# Long enough for the double to stop kube-router (1 s) and sweep (well under a second): with the
# grace period over, the node agent SIGKILLs the pod and the sweep would not happen.
GRACE_SECONDS = 10
_RBAC = "/apis/rbac.authorization.k8s.io/v1"
# calico-node's own readiness probe (Calico's manifests): the double answers it once it did its
# first policy sync (images.CALICO_DOUBLE_PROBE), so these pods are Ready only when enforcing.
# periodSeconds shorter than Calico's 10 s: tests wait for readiness, nothing else changes.
CALICO_READINESS = {"exec": {"command": ["/bin/calico-node", "-felix-ready"]},
                    "periodSeconds": 2, "timeoutSeconds": 10}


class EngineError(controlplane.LabError):
    """A switch or wait that could not do what it was asked; the message says why."""


# --------------------------------------------------------------------------- objects


def _sa(namespace: str, name: str, labels: dict[str, str]) -> JSON:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels}}


def _role(name: str, rules: list[JSON], labels: dict[str, str]) -> JSON:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels}, "rules": rules}


def _binding(name: str, role: str, namespace: str, sa: str, labels: dict[str, str]) -> JSON:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]}


def _node_name_env(name: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}


def _daemonset(namespace: str, name: str, *, labels: dict[str, str], selector: dict[str, str],
               sa: str, container: JSON) -> JSON:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {**selector}},
                "spec": {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": sa,
                    "terminationGracePeriodSeconds": GRACE_SECONDS,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [container],
                },
            },
        },
    }


_READ_POLICY_INPUTS = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
     "verbs": ["get", "list", "watch"]},
]


def gke_objects() -> list[JSON]:
    """GKE's managed Calico (legacy dataplane), as its addon manager reconciles it."""
    labels = {"addonmanager.kubernetes.io/mode": "Reconcile"}
    calico_rules = [*_READ_POLICY_INPUTS,
                    {"apiGroups": ["crd.projectcalico.org"], "resources": ["*"], "verbs": ["*"]}]
    return [
        _sa("kube-system", "calico-sa", labels),
        _role("calico", calico_rules, labels),
        _binding("calico", "calico", "kube-system", "calico-sa", labels),
        _daemonset("kube-system", "calico-node",
                   labels={"k8s-app": "calico-node", **labels},
                   selector={"k8s-app": "calico-node"}, sa="calico-sa",
                   container={
                       "name": "calico-node", "image": GKE_CALICO_IMAGE,
                       "env": [{"name": "DATASTORE_TYPE", "value": "kubernetes"},
                               {"name": "CALICO_NETWORKING_BACKEND", "value": "none"},
                               {"name": "CALICO_MANAGE_CNI", "value": "false"},
                               {"name": "FELIX_INTERFACEPREFIX", "value": "gke"},
                               _node_name_env("NODENAME")],
                       "securityContext": {"privileged": True},
                       "readinessProbe": CALICO_READINESS,
                   }),
    ]


def aks_objects(policy: str) -> list[JSON]:
    """The engine AKS deploys for ``networkPolicy: <policy>`` (none: nothing)."""
    labels = {"kubernetes.azure.com/managedby": "aks"}
    if policy == "azure":
        return [
            _sa("kube-system", "azure-npm", labels),
            _role("azure-npm", list(_READ_POLICY_INPUTS), labels),
            _binding("azure-npm-binding", "azure-npm", "kube-system", "azure-npm", labels),
            _daemonset("kube-system", "azure-npm", labels={"app": "azure-npm", **labels},
                       selector={"k8s-app": "azure-npm"}, sa="azure-npm", container={
                           "name": "azure-npm", "image": AZURE_NPM_IMAGE,
                           "env": [_node_name_env("HOSTNAME"),
                                   {"name": "NPM_CONFIG",
                                    "value": "/etc/azure-npm/azure-npm.json"}],
                           "securityContext": {"privileged": True},
                       }),
        ]
    if policy == "calico":
        calico_rules = [*_READ_POLICY_INPUTS,
                        {"apiGroups": ["crd.projectcalico.org"], "resources": ["*"],
                         "verbs": ["*"]}]
        return [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "calico-system", "labels": {"name": "calico-system"}}},
            _sa("calico-system", "calico-node", labels),
            _role("calico-node", calico_rules, labels),
            _binding("calico-node", "calico-node", "calico-system", "calico-node", labels),
            _daemonset("calico-system", "calico-node",
                       labels={"k8s-app": "calico-node", **labels},
                       selector={"k8s-app": "calico-node"}, sa="calico-node", container={
                           "name": "calico-node", "image": AKS_CALICO_IMAGE,
                           "env": [{"name": "DATASTORE_TYPE", "value": "kubernetes"},
                                   {"name": "CALICO_NETWORKING_BACKEND", "value": "none"},
                                   {"name": "FELIX_INTERFACEPREFIX", "value": "azv"},
                                   _node_name_env("NODENAME")],
                           "securityContext": {"privileged": True},
                           "readinessProbe": CALICO_READINESS,
                       }),
        ]
    if policy == "cilium":
        cilium_rules = [*_READ_POLICY_INPUTS,
                        {"apiGroups": ["cilium.io"], "resources": ["*"], "verbs": ["*"]}]
        return [
            _sa("kube-system", "cilium", labels),
            _role("cilium", cilium_rules, labels),
            _binding("cilium", "cilium", "kube-system", "cilium", labels),
            _daemonset("kube-system", "cilium", labels={"k8s-app": "cilium", **labels},
                       selector={"k8s-app": "cilium"}, sa="cilium", container={
                           "name": "cilium-agent", "image": AKS_CILIUM_IMAGE,
                           "command": ["cilium-agent"],
                           "args": ["--config-dir=/tmp/cilium/config-map"],
                           "env": [_node_name_env("K8S_NODE_NAME")],
                           # The lab grants only NET_ADMIN, NET_RAW, IPC_LOCK and SYS_RESOURCE of
                           # these (network.GRANTABLE_CAPS); the double needs NET_ADMIN alone.
                           "securityContext": {"capabilities": {"add": [
                               "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_RESOURCE", "SYS_ADMIN",
                               "SYS_MODULE"]}},
                       }),
        ]
    return []


# --------------------------------------------------------------------------- object plumbing


def _path(obj: JSON) -> str:
    kind, meta = obj["kind"], obj["metadata"]
    if kind == "Namespace":
        return f"/api/v1/namespaces/{meta['name']}"
    if kind == "ServiceAccount":
        return f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{meta['name']}"
    if kind == "DaemonSet":
        return f"/apis/apps/v1/namespaces/{meta['namespace']}/daemonsets/{meta['name']}"
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        return f"{_RBAC}/{kind.lower()}s/{meta['name']}"
    raise AssertionError(kind)


def _apply(kube: Kube, objects: Iterable[JSON], manager: str) -> None:
    for obj in objects:
        try:
            kube.apply(_path(obj), obj, field_manager=manager)
        except ApiError as exc:
            raise EngineError(f"applying {obj['kind']} {_path(obj)}: {exc}") from exc


def _delete(kube: Kube, objects: Iterable[JSON]) -> None:
    """Delete what these switches made (pods of a DaemonSet go by garbage collection, as with
    `kubectl delete`). Only objects carrying the labels the switch sets: the real Tigera operator
    in the EKS flavour owns a `calico-system/calico-node` and a ClusterRole `calico-node` too. The
    calico-system Namespace stays: AKS keeps it, and a Namespace takes time to go."""
    for obj in reversed(list(objects)):
        if obj["kind"] == "Namespace":
            continue
        try:
            live = kube.get(_path(obj))
            labels = live["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in obj["metadata"]["labels"].items()):
                continue
            kube.delete(_path(obj), {"propagationPolicy": "Background",
                                     "preconditions": {"uid": live["metadata"]["uid"]}})
        except ApiError as exc:
            if exc.status != 404:
                raise EngineError(f"deleting {obj['kind']} {_path(obj)}: {exc}") from exc


def _node_names(kube: Kube) -> list[str]:
    try:
        return sorted(n["metadata"]["name"] for n in kube.get("/api/v1/nodes")["items"])
    except ApiError as exc:
        raise EngineError(f"listing nodes: {exc}") from exc


def _prepare(kube: Kube) -> None:
    """Refuse beside the lab's own kube-router; make sure the doubles' identity may read."""
    own = [n for n in _node_names(kube)
           if controlplane.running(enforcement.process_name(enforcement.EnforcedNode(n, "")))]
    if own:
        raise EngineError(
            f"the lab's own enforcement runs on {', '.join(own)}: turn it off first (`python -m "
            "tests.lab enforce off`); an engine double and the lab's kube-router would share "
            "the node's chains"
        )
    try:
        enforcement.ensure_rbac(kube)
    except ApiError as exc:
        raise EngineError(f"applying kube-router's RBAC: {exc}") from exc


# --------------------------------------------------------------------------- the switches


def eks_policy_agent(kube: Kube, enabled: bool) -> None:
    """``--enable-network-policy=<enabled>`` on aws-node's agent container, as the EKS add-on."""
    path = "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node"
    try:
        ds = kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            raise EngineError("kube-system/aws-node does not exist: the EKS policy agent lives in "
                              "it (start the lab with --flavor eks)") from exc
        raise EngineError(f"reading kube-system/aws-node: {exc}") from exc
    containers = ds["spec"]["template"]["spec"]["containers"]
    agent = next((c for c in containers if c["name"] == AGENT_CONTAINER), None)
    if agent is None:
        raise EngineError(f"kube-system/aws-node has no {AGENT_CONTAINER} container")
    want = f"{POLICY_FLAG}={'true' if enabled else 'false'}"
    args = [a for a in agent.get("args") or []
            if a != POLICY_FLAG and not a.startswith(f"{POLICY_FLAG}=")]
    args.append(want)
    if enabled:
        _prepare(kube)
    if agent.get("args") and want in agent["args"]:
        return
    patch = {"apiVersion": "apps/v1", "kind": "DaemonSet",
             "metadata": {"name": "aws-node", "namespace": "kube-system"},
             "spec": {"template": {"spec": {"containers": [
                 {"name": AGENT_CONTAINER, "args": args}]}}}}
    _apply(kube, [patch], EKS_FIELD_MANAGER)


def gke_network_policy(kube: Kube, enabled: bool) -> None:
    """GKE's managed Calico DaemonSet (and its ServiceAccount and RBAC) present or gone."""
    if enabled:
        _prepare(kube)
        _apply(kube, gke_objects(), GKE_FIELD_MANAGER)
    else:
        _delete(kube, gke_objects())


def aks_network_policy(kube: Kube, policy: str) -> None:
    """The engine of AKS's ``networkProfile.networkPolicy`` present, the others gone."""
    if policy not in AKS_POLICIES:
        raise EngineError(f"unknown AKS network policy {policy!r}; "
                          f"one of {', '.join(AKS_POLICIES)}")
    for other in AKS_POLICIES:
        if other not in (policy, "none"):
            _delete(kube, aks_objects(other))
    if policy != "none":
        # A stopping double sweeps every kube-router chain of its node, the new engine's too: the
        # old engine's pods must be gone first (on AKS the change reimages the nodes anyway).
        mine = {images.engine_double(c["image"]) for obj in aks_objects(policy)
                if obj["kind"] == "DaemonSet"
                for c in obj["spec"]["template"]["spec"]["containers"]}
        _until("the previous AKS engine's pods gone",
               lambda: [f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                        for p, c in _doubles(kube) if _engine_of(p, c) not in mine], 60)
        _prepare(kube)
        _apply(kube, aks_objects(policy), AKS_FIELD_MANAGER)


def remove_foreign(kube: Kube, flavor: str) -> None:
    """Delete the doubles of every cloud but ``flavor``'s (a lab switched to another flavour
    must not keep another cloud's engine). aws-node itself is aws_node.py's."""
    if flavor != "gke":
        _delete(kube, gke_objects())
    if flavor != "aks":
        for policy in AKS_POLICIES:
            _delete(kube, aks_objects(policy))


# --------------------------------------------------------------------------- waiting


def _active(container: JSON) -> str | None:
    """The engine a container spec runs as an enforcing double, or None."""
    engine = images.engine_double(container.get("image", ""))
    if engine == AWS_AGENT:
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if f"{POLICY_FLAG}=true" not in argv:
            return None
    return engine


def _doubles(kube: Kube) -> list[tuple[JSON, str]]:
    """(pod, container name) of every pod on a node that runs an active double, any phase."""
    found = []
    for pod in kube.get("/api/v1/pods")["items"]:
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            continue
        for c in spec.get("containers") or []:
            if _active(c) is not None:
                found.append((pod, str(c["name"])))
    return found


def _engine_of(pod: JSON, container: str) -> str | None:
    return next((_active(c) for c in pod["spec"]["containers"] if c["name"] == container), None)


def _enforcing(kube: Kube, pod: JSON, container: str) -> bool:
    meta = pod["metadata"]
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
        return False
    states = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    if "running" not in (states.get(container, {}).get("state") or {}):
        return False
    try:
        log = kube.text(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/log",
                        container=container)
    except ApiError:
        return False
    return synced(log)


def _until(what: str, check: Callable[[], list[str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            pending = check()
        except ApiError as exc:
            pending = [f"API: {exc}"]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise EngineError(f"{what}: not within {timeout:.0f} s ({'; '.join(pending)})")
        time.sleep(0.5)


def wait_enforcing(kube: Kube, timeout: float = 120.0) -> None:
    """Until every node's double has done kube-router's first full policy sync, and each
    DaemonSet running a double says so in its status (every scheduled pod ready, the current
    generation observed): netiso's detection reads DaemonSet status, which the controller
    updates only after the pods' readiness, a moment after the sync."""
    def pending() -> list[str]:
        nodes = _node_names(kube)
        doubles = _doubles(kube)
        done = {p["spec"]["nodeName"] for p, c in doubles if _enforcing(kube, p, c)}
        seen = {p["spec"]["nodeName"]: f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                for p, _c in doubles}
        out = [f"{n}: " + (f"{seen[n]} not synced yet" if n in seen else "no engine double pod")
               for n in nodes if n not in done]
        owners = {(p["metadata"]["namespace"], o["name"]) for p, _c in doubles
                  for o in p["metadata"].get("ownerReferences") or []
                  if o.get("kind") == "DaemonSet"}
        for namespace, name in sorted(owners):
            try:
                ds = kube.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
            except ApiError as exc:
                if exc.status == 404:  # deleted: its pods are going, and count for nothing
                    continue
                raise
            status = ds.get("status") or {}
            desired = int(status.get("desiredNumberScheduled") or 0)
            if (int(status.get("numberReady") or 0) < desired or desired == 0
                    or int(status.get("observedGeneration") or 0)
                    < int(ds["metadata"].get("generation") or 0)):
                out.append(f"daemonset {namespace}/{name}: ready "
                           f"{status.get('numberReady') or 0}/{desired}")
        return out

    _until("engine doubles enforcing on every node", pending, timeout)


def wait_not_enforcing(kube: Kube, timeout: float = 120.0) -> None:
    """Until no double runs anywhere and no node netns holds a kube-router chain (unless the lab's
    own kube-router runs there)."""
    netns = {n.name: n.netns for n in network.default_nodes()}

    def pending() -> list[str]:
        left = [f"{p['metadata']['namespace']}/{p['metadata']['name']} still on "
                f"{p['spec']['nodeName']}" for p, _c in _doubles(kube)]
        for name in _node_names(kube):
            node = enforcement.EnforcedNode(name, netns.get(name, ""))
            if node.netns and controlplane.running(enforcement.process_name(node)) is None:
                chains = enforcement.chains(node.netns)
                if chains:
                    left.append(f"{len(chains)} kube-router chains in {node.netns}")
        return left

    _until("engine doubles gone and their chains swept", pending, timeout)
