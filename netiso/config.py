"""What netiso should do, as validated values: the values file plus command-line flags.

Design decisions:

* **One validation pass, exact errors.** Every bad input raises :class:`UsageError` with one
  line naming where it is (``values.yaml: appPorts[0].ports[1]`` or ``--namespace``), the bad
  value, and what is allowed. Nothing downstream re-validates: a :class:`Values` is known good.
* **Frozen tree.** ``Values`` and its parts are frozen dataclasses of tuples, so a values object
  can be shared by the renderer, the planner and the verifier without anyone mutating it.
* **Provider defaults follow the provider name.** The metadata endpoints to deny and the
  provider's own system namespaces differ per cloud (EKS answers on ``fd00:ec2::254`` too; GKE
  runs ``gke-*``/``gmp-*`` namespaces); they come from the provider's profile
  (``netiso.profiles``), not from constants here. A values file replaces ``metadata.deny``
  wholesale and *extends* the namespace exclusions, so a team can add exclusions without
  restating the system list.
* **Flags beat the file for targeting.** ``--namespace``/``--selector`` replace the file's
  ``namespaces.include``/``namespaces.selector`` together, so a file written for "all but system
  namespaces" can be narrowed for one run without editing it.
* **Pure.** The only I/O is reading the values file. No Kubernetes client: choosing namespaces
  takes the cluster's namespaces as a plain mapping (:func:`select_namespaces`).
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from netiso.errors import UsageError
from netiso.policy import is_port_name, selectors
from netiso.policy.selectors import Operator, Requirement
from netiso.profiles import (
    EKS_POD_IDENTITY,
    NODE_LOCAL_DNS,
    PROVIDERS,
    SYSTEM_NAMESPACES,
    Profile,
    Provider,
    profile,
)

# --- vocabulary ------------------------------------------------------------------------------


#: The label a namespace owner sets to opt out of the bundle (checked by :func:`select_namespaces`).
EXCLUDE_LABEL = "netiso.io/exclude"

#: Set by the API server on every namespace since 1.21 - nobody has to label namespaces by hand.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class PolicyKey(StrEnum):
    """The bundle's policies; the value is the ``netiso.io/policy`` label and the name suffix."""

    DEFAULT_DENY_INGRESS = "default-deny-ingress"
    ALLOW_SAME_NAMESPACE = "allow-same-namespace"
    ALLOW_APP_PORTS = "allow-app-ports"
    ALLOW_FROM_NAMESPACES = "allow-from-namespaces"
    DENY_METADATA_EGRESS = "deny-metadata-egress"
    DEFAULT_DENY_EGRESS = "default-deny-egress"


# values-file key under `policies:` -> PolicyKey, and the default (egress deny is opt-in: it
# breaks every workload that talks to anything outside the cluster).
_POLICY_SWITCHES: Mapping[str, tuple[PolicyKey, bool]] = {
    "defaultDenyIngress": (PolicyKey.DEFAULT_DENY_INGRESS, True),
    "allowSameNamespace": (PolicyKey.ALLOW_SAME_NAMESPACE, True),
    "allowAppPorts": (PolicyKey.ALLOW_APP_PORTS, True),
    "allowFromNamespaces": (PolicyKey.ALLOW_FROM_NAMESPACES, True),
    "denyMetadataEgress": (PolicyKey.DENY_METADATA_EGRESS, True),
    "defaultDenyEgress": (PolicyKey.DEFAULT_DENY_EGRESS, False),
}

# --- the values tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSelector(selectors.LabelSelector):
    """A label selector as the user wrote it (kubectl syntax, ``text``); what it matches is the
    evaluator's ``policy.selectors.LabelSelector``, the one implementation netiso has."""

    text: str = ""


class SkipReason(StrEnum):
    """Why a namespace is not a target (the detail says which rule, for people)."""

    OPTED_OUT = "opted-out"  # labelled netiso.io/exclude=true by its owner
    EXCLUDED = "excluded"  # a system namespace, the provider's, or namespaces.exclude
    NOT_SELECTED = "not-selected"  # does not match the label selector
    TERMINATING = "terminating"  # being deleted (decided against the live cluster)


