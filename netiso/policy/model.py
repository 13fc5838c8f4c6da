"""The NetworkPolicy data model: plain, immutable values after API defaulting.

Objects are already defaulted the way the API server would store them (policyTypes filled in,
protocols set to TCP, namespaces labelled with ``kubernetes.io/metadata.name``) so the engine
never has to remember a default. Everything is frozen and hashable: selectors are memoised by
value when they are resolved into bitsets, and a model can be shared between engines (plan
compares a "before" and an "after" cluster built from mostly the same objects).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from netiso.errors import UsageError
from netiso.policy.selectors import LabelSelector

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PolicyInputError(UsageError):
    """Bad input for the evaluator: a file, object or flow it cannot use (exit 2)."""


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


def default_policy_types(has_egress_rules: bool) -> tuple[Direction, ...]:
    """policyTypes as the API server defaults an absent or empty list
    (``SetDefaults_NetworkPolicy``): Ingress always, Egress only when egress rules exist."""
    return (Direction.INGRESS, Direction.EGRESS) if has_egress_rules else (Direction.INGRESS,)


# IANA_SVC_NAME (RFC 6335), what the API server checks a named port against: 1-15 characters
# of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-'. Used with
# fullmatch: `$` would also match before a trailing newline.
_PORT_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*")


def is_port_name(value: object) -> bool:
    """True for a valid named port (a container port's name, or a policy's port by name)."""
    return isinstance(value, str) and len(value) <= 15 and _PORT_NAME.fullmatch(value) is not None


@dataclass(frozen=True)
class ContainerPort:
    number: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    ips: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    host_ip: str | None = None
    node_name: str | None = None
    phase: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        """Terminated for good (phase Succeeded or Failed): no traffic, and its IP may be reused."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, name: str, protocol: Protocol | None = None) -> ContainerPort | None:
        """The container port called ``name`` (with ``protocol`` when given)."""
        for port in self.ports:
            if port.name == name and (protocol is None or port.protocol is protocol):
                return port
        return None


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.cidr.version or ip not in self.cidr:
            return False
        return not any(ip in ex for ex in self.excepts)

    def describe(self) -> str:
        text = f"ipBlock {self.cidr}"
        if self.excepts:
            text += " except " + ",".join(str(e) for e in self.excepts)
        return text


@dataclass(frozen=True)
class Peer:
    """One element of ``from``/``to``: selectors ANDed inside, peers ORed with each other."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def describe(self) -> str:
        if self.ip_block is not None:
            return self.ip_block.describe()
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaceSelector {self.namespace_selector.describe()}")
        else:
            parts.append("the policy's namespace")
        if self.pod_selector is not None:
            parts.append(f"podSelector {self.pod_selector.describe()}")
        return " AND ".join(parts)


@dataclass(frozen=True)
class PortMatch:
    """One element of ``ports``: ``port`` None means every port of ``protocol``."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None

    def describe(self) -> str:
        if self.port is None:
            return f"{self.protocol}/any"
        if self.end_port is not None:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule; empty ``peers`` = everyone, empty ``ports`` = every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortMatch, ...] = ()

    def describe(self, direction: Direction) -> str:
        word = "from" if direction is Direction.INGRESS else "to"
        who = "everyone" if not self.peers else " OR ".join(p.describe() for p in self.peers)
        ports = "any port" if not self.ports else ", ".join(p.describe() for p in self.ports)
        return f"{word} {who}; ports {ports}"


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector = field(default_factory=LabelSelector)
    policy_types: frozenset[Direction] = frozenset({Direction.INGRESS})
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        """The rules that count: rules of a direction not in policyTypes are ignored."""
        if direction not in self.policy_types:
            return ()
        return self.ingress if direction is Direction.INGRESS else self.egress


def parse_ip(text: str) -> IPAddress:
    """An IP address, or PolicyInputError."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise PolicyInputError(f"'{text}' is not an IP address") from exc
