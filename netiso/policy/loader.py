"""From YAML/JSON text and API-shaped dicts to the model, with the API server's defaulting.

The loader is where "what the API server would have done" happens: policyTypes defaulting
([Ingress], plus Egress only when the egress list is non-empty), protocol TCP, the
``kubernetes.io/metadata.name`` namespace label, and the validations that make an object
unstorable (a field the API does not define, a peer with nothing in it, an ipBlock beside a
selector, an ``except`` outside its ``cidr``, ``endPort`` on a named port, a bad selector
operator). Such objects are bad input: one
line naming the source and the object, never a guess. Kinds the evaluator does not need are
skipped and reported through ``LoadedObjects.skipped`` so the caller can say so on stderr.

Parsing text is here; reading files is the caller's business (this package does no I/O).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netiso.policy.model import (
    NAMESPACE_NAME_LABEL,
    ContainerPort,
    Direction,
    IPBlock,
    IPNetwork,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyInputError,
    PortMatch,
    Protocol,
    Rule,
    default_policy_types,
    is_port_name,
)
from netiso.policy.selectors import LabelSelector, Operator, Requirement


@dataclass
class LoadedObjects:
    namespaces: list[Namespace] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    policies: list[NetworkPolicy] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Bad(Exception):
    """A validation failure inside one object; the caller adds source and object name."""


def parse_documents(text: str, source: str) -> list[dict[str, Any]]:
    """Every object in a YAML or JSON text: multi-document streams and ``kind: List`` expanded."""
    import yaml  # YAML is a superset of JSON: one parser for both inputs.

    docs: list[Any] | None = None
    if text.lstrip()[:1] in ("{", "["):
        # The same result as the YAML parser, 100x faster: a 2,000-pod dump is ~10 s of pure
        # Python YAML. Flow-style YAML (`{a: b}`) is not JSON and takes the YAML path.
        try:
            docs = [json.loads(text)]
        except (ValueError, RecursionError):
            # Not JSON, or nested deeper than the decoder recurses: the YAML path below
            # reports either as bad input with a line number.
            docs = None
    try:
        if docs is None:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed
            docs = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise PolicyInputError(f"{source}: not valid YAML or JSON{where}: {problem}") from exc
    out: list[dict[str, Any]] = []
    for n, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise PolicyInputError(f"{source}: document {n + 1} is not an object")
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise PolicyInputError(f"{source}: document {n + 1}: items is not a list")
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise PolicyInputError(f"{source}: {kind} item {i} is not an object")
                out.append(item)
        else:
            out.append(doc)
    return out


def load_objects(objects: Iterable[Mapping[str, Any]], source: str = "<objects>",
                 into: LoadedObjects | None = None) -> LoadedObjects:
    """Turn API-shaped dicts into model objects (appending to ``into`` when given)."""
    loaded = into if into is not None else LoadedObjects()
    for obj in objects:
        kind = obj.get("kind")
        api = obj.get("apiVersion")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        name = meta.get("name") if isinstance(meta, dict) else None
        ns = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
        label = f"{kind} {ns}/{name}" if kind != "Namespace" else f"Namespace {name}"
        try:
            if kind == "Namespace" and api in (None, "v1"):
                loaded.namespaces.append(_namespace(obj))
            elif kind == "Pod" and api in (None, "v1"):
                loaded.pods.append(_pod(obj))
            elif kind == "NetworkPolicy" and api in (None, "networking.k8s.io/v1"):
                loaded.policies.append(_policy(obj))
            else:
                # e.g. Calico's or Cilium's own NetworkPolicy kinds: not this API, not evaluated.
                loaded.skipped.append(f"{source}: skipped {api or '?'} {kind or '?'} "
                                      f"{ns}/{name or '?'} (not evaluated)")
        except _Bad as exc:
            raise PolicyInputError(f"{source}: {label}: {exc}") from exc
    return loaded


# --- helpers -----------------------------------------------------------------------------

def _name(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise _Bad("metadata missing")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise _Bad("metadata.name missing")
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str):
        raise _Bad("metadata.namespace is not a string")
    return ns, name


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not a map")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            # kubectl refuses non-string label values (e.g. unquoted `true` or `8080` in YAML).
            raise _Bad(f"{where}: label {k!r} must have a string value, got {v!r}")
        out[k] = v
    return out


def _known_fields(value: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Refuse fields the API does not define, as the API server's strict validation does: a
    typo here would otherwise load as a different policy (`ingres:` as deny-all)."""
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise _Bad(f"{where}: unknown field {str(unknown[0])!r}; allowed: {', '.join(allowed)}")


