"""What verify probes, as data: nodes, probe pods, flows. Pure (no cluster, no I/O).

Design decisions:

* **A flow is data, judged elsewhere.** A :class:`FlowSpec` names its check, its client probe and
  its target (a server probe and port, an external address and port, or a DNS name). Nothing
  here says whether the flow should pass: expectations are computed by the policy engine on the
  live objects just before probing (``checks.py``), never written next to the flow.
* **Few pods, every node pair that matters.** One server per chosen node; one client per node in
  each probed namespace. Each client dials the server on its own node and the server on the next
  node (round robin), so every node is both a source and a destination, on one node and across
  nodes, with 2N flows per check rather than N².
* **Nodes are chosen, not assumed.** Only schedulable, Ready Linux nodes can run a probe; with
  more than ``limit`` of them, the pick is spread round robin over (zone, node pool) groups so a
  zone or pool that enforces differently is not missed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Labels verify puts on what it creates (namespaces, Jobs, probe pods).
RUN_LABEL = "netiso.io/verify-run"
PROBE_LABEL = "netiso.io/verify-probe"
JOB_LABEL = "netiso.io/verify-job"
#: Annotation on a run's namespaces and Jobs: past this instant (RFC 3339) the run is over, so
#: whatever is left of it is a leftover the next verify may remove.
DEADLINE_ANNOTATION = "netiso.io/verify-deadline"
NAMESPACE_PREFIX = "netiso-verify-"

#: Node labels that name a node pool, per provider (the first present wins).
POOL_LABELS = (
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
    "node.kubernetes.io/instance-type",
)
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")

DEFAULT_NODE_LIMIT = 10


class Outcome(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    ERROR = "probe-error"


class Role(StrEnum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    hostname: str  # the kubernetes.io/hostname label value probes are pinned with
    zone: str
    pool: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "zone": self.zone or None, "pool": self.pool or None}


def _first_label(labels: Mapping[str, str], keys: Sequence[str]) -> str:
    for key in keys:
        if labels.get(key):
            return labels[key]
    return ""


def node_skip_reason(node: Mapping[str, Any]) -> str | None:
    """Why a probe cannot run on this node (None when it can)."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = node.get("spec") or {}
    os_name = labels.get("kubernetes.io/os") or labels.get("beta.kubernetes.io/os") or "linux"
    if os_name != "linux":
        return f"{os_name} node (probes are Linux pods)"
    if labels.get("eks.amazonaws.com/compute-type") == "fargate" or \
            labels.get("type") == "virtual-kubelet":
        return "virtual node (no NetworkPolicy dataplane of its own)"
    if spec.get("unschedulable"):
        return "cordoned (spec.unschedulable)"
    ready = [c for c in (node.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"]
    if not ready or ready[0].get("status") != "True":
        return "not Ready"
    return None


def pick_nodes(nodes: Sequence[Mapping[str, Any]], limit: int | None
               ) -> tuple[list[NodeInfo], list[tuple[str, str]]]:
    """(nodes to probe, [(node, why not)]). ``limit`` None means every usable node."""
    usable: list[NodeInfo] = []
    skipped: list[tuple[str, str]] = []
    for node in sorted(nodes, key=lambda n: str((n.get("metadata") or {}).get("name"))):
        meta = node.get("metadata") or {}
        name = str(meta.get("name"))
        why = node_skip_reason(node)
        if why:
            skipped.append((name, why))
            continue
        labels = meta.get("labels") or {}
        usable.append(NodeInfo(name, labels.get("kubernetes.io/hostname") or name,
                               _first_label(labels, ZONE_LABELS),
                               _first_label(labels, POOL_LABELS)))
    if limit is None or len(usable) <= limit:
        return usable, skipped
    groups: dict[tuple[str, str], list[NodeInfo]] = {}
    for n in usable:
        groups.setdefault((n.zone, n.pool), []).append(n)
    picked: list[NodeInfo] = []
    queues = [groups[k] for k in sorted(groups)]
    while len(picked) < limit:
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    chosen = {n.name for n in picked}
    skipped.extend((n.name, f"over --nodes {limit}") for n in usable if n.name not in chosen)
    return sorted(picked, key=lambda n: n.name), skipped


@dataclass(frozen=True)
class Probe:
    """One probe pod (owned by a Job): a server listening, or a client dialling."""

    name: str        # unique in the run: srv-1, cli-a-1, canary-cli-1 ...
    namespace: str
    node: NodeInfo
    role: Role
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where a client connects: a server probe's pod, an external address, or a DNS name."""

    port: int
    protocol: str = "TCP"
    server: str | None = None   # probe name
    ip: str | None = None
    dns_name: str | None = None

    @property
    def kind(self) -> str:
        return "dns" if self.dns_name else "tcp"


@dataclass(frozen=True)
class FlowSpec:
    id: str
    check: str
    client: str      # probe name
    target: Target
    what: str        # one line for people: "same namespace, other port"


@dataclass(frozen=True)
class Layout:
    """The probes of one run and the ports they use."""

    run_id: str
    nodes: tuple[NodeInfo, ...]
    canary_namespace: str
    namespace: str          # where the bundle checks' servers and same-namespace clients run
    peer_namespace: str     # "another namespace"
    app_port: int | None    # the values' first TCP app port (None: no app-port checks)
    app_port_name: str | None
    app_labels: Mapping[str, str]
    other_port: int
    in_namespace: bool = False

    def server(self, ns: str, node: NodeInfo) -> str:
        prefix = "canary-srv" if ns == self.canary_namespace and ns != self.namespace else "srv"
        return f"{prefix}-{self.nodes.index(node) + 1}"

    def servers(self, ns: str) -> list[Probe]:
        labels = {**self.app_labels}
        return [Probe(self.server(ns, n), ns, n, Role.SERVER, labels) for n in self.nodes]

    def clients(self, ns: str, tag: str) -> list[Probe]:
        return [Probe(f"{tag}-{i + 1}", ns, n, Role.CLIENT) for i, n in enumerate(self.nodes)]

    def pairs(self) -> list[tuple[int, int]]:
        """(client node index, server node index): same node, then the next node."""
        out: list[tuple[int, int]] = []
        n = len(self.nodes)
        for i in range(n):
            out.append((i, i))
            if n > 1:
                out.append((i, (i + 1) % n))
        return out

    @property
    def ports(self) -> list[int]:
        return sorted({p for p in (self.app_port, self.other_port) if p is not None})


def choose_other_port(taken: Sequence[int]) -> int:
    """A port no app port uses, for "another port closed" (unprivileged, so a non-root
    server can listen on it)."""
    for port in (8081, 9091, 18081, 28081):
        if port not in taken:
            return port
    raise AssertionError("unreachable: four candidate ports cannot all be taken by one entry")


def metadata_addresses(cidrs: Sequence[str]) -> list[str]:
    """The IPv4 host addresses among the metadata deny list (probes run on IPv4 pod networks;
    a range is probed at its first address)."""
    out: list[str] = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == 4:
            out.append(str(net.network_address))
    return out