@dataclass(frozen=True)
class Skipped:
    """A namespace left out of the targets: the reason as a value, and the detail as text."""

    namespace: str
    reason: SkipReason
    detail: str

    def to_json(self) -> dict[str, str]:
        # The JSON contract predates the enum: ``reason`` is the text people read.
        return {"namespace": self.namespace, "reason": self.detail}


@dataclass(frozen=True)
class Exclusion:
    """A namespace glob netiso leaves alone, and why (shown when a namespace is skipped);
    ``sentence`` completes "'x' is ..." when one is named explicitly."""

    pattern: str
    reason: str
    sentence: str = ""

    def matches(self, namespace: str) -> bool:
        return fnmatch.fnmatchcase(namespace, self.pattern)


@dataclass(frozen=True)
class NamespaceTargets:
    include: tuple[str, ...] = ()
    selector: LabelSelector | None = None
    exclude: tuple[Exclusion, ...] = ()
    force: bool = False

    def exclusion_for(self, namespace: str) -> Exclusion | None:
        return next((e for e in self.exclude if e.matches(namespace)), None)


@dataclass(frozen=True)
class PortSpec:
    port: int | str  # a number, or a named container port
    protocol: str = "TCP"


@dataclass(frozen=True)
class AppPorts:
    """Open ``ports`` from anywhere to pods whose labels match ``pod_labels``."""

    name: str
    pod_labels: tuple[tuple[str, str], ...]
    ports: tuple[PortSpec, ...]


@dataclass(frozen=True)
class DnsAllowance:
    namespace: str = "kube-system"
    pod_labels: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    node_local: tuple[str, ...] = (NODE_LOCAL_DNS,)


@dataclass(frozen=True)
class Values:
    provider: Provider = Provider.GENERIC
    namespaces: NamespaceTargets = field(default_factory=NamespaceTargets)
    policies: frozenset[PolicyKey] = field(
        default_factory=lambda: frozenset(k for k, on in _POLICY_SWITCHES.values() if on)
    )
    app_ports: tuple[AppPorts, ...] = ()
    allow_from_namespaces: tuple[str, ...] = ()
    metadata_deny: tuple[str, ...] = ()
    #: ``metadata.workloadIdentity``: allow the provider's Workload Identity endpoint (GKE).
    workload_identity: bool = False
    dns: DnsAllowance = field(default_factory=DnsAllowance)
    ipv6: bool = True

    def enabled(self, policy: PolicyKey) -> bool:
        return policy in self.policies

    @property
    def profile(self) -> Profile:
        """The provider's facts the bundle is rendered with (``netiso.profiles``)."""
        return profile(self.provider)


# --- loading ---------------------------------------------------------------------------------

# Always used with fullmatch: `$` also matches before a trailing newline, so `match` with `$`
# would accept "prod\n" and render an object the API server refuses.
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PROTOCOLS = ("TCP", "UDP", "SCTP")

_NAMESPACE_ALLOWED = "lowercase letters, digits and '-', starting and ending alphanumeric, <= 63"
_CIDR_ALLOWED = "an IPv4 or IPv6 address or CIDR such as 169.254.169.254/32 or fd00:ec2::254/128"
_PORT_ALLOWED = (
    "1-65535, or a named port (1-15 chars of a-z, 0-9 and '-', at least one letter, "
    "no leading, trailing or double '-')"
)
_APP_NAME_ALLOWED = "lowercase letters, digits and '-', <= 46 chars (set name: explicitly)"

_TOP_KEYS = (
    "namespaces",
    "policies",
    "appPorts",
    "allowFromNamespaces",
    "metadata",
    "dns",
    "ipv6",
)


