"""The evaluator: is a connection allowed, as networking.k8s.io/v1 NetworkPolicy says?

Design: everything is a set of pods, and a set is a Python ``int`` (bit *i* = pod *i*).
:class:`Cluster` indexes the objects once: every policy's podSelector, every peer of every rule
(podSelector within the policy's namespace, namespaceSelector over namespace labels, their AND,
ipBlock over pod IPs) becomes one bitset, computed once per distinct selector. A connection
question is then bit tests; a whole matrix is a few big-integer ORs per rule:

* ingress: for each rule, the destinations it protects (policy selection AND the port scope,
  which depends on the destination for named ports) receive the rule's source set;
* egress: for each rule, every destination it reaches receives the set of pods the policy
  selects (the transpose, so both sides end up as "sources allowed to reach destination d");
* allowed(s, d) = egress-side bit AND ingress-side bit; unisolated pods get the universe.

Rules with identical target sets are merged before the per-pod loop, so the cost is
O(distinct target sets x pods / 64) machine words, never pairs x policies.

Where the spec leaves room for implementations (an ipBlock that covers pod IPs, hostNetwork
pods, traffic from the pod's own node, a pod talking to itself) the engine follows the spec
text and adds a "non-portable" note to the verdict instead of guessing a plugin's behaviour.
Two exceptions of the spec are not rules at all and so sit outside the bitset algebra, applied
last on both paths: a pod cannot block access to itself, and traffic to and from the pod's own
node is always allowed.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netiso.policy.loader import LoadedObjects, load_objects
from netiso.policy.model import (
    NAMESPACE_NAME_LABEL,
    Direction,
    IPAddress,
    IPBlock,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyInputError,
    PortMatch,
    Protocol,
    Rule,
    parse_ip,
)
from netiso.policy.selectors import LabelIndex, bit_indices

NOTE_IPBLOCK_POD = (
    "non-portable: an ipBlock matches a pod IP; the spec applies ipBlock to any IP, but "
    "plugins differ on whether pod traffic (often SNATed or tunnelled) is matched by ipBlock"
)
NOTE_HOST_NETWORK = (
    "non-portable: a hostNetwork pod is involved; the spec leaves policy on hostNetwork pods "
    "undefined (they carry the node's IP), evaluated here like any pod"
)
NOTE_NODE_LOCAL = (
    "non-portable: traffic from the destination pod's own node; the spec always allows it into "
    "an ingress-isolated pod, some plugins still filter it"
)
NOTE_NODE_LOCAL_EGRESS = (
    "non-portable: traffic to the source pod's own node; the spec always allows it out of an "
    "egress-isolated pod, some plugins still filter it"
)
NOTE_HOST_NETWORK_IP = (
    "non-portable: {ip} is the IP of hostNetwork pod(s) {pods}, i.e. of their node; the spec "
    "leaves policy on hostNetwork pods undefined, evaluated here as that external IP"
)
NOTE_SELF = (
    "non-portable: a pod connecting to itself; always allowed (the spec: a pod cannot block "
    "access to itself), but through its own pod IP the packets may hairpin and some plugins "
    "filter that"
)
REASON_SELF = "a pod cannot block access to itself"


# --- endpoints and flows -----------------------------------------------------------------

@dataclass(frozen=True)
class PodEndpoint:
    index: int
    key: str

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class ExternalEndpoint:
    ip: IPAddress

    def __str__(self) -> str:
        return f"ip:{self.ip}"


Endpoint = PodEndpoint | ExternalEndpoint


@dataclass(frozen=True)
class Flow:
    """A connection attempt; ``port`` may be a name, resolved on the destination pod."""

    src: Endpoint
    dst: Endpoint
    port: int | str
    protocol: Protocol | None = None


@dataclass(frozen=True)
class RuleMatch:
    """Which rule of which policy admitted the connection on one side."""

    policy: str
    direction: Direction
    rule: int
    peer: int | None  # index in from/to; None when the rule has no peers (everyone)
    text: str

    def __str__(self) -> str:
        side = "ingress" if self.direction is Direction.INGRESS else "egress"
        where = f"{self.policy} {side}[{self.rule}]"
        return f"{where} ({self.text})"


@dataclass(frozen=True)
class SideVerdict:
    """One side of a connection: the source's egress or the destination's ingress."""

    direction: Direction
    allowed: bool
    isolated: bool
    policies: tuple[str, ...]  # the policies that select this endpoint for this direction
    allowed_by: tuple[RuleMatch, ...] = ()
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "isolated": self.isolated,
                "policies": list(self.policies)}


@dataclass(frozen=True)
class Verdict:
    src: str
    dst: str
    port: int
    protocol: Protocol
    egress: SideVerdict
    ingress: SideVerdict
    notes: tuple[str, ...] = ()      # where plugins differ (non-portable)
    warnings: tuple[str, ...] = ()   # about the question: an ambiguous IP, a finished pod

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    @property
    def non_portable(self) -> bool:
        return bool(self.notes)


# --- the indexed cluster -----------------------------------------------------------------

def _node_keys(pod: Pod) -> list[tuple[str, str]]:
    keys = []
    if pod.node_name:
        keys.append(("name", pod.node_name))
    if pod.host_ip:
        keys.append(("ip", pod.host_ip))
    return keys


def same_node(a: Pod, b: Pod) -> bool:
    """Same node name, or same hostIP (the node's address)."""
    return bool(set(_node_keys(a)) & set(_node_keys(b)))


@dataclass(frozen=True)
class _CompiledRule:
    index: int
    rule: Rule
    peer_sets: tuple[int, ...]  # per peer: the pods it matches (ipBlock: by pod IP)
    pods: int                   # union of peer_sets, or every pod when the rule has no peers
    via_ipblock: int            # pods matched only through an ipBlock (non-portable)


@dataclass(frozen=True)
class _CompiledPolicy:
    policy: NetworkPolicy
    selected: int
    ingress: tuple[_CompiledRule, ...]
    egress: tuple[_CompiledRule, ...]
    ipblock_covers_pods: bool


class Cluster:
    """Namespaces, pods and policies, indexed once into bitsets."""

    def __init__(self, namespaces: Iterable[Namespace], pods: Iterable[Pod],
                 policies: Iterable[NetworkPolicy]) -> None:
        self.notes: list[str] = []
        ns_by_name: dict[str, Namespace] = {}
        for ns in namespaces:
            labels = dict(ns.labels)
            labels[NAMESPACE_NAME_LABEL] = ns.name
            ns_by_name[ns.name] = Namespace(ns.name, tuple(sorted(labels.items())))
        pod_by_key: dict[str, Pod] = {}
        for pod in pods:
            if pod.key in pod_by_key:
                self.notes.append(f"pod {pod.key} given twice: the last one is used")
            pod_by_key[pod.key] = pod
        pol_by_key: dict[str, NetworkPolicy] = {}
        for pol in policies:
            if pol.key in pol_by_key:
                self.notes.append(f"policy {pol.key} given twice: the last one is used")
            pol_by_key[pol.key] = pol
        for name in sorted({p.namespace for p in pod_by_key.values()}
                           | {p.namespace for p in pol_by_key.values()}):
            if name not in ns_by_name:
                # Without the object only the label the API server always sets is known.
                ns_by_name[name] = Namespace(name, ((NAMESPACE_NAME_LABEL, name),))
                self.notes.append(f"namespace {name} not given: assumed to carry only "
                                  f"{NAMESPACE_NAME_LABEL}={name}")

        self.namespaces: tuple[Namespace, ...] = tuple(ns_by_name.values())
        self.pods: tuple[Pod, ...] = tuple(pod_by_key.values())
        self.policies: tuple[NetworkPolicy, ...] = tuple(pol_by_key.values())
        self.universe = (1 << len(self.pods)) - 1
        self._pod_pos = {p.key: i for i, p in enumerate(self.pods)}

        self._ns_pos = {ns.name: i for i, ns in enumerate(self.namespaces)}
        self._ns_index = LabelIndex([ns.label_map for ns in self.namespaces])
        self._pod_index = LabelIndex([p.label_map for p in self.pods])
        self._pods_in_ns = [0] * len(self.namespaces)
        for i, pod in enumerate(self.pods):
            self._pods_in_ns[self._ns_pos[pod.namespace]] |= 1 << i
        self._host_network = 0
        for i, pod in enumerate(self.pods):
            if pod.host_network:
                self._host_network |= 1 << i
        # Pods per node, by name and by hostIP: a file may give only one of the two.
        self._node_groups: dict[tuple[str, str], int] = {}
        for i, pod in enumerate(self.pods):
            for node in _node_keys(pod):
                self._node_groups[node] = self._node_groups.get(node, 0) | 1 << i

        # A finished pod has no traffic, and its IP may already be a running pod's: it never
        # answers for an IP.
        self.live = self.universe
        for i, pod in enumerate(self.pods):
            if pod.finished:
                self.live &= ~(1 << i)

        # Sorted (ip, pod) per family: an ipBlock becomes two bisects, not a scan of all pods.
        ip_rows: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        self._pod_by_ip: dict[IPAddress, list[int]] = {}
        for i, pod in enumerate(self.pods):
            for text in pod.ips:
                ip = ipaddress.ip_address(text)
                ip_rows[ip.version].append((int(ip), i))
                if not pod.finished:
                    self._pod_by_ip.setdefault(ip, []).append(i)
        self._ip_rows = {v: sorted(rows) for v, rows in ip_rows.items()}
        self._ip_keys = {v: [r[0] for r in rows] for v, rows in self._ip_rows.items()}

        # (name, protocol, number) -> pods declaring that named container port.
        self._named: dict[tuple[str, Protocol, int], int] = {}
        for i, pod in enumerate(self.pods):
            for cp in pod.ports:
                if cp.name:
                    key = (cp.name, cp.protocol, cp.number)
                    self._named[key] = self._named.get(key, 0) | (1 << i)

        self._ns_memo: dict[Any, int] = {}
        self._compiled = tuple(self._compile(p) for p in self.policies)
        self.isolated = {
            d: self._or(c.selected for c in self._compiled if d in c.policy.policy_types)
            for d in Direction
        }

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]],
                     source: str = "<objects>") -> Cluster:
        """Build from API-shaped dicts (Namespace, Pod, NetworkPolicy; other kinds skipped)."""
        loaded = load_objects(objects, source)
        cluster = cls.from_loaded(loaded)
        cluster.notes[:0] = loaded.skipped
        return cluster

    @classmethod
    def from_loaded(cls, loaded: LoadedObjects) -> Cluster:
        return cls(loaded.namespaces, loaded.pods, loaded.policies)

    # --- lookups ---------------------------------------------------------------------

    def pod(self, key: str) -> Pod:
        return self.pods[self.pod_index(key)]

    def pod_index(self, key: str) -> int:
        try:
            return self._pod_pos[key]
        except KeyError:
            raise PolicyInputError(f"unknown pod {key}") from None

    def pod_keys(self, bits: int) -> list[str]:
        return [self.pods[i].key for i in bit_indices(bits)]

    def endpoint(self, text: str) -> Endpoint:
        """``NAMESPACE/POD``, ``ip:ADDRESS`` or a bare address.

        An address that is exactly one running (non-hostNetwork) pod's IP is that pod: policies
        apply to the pod whatever name the caller used for it. Any other address is external
        (``Engine.evaluate`` says why when pods claim it).
        """
        raw = text.strip()
        if raw.startswith("ip:") or "/" not in raw:
            ip = parse_ip(raw[3:] if raw.startswith("ip:") else raw)
            owners = self.ip_owners(ip)
            if len(owners) == 1:
                return PodEndpoint(owners[0], self.pods[owners[0]].key)
            return ExternalEndpoint(ip)
        return PodEndpoint(self.pod_index(raw), raw)

    def ip_owners(self, ip: IPAddress, host_network: bool = False) -> list[int]:
        """Running pods with this IP: pod-network ones, or with ``host_network`` the others."""
        return [i for i in self._pod_by_ip.get(ip, [])
                if self.pods[i].host_network is host_network]

    def on_node(self, pod: int) -> int:
        """The pods on the same node as ``pod`` (itself included; 0 if its node is unknown)."""
        return self._or(self._node_groups[k] for k in _node_keys(self.pods[pod]))

    def policies_selecting_each(self, direction: Direction) -> list[tuple[str, ...]]:
        """``policies_selecting`` for every pod at once: one pass over the policies' bitsets."""
        out: list[list[str]] = [[] for _ in self.pods]
        for c in self._compiled:
            if direction in c.policy.policy_types:
                for i in bit_indices(c.selected):
                    out[i].append(c.policy.key)
        return [tuple(keys) for keys in out]

    def policies_selecting(self, pod: int, direction: Direction) -> tuple[str, ...]:
        bit = 1 << pod
        return tuple(c.policy.key for c in self._compiled
                     if direction in c.policy.policy_types and c.selected & bit)

    # --- compilation -----------------------------------------------------------------

    @staticmethod
    def _or(sets: Iterable[int]) -> int:
        out = 0
        for s in sets:
            out |= s
        return out

    def _namespaces_matching(self, peer: Peer, policy_ns: str) -> int:
        """Pods in the namespaces a peer reaches: its namespaceSelector, else the policy's."""
        if peer.namespace_selector is None:
            pos = self._ns_pos.get(policy_ns)
            return self._pods_in_ns[pos] if pos is not None else 0
        key = peer.namespace_selector
        found = self._ns_memo.get(key)
        if found is None:
            ns_bits = self._ns_index.resolve(key)
            found = self._or(self._pods_in_ns[i] for i in bit_indices(ns_bits))
            self._ns_memo[key] = found
        return found

    def _ipblock_pods(self, block: IPBlock) -> int:
        rows = self._ip_rows[block.cidr.version]
        keys = self._ip_keys[block.cidr.version]
        lo = bisect.bisect_left(keys, int(block.cidr.network_address))
        hi = bisect.bisect_right(keys, int(block.cidr.broadcast_address))
        found = 0
        for ip_int, pod in rows[lo:hi]:
            ip = ipaddress.ip_address(ip_int) if block.excepts else None
            if ip is None or not any(ip in ex for ex in block.excepts):
                found |= 1 << pod
        return found

    def _peer_pods(self, peer: Peer, policy_ns: str) -> int:
        if peer.ip_block is not None:
            return self._ipblock_pods(peer.ip_block)
        pods = self._namespaces_matching(peer, policy_ns)
        if peer.pod_selector is not None and pods:
            pods &= self._pod_index.resolve(peer.pod_selector)
        return pods

    def _compile_rules(self, rules: tuple[Rule, ...], ns: str) -> tuple[_CompiledRule, ...]:
        out = []
        for n, rule in enumerate(rules):
            sets = tuple(self._peer_pods(p, ns) for p in rule.peers)
            via_block = 0
            by_selector = 0
            for peer, s in zip(rule.peers, sets, strict=True):
                if peer.ip_block is not None:
                    via_block |= s
                else:
                    by_selector |= s
            pods = self._or(sets) if rule.peers else self.universe
            out.append(_CompiledRule(n, rule, sets, pods, via_block & ~by_selector))
        return tuple(out)

    def _compile(self, policy: NetworkPolicy) -> _CompiledPolicy:
        pos = self._ns_pos[policy.namespace]
        selected = self._pods_in_ns[pos] & self._pod_index.resolve(policy.pod_selector)
        ingress = self._compile_rules(policy.rules(Direction.INGRESS), policy.namespace)
        egress = self._compile_rules(policy.rules(Direction.EGRESS), policy.namespace)
        covers = any(s for r in ingress + egress
                     for p, s in zip(r.rule.peers, r.peer_sets, strict=True) if p.ip_block)
        return _CompiledPolicy(policy, selected, ingress, egress, covers)

    # --- port scope ------------------------------------------------------------------

    def port_scope(self, ports: tuple[PortMatch, ...], port: int,
                   protocol: Protocol) -> tuple[bool, int]:
        """(matches any destination, pods whose named ports match) for one port/protocol."""
        if not ports:
            return True, 0
        named = 0
        for pm in ports:
            if pm.protocol is not protocol:
                continue
            if pm.port is None:
                return True, 0
            if isinstance(pm.port, int):
                if pm.port <= port <= (pm.end_port if pm.end_port is not None else pm.port):
                    return True, 0
            else:
                named |= self._named.get((pm.port, protocol, port), 0)
        return False, named