def _namespace(obj: Mapping[str, Any]) -> Namespace:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise _Bad("metadata.name missing")
    name: str = meta["name"]
    labels = _labels(meta.get("labels"), "metadata.labels")
    labels[NAMESPACE_NAME_LABEL] = name  # set (and enforced) by the API server
    return Namespace(name, tuple(sorted(labels.items())))


def _protocol(value: Any, where: str) -> Protocol:
    if value is None:
        return Protocol.TCP
    try:
        return Protocol(value)
    except ValueError:
        raise _Bad(f"{where}: protocol {value!r} is not TCP, UDP or SCTP") from None


def _pod(obj: Mapping[str, Any]) -> Pod:
    ns, name = _name(obj)
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(spec, dict) or not isinstance(status, dict):
        raise _Bad("spec/status is not a map")
    ports: list[ContainerPort] = []
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        raise _Bad("spec.containers is not a list")
    for ci, container in enumerate(containers):
        if not isinstance(container, dict):
            raise _Bad(f"spec.containers[{ci}] is not a map")
        for pi, port in enumerate(container.get("ports") or []):
            where = f"spec.containers[{ci}].ports[{pi}]"
            if not isinstance(port, dict):
                raise _Bad(f"{where} is not a map")
            number = port.get("containerPort")
            if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
                raise _Bad(f"{where}.containerPort {number!r} is not a port number")
            pname = port.get("name")
            if pname is not None and not is_port_name(pname):
                raise _Bad(f"{where}.name {pname!r} is not a valid port name")
            ports.append(ContainerPort(number, _protocol(port.get("protocol"), where), pname))
    ips: list[str] = []
    for entry in status.get("podIPs") or []:
        ip = entry.get("ip") if isinstance(entry, dict) else None
        if isinstance(ip, str) and ip not in ips:
            ips.append(ip)
    if isinstance(status.get("podIP"), str) and status["podIP"] not in ips:
        ips.insert(0, status["podIP"])
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _Bad(f"status.podIP {ip!r} is not an IP address") from None
    host_ip = status.get("hostIP")
    if isinstance(host_ip, str):
        try:
            # Canonical text: node identity is compared by hostIP, and IPv6 has many spellings.
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise _Bad(f"status.hostIP {host_ip!r} is not an IP address") from None
    return Pod(
        namespace=ns,
        name=name,
        labels=tuple(sorted(_labels(meta.get("labels"), "metadata.labels").items())),
        ips=tuple(ips),
        ports=tuple(ports),
        host_network=bool(spec.get("hostNetwork", False)),
        host_ip=host_ip if isinstance(host_ip, str) else None,
        node_name=spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None,
        phase=status.get("phase") if isinstance(status.get("phase"), str) else None,
    )


def label_selector(value: Mapping[str, Any] | None, where: str = "selector") -> LabelSelector:
    """A ``metav1.LabelSelector`` object (None or {} selects everything) as a model selector;
    PolicyInputError when it is malformed."""
    try:
        return _selector(value, where)
    except _Bad as exc:
        raise PolicyInputError(str(exc)) from exc


def _selector(value: Any, where: str) -> LabelSelector:
    if value is None:
        return LabelSelector()
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not a map")
    _known_fields(value, ("matchLabels", "matchExpressions"), where)
    exprs: list[Requirement] = []
    for i, expr in enumerate(value.get("matchExpressions") or []):
        ew = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, dict) or not isinstance(expr.get("key"), str):
            raise _Bad(f"{ew}: needs a key")
        try:
            op = Operator(str(expr.get("operator")))
        except ValueError:
            raise _Bad(f"{ew}: operator {expr.get('operator')!r} is not In, NotIn, "
                       "Exists or DoesNotExist") from None
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _Bad(f"{ew}: values must be a list of strings")
        if op in (Operator.IN, Operator.NOT_IN) and not values:
            raise _Bad(f"{ew}: operator {op} needs at least one value")
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
            raise _Bad(f"{ew}: operator {op} takes no values")
        exprs.append(Requirement(expr["key"], op, frozenset(values)))
    return LabelSelector.of(_labels(value.get("matchLabels"), f"{where}.matchLabels"), exprs)