class _At:
    """Where a value came from, for error messages: ``values.yaml: appPorts[0].ports``."""

    def __init__(self, source: str, path: str = "") -> None:
        self.source = source
        self.path = path

    def __truediv__(self, part: str | int) -> _At:
        if isinstance(part, int) and not self.path and self.source.startswith("--"):
            return self  # a repeated flag: "--namespace: ..." says enough, no index
        if isinstance(part, int):
            return _At(self.source, f"{self.path}[{part}]")
        return _At(self.source, f"{self.path}.{part}" if self.path else part)

    def fail(self, problem: str, allowed: str | None = None) -> UsageError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        text = f"{where}: {problem}"
        if allowed:
            text += f"; allowed: {allowed}"
        return UsageError(text)


def _plain_key(key: Any) -> bool:
    """Whether a mapping key reads unambiguously as part of an error path."""
    return isinstance(key, str) and bool(re.fullmatch(r"\S+", key))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _mapping(value: Any, at: _At, keys: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise at.fail(f"expected a mapping, got {_show(value)}", f"keys {', '.join(keys)}")
    for key in value:
        if not isinstance(key, str) or key not in keys:
            if not _plain_key(key):
                # An empty or blank key would vanish from the path ("namespaces.: ..."): name it.
                raise at.fail(f"unknown key {_show(key)}", ", ".join(keys))
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise (at / str(key)).fail(f"unknown key{hint}", ", ".join(keys))
    return value


def _list(value: Any, at: _At) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise at.fail(f"expected a list, got {_show(value)}")
    return value


def _bool(value: Any, at: _At) -> bool:
    if not isinstance(value, bool):
        raise at.fail(f"{_show(value)} is not a boolean", "true or false")
    return value


def is_namespace_name(value: str) -> bool:
    """An RFC 1123 label, as the API server requires of namespace names."""
    return len(value) <= 63 and _NAMESPACE_RE.fullmatch(value) is not None


def _namespace_name(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not is_namespace_name(value):
        raise at.fail(f"{_show(value)} is not a valid namespace name", _NAMESPACE_ALLOWED)
    return value


def _namespace_list(items: Sequence[Any], at: _At) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for i, item in enumerate(items):
        name = _namespace_name(item, at / i)
        if name in seen:
            raise (at / i).fail(f"duplicate namespace {name!r}", "each namespace once")
        seen.add(name)
        out.append(name)
    return tuple(out)


def _label_key(key: Any, at: _At) -> str:
    allowed = "[prefix/]name: name <= 63 chars of [A-Za-z0-9-_.], prefix a DNS subdomain"
    if key == "":
        raise at.fail("empty label key", allowed)
    if not isinstance(key, str):
        raise at.fail(f"{_show(key)} is not a valid label key", allowed)
    prefix, _, name = key.rpartition("/")
    ok = len(name) <= 63 and bool(_LABEL_NAME_RE.fullmatch(name))
    if prefix or key.startswith("/"):
        ok = ok and len(prefix) <= 253 and bool(_DNS_SUBDOMAIN_RE.fullmatch(prefix))
    if not ok:
        raise at.fail(f"{key!r} is not a valid label key", allowed)
    return key


def _label_value(value: Any, at: _At) -> str:
    allowed = "<= 63 chars of [A-Za-z0-9-_.], starting and ending alphanumeric (or empty)"
    if isinstance(value, bool | int):
        # YAML reads `enabled: true` / `tier: 1` as bool/int; labels are strings, say so.
        raise at.fail(f"{_show(value)} is not a string (quote it)", allowed)
    if (
        not isinstance(value, str)
        or len(value) > 63
        or (value and not _LABEL_NAME_RE.fullmatch(value))
    ):
        raise at.fail(f"{_show(value)} is not a valid label value", allowed)
    return value


def _labels(value: Any, at: _At) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not value:
        raise at.fail(
            f"expected a non-empty mapping of labels, got {_show(value)}",
            "e.g. {app: web-server}",
        )
    # The key is checked at the selector's path: a bad key (empty, blank, with a newline) would
    # garble the path if it were part of it; the message quotes it instead.
    return tuple(sorted((_label_key(k, at), _label_value(v, at / k)) for k, v in value.items()))


# kubectl's selector grammar, the subset that matters: k=v, k==v, k!=v, k, !k, k in (..),
# k notin (..), comma-separated. Commas inside parentheses belong to the set.
# Whitespace (newlines included) separates tokens, as in kubectl's lexer.
_SET_RE = re.compile(r"\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)\s*")
_EQ_RE = re.compile(r"\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^\s!=(),]*)\s*")
_EXISTS_RE = re.compile(r"\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*")


def parse_selector(text: Any, at: _At) -> LabelSelector:
    """Parse a kubectl-style label selector; an empty one is an error (it would select all)."""
    allowed = "kubectl selector syntax such as 'team=payments,env in (prod,staging),!legacy'"
    if not isinstance(text, str) or not text.strip():
        raise at.fail(f"empty label selector {_show(text)}", allowed)
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise at.fail(f"unbalanced ')' in selector {text!r}", allowed)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise at.fail(f"unbalanced '(' in selector {text!r}", allowed)
    parts.append(current)
    reqs: list[Requirement] = []
    for part in parts:
        if not part.strip():
            raise at.fail(f"empty requirement in selector {text!r}", allowed)
        if m := _SET_RE.fullmatch(part):
            values = tuple(v.strip() for v in m["vals"].split(","))
            if not any(values):
                raise at.fail(f"empty value set in selector {text!r}", allowed)
            for v in values:
                _label_value(v, at)
            op = Operator.IN if m["op"] == "in" else Operator.NOT_IN
            reqs.append(Requirement(_label_key(m["key"], at), op, frozenset(values)))
        elif m := _EQ_RE.fullmatch(part):
            op = Operator.NOT_IN if m["op"] == "!=" else Operator.IN
            reqs.append(Requirement(_label_key(m["key"], at), op,
                                    frozenset({_label_value(m["val"], at)})))
        elif m := _EXISTS_RE.fullmatch(part):
            op = Operator.DOES_NOT_EXIST if m["neg"] else Operator.EXISTS
            reqs.append(Requirement(_label_key(m["key"], at), op))
        else:
            raise at.fail(f"cannot parse {part.strip()!r} in selector {text!r}", allowed)
    return LabelSelector(requirements=tuple(reqs), text=text.strip())


def _cidr(value: Any, at: _At) -> str:
    if not isinstance(value, str):
        raise at.fail(f"{_show(value)} is not a CIDR", _CIDR_ALLOWED)
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        detail = " (host bits set)" if "host bits" in str(exc) else ""
        raise at.fail(f"{value!r} is not a valid CIDR{detail}", _CIDR_ALLOWED) from exc
    _no_scope(net.network_address, value, at, _CIDR_ALLOWED)
    if net.prefixlen == 0:
        raise at.fail(f"{value!r} would deny all egress", "a metadata endpoint, e.g. /32 or /128")
    for keep in EKS_POD_IDENTITY:
        if net.overlaps(ipaddress.ip_network(keep)):
            raise at.fail(
                f"{value!r} covers the EKS Pod Identity agent {keep} (pods get credentials there)",
                "ranges that leave 169.254.170.23 and fd00:ec2::23 reachable",
            )
    return str(net)


def _no_scope(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, value: str, at: _At, allowed: str
) -> None:
    # Python accepts "fe80::1%eth0"; the scope is local to one host's interfaces and the rendered
    # "fe80::1%eth0/128" is not a CIDR the API server takes.
    scope = getattr(address, "scope_id", None)
    if scope:
        raise at.fail(
            f"{value!r} has a scope (%{scope}), which a NetworkPolicy ipBlock cannot express",
            allowed,
        )


def _ip(value: Any, at: _At) -> str:
    allowed = "an IP address without a scope, e.g. 169.254.20.10"
    if not isinstance(value, str):
        raise at.fail(f"{_show(value)} is not an IP address", allowed)
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError as exc:
        raise at.fail(f"{value!r} is not a valid IP address", allowed) from exc
    _no_scope(address, value, at, allowed)
    return str(address)


def _port(value: Any, at: _At) -> PortSpec:
    allowed_port = _PORT_ALLOWED
    protocol = "TCP"
    if isinstance(value, dict):
        value = dict(_mapping(value, at, ("port", "protocol")))
        if "port" not in value:
            raise at.fail("missing key 'port'", allowed_port)
        proto = value.get("protocol", "TCP")
        if not isinstance(proto, str) or proto.upper() not in _PROTOCOLS:
            raise (at / "protocol").fail(f"{_show(proto)} is not a protocol", ", ".join(_PROTOCOLS))
        protocol = proto.upper()
        at, value = at / "port", value["port"]
    if isinstance(value, bool):
        raise at.fail(f"{_show(value)} is not a port", allowed_port)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise at.fail(f"{value} is out of range", allowed_port)
        return PortSpec(value, protocol)
    if is_port_name(value):
        return PortSpec(str(value), protocol)
    raise at.fail(f"{_show(value)} is not a valid port", allowed_port)


def _app_ports(items: list[Any], at: _At) -> tuple[AppPorts, ...]:
    out: list[AppPorts] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        a = at / i
        entry = _mapping(item, a, ("name", "podSelector", "ports"))
        if "podSelector" not in entry:
            raise a.fail("missing key 'podSelector'", "e.g. podSelector: {app: web-server}")
        labels = _labels(entry["podSelector"], a / "podSelector")
        ports_raw = _list(entry.get("ports"), a / "ports")
        if not ports_raw:
            raise (a / "ports").fail("no ports given", "a list such as [8000]")
        ports = tuple(_port(p, a / "ports" / j) for j, p in enumerate(ports_raw))
        if len(set(ports)) != len(ports):
            raise (a / "ports").fail("duplicate port", "each port/protocol once")
        raw_name = entry.get("name")
        if raw_name is None:  # `name:` left empty means the default, like every other key
            raw_name = "-".join(v for _, v in labels if v) or "app"
        if not isinstance(raw_name, str):
            # str() would turn `name: true` into "true" and `name: null` once into "none".
            raise (a / "name").fail(
                f"{_show(raw_name)} is not a string (quote it)", _APP_NAME_ALLOWED
            )
        name = raw_name.lower()
        # The policy is named netiso-allow-app-<name>: keep the whole name a DNS label (<= 63).
        if not _NAMESPACE_RE.fullmatch(name) or len(name) > 46:
            raise (a / "name").fail(f"{_show(raw_name)} cannot name a policy", _APP_NAME_ALLOWED)
        if name in names:
            raise (a / "name").fail(f"duplicate app name {name!r}", "distinct names")
        names.add(name)
        out.append(AppPorts(name=name, pod_labels=labels, ports=ports))
    return tuple(out)


#: The classic example: pods labelled app=web-server take traffic on port 8000 from anywhere.
DEFAULT_APP_PORTS = (
    AppPorts(name="web-server", pod_labels=(("app", "web-server"),), ports=(PortSpec(8000),)),
)


def _read_yaml(path: Path) -> Any:
    import yaml  # only when a values file is given: keeps `netiso --help` fast

    class _Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if key in seen:
                mark = key_node.start_mark
                raise UsageError(
                    f"{path}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r}; "
                    "allowed: each key once"
                )
            seen.add(key)
        return loader.construct_mapping(node)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"--values: {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"--values: {path}: is a directory, expected a YAML file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--values: {path}: cannot read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UsageError(f"{where}: invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from exc
    except RecursionError as exc:
        # PyYAML's composer recurses once per nesting level: `[[[[...` thousands deep exhausts
        # the interpreter's stack long before any values file legitimately would.
        raise UsageError(
            f"{path}: invalid YAML: nesting too deep; "
            "allowed: a values file nested a few levels deep"
        ) from exc


def _exclusions(provider: Provider, extra: tuple[str, ...]) -> tuple[Exclusion, ...]:
    out = [Exclusion(ns, "system namespace", "a system namespace") for ns in SYSTEM_NAMESPACES]
    article = "an" if provider in (Provider.EKS, Provider.AKS) else "a"  # "an EKS", "a GKE"
    out += [
        Exclusion(p, f"{provider.value} system namespace ({p})",
                  f"{article} {provider.value} system namespace ({p})")
        for p in profile(provider).system_namespaces
    ]
    out += [Exclusion(p, f"excluded by pattern {p!r} (namespaces.exclude)",
                      f"an excluded namespace (pattern {p!r}, namespaces.exclude)")
            for p in extra]
    return tuple(out)


def _check_explicit(targets: NamespaceTargets, at: _At) -> None:
    if targets.force:
        return
    for i, name in enumerate(targets.include):
        excl = targets.exclusion_for(name)
        if excl is not None:
            raise (at / i if at.path else at).fail(
                f"{name!r} is {excl.sentence or 'excluded: ' + excl.reason}; "
                "netiso does not isolate it by default",
                "pass --force to target it anyway",
            )


def load_values(
    path: Path | None,
    *,
    provider: str = "generic",
    namespaces: Sequence[str] = (),
    selector: str | None = None,
    force: bool = False,
) -> Values:
    """Read and validate the values file (if any), apply the flags, return the values.

    Raises :class:`UsageError` with one exact line on any bad input.
    """
    try:
        prov = Provider(provider.lower() if isinstance(provider, str) else provider)
    except ValueError as exc:
        raise _At("--provider").fail(
            f"unknown provider {_show(provider)}", ", ".join(PROVIDERS)
        ) from exc
    defaults = profile(prov)

    raw: Any = _read_yaml(path) if path is not None else None
    src = _At(str(path) if path is not None else "values")
    doc = _mapping(raw, src, _TOP_KEYS)

    # namespaces
    ns_at = src / "namespaces"
    ns_doc = _mapping(doc.get("namespaces"), ns_at, ("include", "selector", "exclude"))
    include = _namespace_list(_list(ns_doc.get("include"), ns_at / "include"), ns_at / "include")
    sel: LabelSelector | None = None
    if "selector" in ns_doc:
        sel = parse_selector(ns_doc["selector"], ns_at / "selector")
    if include and sel is not None:
        raise ns_at.fail("both include and selector are set", "one of them")
    extra_excl: list[str] = []
    for i, pat in enumerate(_list(ns_doc.get("exclude"), ns_at / "exclude")):
        if not isinstance(pat, str) or not re.fullmatch(r"[a-z0-9*?\[\]-]+", pat):
            raise (ns_at / "exclude" / i).fail(
                f"{_show(pat)} is not a namespace pattern", "a namespace name or glob like 'team-*'"
            )
        extra_excl.append(pat)

    targets_at = ns_at / "include"
    flag_ns = list(namespaces)
    if flag_ns or selector is not None:
        if flag_ns and selector is not None:
            raise _At("--namespace").fail("cannot be combined with --selector", "one of them")
        include = _namespace_list(flag_ns, _At("--namespace")) if flag_ns else ()
        sel = parse_selector(selector, _At("--selector")) if selector is not None else None
        targets_at = _At("--namespace")
    targets = NamespaceTargets(
        include=include, selector=sel, exclude=_exclusions(prov, tuple(extra_excl)), force=force
    )
    _check_explicit(targets, targets_at)

    # policies
    pol_at = src / "policies"
    pol_doc = _mapping(doc.get("policies"), pol_at, tuple(_POLICY_SWITCHES))
    enabled = {
        key
        for name, (key, default) in _POLICY_SWITCHES.items()
        if _bool(pol_doc.get(name, default), pol_at / name)
    }

    # app ports
    if "appPorts" in doc:
        app_ports = _app_ports(_list(doc["appPorts"], src / "appPorts"), src / "appPorts")
    else:
        app_ports = DEFAULT_APP_PORTS

    allow_from = _namespace_list(
        _list(doc.get("allowFromNamespaces"), src / "allowFromNamespaces"),
        src / "allowFromNamespaces",
    )

    # metadata
    md_at = src / "metadata"
    md_doc = _mapping(doc.get("metadata"), md_at, ("deny", "workloadIdentity"))
    workload_identity = _bool(md_doc.get("workloadIdentity", False), md_at / "workloadIdentity")
    if "deny" in md_doc:
        deny_raw = _list(md_doc["deny"], md_at / "deny")
        metadata = tuple(_cidr(c, md_at / "deny" / i) for i, c in enumerate(deny_raw))
        if len(set(metadata)) != len(metadata):
            raise (md_at / "deny").fail("duplicate CIDR", "each CIDR once")
    else:
        metadata = defaults.metadata_deny
    if PolicyKey.DENY_METADATA_EGRESS in enabled and not metadata:
        raise (md_at / "deny").fail(
            "empty while policies.denyMetadataEgress is on",
            "at least one CIDR, or policies.denyMetadataEgress: false",
        )

    # dns
    dns_at = src / "dns"
    dns_doc = _mapping(doc.get("dns"), dns_at, ("namespace", "podSelector", "nodeLocal"))
    dns = DnsAllowance()
    if "namespace" in dns_doc:
        dns = DnsAllowance(
            namespace=_namespace_name(dns_doc["namespace"], dns_at / "namespace"),
            pod_labels=dns.pod_labels,
            node_local=dns.node_local,
        )
    if "podSelector" in dns_doc:
        labels = _labels(dns_doc["podSelector"], dns_at / "podSelector")
        dns = DnsAllowance(dns.namespace, labels, dns.node_local)
    if "nodeLocal" in dns_doc:
        nl_at = dns_at / "nodeLocal"
        node_local = tuple(
            _ip(a, nl_at / i) for i, a in enumerate(_list(dns_doc["nodeLocal"], nl_at))
        )
        dns = DnsAllowance(dns.namespace, dns.pod_labels, node_local)

    ipv6 = _bool(doc.get("ipv6", True), src / "ipv6")

    return Values(
        provider=prov,
        namespaces=targets,
        policies=frozenset(enabled),
        app_ports=app_ports,
        allow_from_namespaces=allow_from,
        metadata_deny=metadata,
        workload_identity=workload_identity,
        dns=dns,
        ipv6=ipv6,
    )


def select_namespaces(
    values: Values, namespaces: Mapping[str, Mapping[str, str]]
) -> tuple[list[str], list[Skipped]]:
    """Choose the target namespaces among the cluster's (name -> labels).

    Returns ``(targets, skipped)``, both sorted by name; each skipped entry carries its reason.
    An explicit list must name existing namespaces and, without force, no excluded ones.
    """
    t = values.namespaces
    targets: list[str] = []
    skipped: list[Skipped] = []
    opted_out = f"labelled {EXCLUDE_LABEL}=true"

    if t.include:
        _check_explicit(t, _At("--namespace"))
        for name in sorted(t.include):
            if name not in namespaces:
                raise UsageError(
                    f"target namespace {name!r} not found in the cluster",
                    hint="create it first, or fix --namespace / namespaces.include",
                )
            if namespaces[name].get(EXCLUDE_LABEL) == "true":
                skipped.append(Skipped(name, SkipReason.OPTED_OUT, opted_out))
            else:
                targets.append(name)
        return targets, skipped

    def reason_for(name: str, labels: Mapping[str, str]) -> Skipped | None:
        if labels.get(EXCLUDE_LABEL) == "true":
            return Skipped(name, SkipReason.OPTED_OUT, opted_out)
        excl = t.exclusion_for(name)
        if excl is not None:
            return Skipped(name, SkipReason.EXCLUDED, excl.reason)
        if t.selector is not None and not t.selector.matches(labels):
            return Skipped(name, SkipReason.NOT_SELECTED,
                           f"does not match selector {t.selector.text!r}")
        return None

    for name in sorted(namespaces):
        skip = reason_for(name, namespaces[name])
        if skip is None:
            targets.append(name)
        else:
            skipped.append(skip)
    return targets, skipped