# --- the engine --------------------------------------------------------------------------

@dataclass
class Matrix:
    """Allowed connections between every pair of pods for one port and protocol.

    Stored per destination as bitsets of sources, the way the engine computes it. ``pods`` is
    the cluster's pod order; indices and ``ns/name`` keys are both accepted.
    """

    port: int
    protocol: Protocol
    pods: tuple[Pod, ...]
    allowed_from: list[int]   # per destination: sources allowed both ways
    ingress_from: list[int]   # per destination: sources its ingress side admits
    egress_from: list[int]    # per destination: sources whose egress side lets them reach it
    _pos: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._pos = {p.key: i for i, p in enumerate(self.pods)}

    def _i(self, pod: int | str) -> int:
        if isinstance(pod, int):
            return pod
        try:
            return self._pos[pod]
        except KeyError:
            raise PolicyInputError(f"unknown pod {pod}") from None

    def allowed(self, src: int | str, dst: int | str) -> bool:
        return bool(self.allowed_from[self._i(dst)] >> self._i(src) & 1)

    def ingress_allows(self, src: int | str, dst: int | str) -> bool:
        return bool(self.ingress_from[self._i(dst)] >> self._i(src) & 1)

    def egress_allows(self, src: int | str, dst: int | str) -> bool:
        return bool(self.egress_from[self._i(dst)] >> self._i(src) & 1)

    def sources(self, dst: int | str) -> list[str]:
        return [self.pods[i].key for i in bit_indices(self.allowed_from[self._i(dst)])]

    def count_allowed(self) -> int:
        return sum(bits.bit_count() for bits in self.allowed_from)

    def allowed_pairs(self) -> Iterator[tuple[str, str]]:
        for d, bits in enumerate(self.allowed_from):
            for s in bit_indices(bits):
                yield self.pods[s].key, self.pods[d].key

    def diff(self, after: Matrix) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(newly allowed, newly denied) pairs between pods present in both matrices."""
        gained: list[tuple[str, str]] = []
        lost: list[tuple[str, str]] = []
        same_pods = [p.key for p in self.pods] == [p.key for p in after.pods]
        if same_pods:
            # The usual plan case: same pods, same order; compare rows as bitsets.
            for d, (a, b) in enumerate(zip(self.allowed_from, after.allowed_from, strict=True)):
                if a != b:
                    dst = self.pods[d].key
                    gained.extend((self.pods[s].key, dst) for s in bit_indices(b & ~a))
                    lost.extend((self.pods[s].key, dst) for s in bit_indices(a & ~b))
            return gained, lost
        common = [k for k in self._pos if k in after._pos]
        for dst in common:
            for src in common:
                a_ok, b_ok = self.allowed(src, dst), after.allowed(src, dst)
                if a_ok != b_ok:
                    (gained if b_ok else lost).append((src, dst))
        return gained, lost


class Engine:
    """Answers connection questions about one :class:`Cluster`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # --- one flow --------------------------------------------------------------------

    def flow(self, src: str, dst: str, port: int | str,
             protocol: Protocol | str | None = None) -> Flow:
        """A flow from the command-line spellings (``ns/pod``, ``ip:1.2.3.4``, port number/name)."""
        proto = None
        if protocol is not None:
            try:
                proto = Protocol(str(protocol).upper())
            except ValueError:
                raise PolicyInputError(f"protocol {protocol!r} is not TCP, UDP or SCTP") from None
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, int) and not 0 < port < 65536:
            raise PolicyInputError(f"port {port} is out of range")
        return Flow(self.cluster.endpoint(src), self.cluster.endpoint(dst), port, proto)

    def _resolve_port(self, flow: Flow) -> tuple[int, Protocol]:
        if isinstance(flow.port, int):
            return flow.port, flow.protocol or Protocol.TCP
        if not isinstance(flow.dst, PodEndpoint):
            raise PolicyInputError(f"port name {flow.port!r} needs a pod destination, "
                                   f"not {flow.dst}")
        pod = self.cluster.pods[flow.dst.index]
        cp = pod.named_port(flow.port, flow.protocol)
        if cp is None:
            proto = f" ({flow.protocol})" if flow.protocol else ""
            raise PolicyInputError(f"pod {pod.key} declares no port named {flow.port!r}{proto}")
        return cp.number, cp.protocol

    def _peer_hit(self, peer: Peer, peer_set: int, other: Endpoint) -> tuple[bool, bool]:
        """(matches, matched through an ipBlock covering a pod IP)."""
        if isinstance(other, PodEndpoint):
            hit = bool(peer_set >> other.index & 1)
            return hit, hit and peer.ip_block is not None
        return (peer.ip_block is not None and peer.ip_block.contains(other.ip)), False

    def _side(self, direction: Direction, me: Endpoint, other: Endpoint, port: int,
              protocol: Protocol, notes: list[str]) -> SideVerdict:
        c = self.cluster
        if not isinstance(me, PodEndpoint):
            return SideVerdict(direction, True, False, (), (),
                               "an external IP is never isolated")
        bit = 1 << me.index
        isolating = [cp for cp in c._compiled
                     if direction in cp.policy.policy_types and cp.selected & bit]
        if not isolating:
            return SideVerdict(direction, True, False, (), (),
                               f"no policy selects {me} for {direction.value.lower()}")
        # Named ports are looked up on the destination pod, for ingress and egress alike.
        dst_bit = bit if direction is Direction.INGRESS else (
            1 << other.index if isinstance(other, PodEndpoint) else 0)
        matches: list[RuleMatch] = []
        block_pod = False
        for cp in isolating:
            rules = cp.ingress if direction is Direction.INGRESS else cp.egress
            for r in rules:
                any_dst, named = c.port_scope(r.rule.ports, port, protocol)
                if not (any_dst or named & dst_bit):
                    continue
                if not r.rule.peers:
                    matches.append(RuleMatch(cp.policy.key, direction, r.index, None,
                                             r.rule.describe(direction)))
                    continue
                for n, (peer, s) in enumerate(zip(r.rule.peers, r.peer_sets, strict=True)):
                    hit, via_block = self._peer_hit(peer, s, other)
                    if hit:
                        block_pod = block_pod or via_block
                        matches.append(RuleMatch(cp.policy.key, direction, r.index, n,
                                                 r.rule.describe(direction)))
                        break
        keys = tuple(cp.policy.key for cp in isolating)
        if block_pod:
            notes.append(NOTE_IPBLOCK_POD)
        if matches:
            return SideVerdict(direction, True, True, keys, tuple(matches), "allowed by a rule")
        if isinstance(other, PodEndpoint) and other.index == me.index:
            return SideVerdict(direction, True, True, keys, (), REASON_SELF)
        word = "from" if direction is Direction.INGRESS else "to"
        if self._own_node(me, other):
            notes.append(NOTE_NODE_LOCAL if direction is Direction.INGRESS
                         else NOTE_NODE_LOCAL_EGRESS)
            return SideVerdict(direction, True, True, keys, (),
                               f"{word} the pod's own node (always allowed by the spec)")
        return SideVerdict(direction, False, True, keys, (),
                           f"no {direction.value.lower()} rule of these policies admits "
                           f"{word} {other} on {protocol}/{port}")

    def _own_node(self, me: PodEndpoint, other: Endpoint) -> bool:
        """Is ``other`` the node ``me`` runs on: its hostIP, or a hostNetwork pod on it?"""
        pod = self.cluster.pods[me.index]
        if isinstance(other, ExternalEndpoint):
            return pod.host_ip is not None and str(other.ip) == pod.host_ip
        peer = self.cluster.pods[other.index]
        return peer.host_network and same_node(peer, pod)

    def evaluate(self, flow: Flow) -> Verdict:
        port, protocol = self._resolve_port(flow)
        notes: list[str] = []
        egress = self._side(Direction.EGRESS, flow.src, flow.dst, port, protocol, notes)
        ingress = self._side(Direction.INGRESS, flow.dst, flow.src, port, protocol, notes)
        c = self.cluster
        pods = [e.index for e in (flow.src, flow.dst) if isinstance(e, PodEndpoint)]
        if any(c.pods[i].host_network for i in pods):
            notes.append(NOTE_HOST_NETWORK)
        if isinstance(flow.src, PodEndpoint) and isinstance(flow.dst, PodEndpoint) \
                and flow.src.index == flow.dst.index:
            notes.append(NOTE_SELF)
        warnings: list[str] = []
        for end in (flow.src, flow.dst):
            if isinstance(end, PodEndpoint):
                pod = c.pods[end.index]
                if pod.finished:
                    warnings.append(f"pod {pod.key} has finished (phase {pod.phase}): it has no "
                                    "traffic; evaluated as if it were running")
                continue
            hosts = c.ip_owners(end.ip, host_network=True)
            if hosts:
                notes.append(NOTE_HOST_NETWORK_IP.format(
                    ip=end, pods=", ".join(c.pods[i].key for i in hosts)))
            owners = c.ip_owners(end.ip)
            if len(owners) > 1:
                warnings.append(f"{end} is the IP of several running pods "
                                f"({', '.join(c.pods[i].key for i in owners)}): evaluated as "
                                "an external IP")
        return Verdict(str(flow.src), str(flow.dst), port, protocol, egress, ingress,
                       tuple(dict.fromkeys(notes)), tuple(dict.fromkeys(warnings)))

    def check(self, src: str, dst: str, port: int | str,
              protocol: Protocol | str | None = None) -> Verdict:
        """``evaluate`` from the command-line spellings."""
        return self.evaluate(self.flow(src, dst, port, protocol))

    # --- the whole matrix ------------------------------------------------------------

    def matrix(self, port: int, protocol: Protocol | str = Protocol.TCP) -> Matrix:
        """Every pod to every pod on ``protocol``/``port``; named ports resolved per destination."""
        proto = Protocol(protocol)
        c = self.cluster
        n = len(c.pods)
        every = c.universe

        # Ingress: destinations protected by a rule receive the rule's sources.
        iso_in = c.isolated[Direction.INGRESS]
        ingress = [0 if iso_in >> d & 1 else every for d in range(n)]
        grants: dict[int, int] = {}
        for cp in c._compiled:
            if not cp.selected:
                continue
            for r in cp.ingress:
                any_dst, named = c.port_scope(r.rule.ports, port, proto)
                targets = cp.selected if any_dst else cp.selected & named
                if targets and r.pods:
                    grants[targets] = grants.get(targets, 0) | r.pods
        self._spread(grants, ingress)

        # Egress, transposed: each reachable destination receives the selected sources.
        iso_out = c.isolated[Direction.EGRESS]
        egress = [every & ~iso_out] * n
        grants = {}
        for cp in c._compiled:
            if not cp.selected:
                continue
            for r in cp.egress:
                any_dst, named = c.port_scope(r.rule.ports, port, proto)
                targets = r.pods if any_dst else r.pods & named
                if targets:
                    grants[targets] = grants.get(targets, 0) | cp.selected
        self._spread(grants, egress)

        # "A pod cannot block access to itself": no rule is involved, so neither side can say no.
        ingress = [row | 1 << d for d, row in enumerate(ingress)]
        egress = [row | 1 << d for d, row in enumerate(egress)]
        # Traffic to and from a pod's own node is always allowed; inside the pod matrix the node
        # is its hostNetwork pods: they pass any pod's ingress on their node, and any pod on
        # their node passes its egress to them.
        for h in bit_indices(c._host_network):
            ingress_of_h = c.on_node(h)
            for d in bit_indices(ingress_of_h):
                ingress[d] |= 1 << h
            egress[h] |= ingress_of_h
        allowed = [a & b for a, b in zip(ingress, egress, strict=True)]
        return Matrix(port, proto, c.pods, allowed, ingress, egress)

    @staticmethod
    def _spread(grants: dict[int, int], rows: list[int]) -> None:
        every = (1 << len(rows)) - 1
        for targets, sources in grants.items():
            if targets == every:
                rows[:] = [row | sources for row in rows]
                continue
            for i in bit_indices(targets):
                rows[i] |= sources