def _cidr(value: Any, where: str) -> IPNetwork:
    if not isinstance(value, str):
        raise _Bad(f"{where} {value!r} is not a CIDR")
    try:
        # The API accepts host bits set (ParseCIDRSloppy): 10.0.0.1/24 means 10.0.0.0/24.
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _Bad(f"{where} {value!r} is not a CIDR") from None


def _peer(value: Any, where: str) -> Peer:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not a map")
    _known_fields(value, ("podSelector", "namespaceSelector", "ipBlock"), where)
    has_pod = "podSelector" in value and value["podSelector"] is not None
    has_ns = "namespaceSelector" in value and value["namespaceSelector"] is not None
    block = value.get("ipBlock")
    if block is not None:
        if has_pod or has_ns:
            raise _Bad(f"{where}: ipBlock cannot be combined with a selector in one peer")
        if not isinstance(block, dict):
            raise _Bad(f"{where}.ipBlock is not a map")
        _known_fields(block, ("cidr", "except"), f"{where}.ipBlock")
        cidr = _cidr(block.get("cidr"), f"{where}.ipBlock.cidr")
        excepts = []
        for i, ex in enumerate(block.get("except") or []):
            net = _cidr(ex, f"{where}.ipBlock.except[{i}]")
            if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
                raise _Bad(f"{where}.ipBlock.except[{i}] {ex} is not inside cidr {cidr}")
            excepts.append(net)
        return Peer(ip_block=IPBlock(cidr, tuple(excepts)))
    if not (has_pod or has_ns):
        raise _Bad(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    return Peer(
        pod_selector=_selector(value["podSelector"], f"{where}.podSelector") if has_pod else None,
        namespace_selector=(_selector(value["namespaceSelector"], f"{where}.namespaceSelector")
                            if has_ns else None),
    )


def _port_match(value: Any, where: str) -> PortMatch:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not a map")
    _known_fields(value, ("protocol", "port", "endPort"), where)
    protocol = _protocol(value.get("protocol"), where)
    port = value.get("port")
    end = value.get("endPort")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int | str):
            raise _Bad(f"{where}.port {port!r} is neither a number nor a name")
        if isinstance(port, int) and not 0 < port < 65536:
            raise _Bad(f"{where}.port {port} is out of range")
        if isinstance(port, str) and not is_port_name(port):
            raise _Bad(f"{where}.port {port!r} is not a valid port name")
    if end is not None:
        if not isinstance(port, int):
            raise _Bad(f"{where}.endPort needs a numeric port")
        if isinstance(end, bool) or not isinstance(end, int) or not port <= end < 65536:
            raise _Bad(f"{where}.endPort {end!r} must be a number >= port {port}")
    return PortMatch(protocol, port, end)


def _rules(value: Any, where: str, peers_key: str) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Bad(f"{where} is not a list")
    rules = []
    for i, item in enumerate(value):
        rw = f"{where}[{i}]"
        rule = {} if item is None else item
        if not isinstance(rule, dict):
            raise _Bad(f"{rw} is not a map")
        _known_fields(rule, (peers_key, "ports"), rw)
        peers = rule.get(peers_key) or []
        ports = rule.get("ports") or []
        if not isinstance(peers, list) or not isinstance(ports, list):
            raise _Bad(f"{rw}: {peers_key} and ports must be lists")
        rules.append(Rule(
            tuple(_peer(p, f"{rw}.{peers_key}[{j}]") for j, p in enumerate(peers)),
            tuple(_port_match(p, f"{rw}.ports[{j}]") for j, p in enumerate(ports)),
        ))
    return tuple(rules)


def _policy(obj: Mapping[str, Any]) -> NetworkPolicy:
    ns, name = _name(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise _Bad("spec missing")
    _known_fields(spec, ("podSelector", "policyTypes", "ingress", "egress"), "spec")
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(spec.get("egress"), "spec.egress", "to")
    raw_types = spec.get("policyTypes")
    if raw_types is None or raw_types == []:
        types = set(default_policy_types(bool(egress)))
    else:
        if not isinstance(raw_types, list):
            raise _Bad("spec.policyTypes is not a list")
        types = set()
        for t in raw_types:
            try:
                types.add(Direction(t))
            except ValueError:
                raise _Bad(f"spec.policyTypes: {t!r} is not Ingress or Egress") from None
    return NetworkPolicy(
        namespace=ns,
        name=name,
        pod_selector=_selector(spec.get("podSelector"), "spec.podSelector"),
        policy_types=frozenset(types),
        ingress=ingress,
        egress=egress,
    )
