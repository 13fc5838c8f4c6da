"""The baseline isolation bundle, rendered from validated values: a pure function.

Design decisions:

* **Templates are package data, the logic is here.** ``netiso/manifests/bundle/<key>.yaml``
  holds each policy's fixed shape and its description; what depends on the values (peers,
  ports, CIDRs, the namespace) is filled in here, where it can be typed and unit-tested.
* **Deterministic.** Output is sorted by namespace then name, keys are emitted in a fixed
  order, lists that come from sets are sorted: rendering twice gives byte-identical YAML, so a
  GitOps diff shows only real changes.
* **Labels are the ownership record.** Every object carries ``app.kubernetes.io/managed-by:
  netiso``, the bundle version and its policy key; apply/status/uninstall find netiso's objects
  by these labels and never touch anything else.
* **Safety over brevity in the egress policy.** See ``deny-metadata-egress.yaml``: the metadata
  deny also allows every pod and DNS explicitly, because on Cilium-based dataplanes ``ipBlock``
  does not match pod IPs. On EKS the Pod Identity agent (169.254.170.23) stays reachable even
  under default-deny egress. On GKE the deny is not reliable (the node redirects metadata
  traffic before policy is evaluated): the egress policy, whichever of the two is rendered,
  carries a warning annotation and :func:`bundle_warnings` says it on stderr. Also on GKE the
  DNS allowance includes 169.254.169.254 on port 53, where Cloud DNS answers pods.
* **Provider facts come from the profile.** Which addresses, DNS servers and warnings apply is
  read from ``values.profile`` (``netiso.profiles``); nothing here tests the provider's name.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from netiso.config import (
    NAMESPACE_NAME_LABEL,
    AppPorts,
    PolicyKey,
    Values,
    is_namespace_name,
)
from netiso.errors import UsageError

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "netiso"
BUNDLE_VERSION_LABEL = "netiso.io/bundle-version"
POLICY_LABEL = "netiso.io/policy"
#: Bumped whenever the rendered shape of any policy changes (a label value: [A-Za-z0-9.-_]).
BUNDLE_VERSION = "v1"
NAME_PREFIX = "netiso-"

DESCRIPTION_ANNOTATION = "netiso.io/description"
WARNING_ANNOTATION = "netiso.io/warning"




@functools.cache
def _template(key: PolicyKey) -> dict[str, Any]:
    from importlib.resources import files

    import yaml

    text = files("netiso.manifests").joinpath("bundle", f"{key.value}.yaml").read_text("utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("kind") != "NetworkPolicy":
        raise RuntimeError(f"bundle template {key.value}.yaml is not a NetworkPolicy")
    return doc


def _dns_rule(values: Values) -> dict[str, Any]:
    dns = values.dns
    peers: list[dict[str, Any]] = [
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: dns.namespace}},
            "podSelector": {"matchLabels": dict(dns.pod_labels)},
        }
    ]
    for address in dns.node_local:
        if ":" in address and not values.ipv6:
            continue
        peers.append({"ipBlock": {"cidr": f"{address}/{128 if ':' in address else 32}"}})
    # GKE's Cloud DNS is served from the metadata address; only port 53 is opened there, the
    # metadata deny's `except` still covers every other port.
    peers.extend({"ipBlock": {"cidr": cidr}} for cidr in values.profile.extra_dns)
    return {
        "to": peers,
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _credential_agent_rules(values: Values) -> list[dict[str, Any]]:
    """The provider's credential agents (EKS Pod Identity), reachable under either egress policy."""
    prof = values.profile
    if not prof.credential_agents:
        return []
    cidrs = [c for c in prof.credential_agents if values.ipv6 or ":" not in c]
    return [{
        "to": [{"ipBlock": {"cidr": c}} for c in cidrs],
        "ports": [{"protocol": "TCP", "port": prof.credential_agent_port}],
    }]


def _workload_identity_rules(values: Values) -> list[dict[str, Any]]:
    """GKE's metadata server for Workload Identity tokens, when the values file opts in.

    An explicit allow, so it also opens 169.254.169.254:80 under deny-metadata-egress's
    ``except`` (NetworkPolicy rules add up): Dataplane V2 evaluates egress before the node
    redirects that address to the gke-metadata-server.
    """
    if not values.workload_identity:
        return []
    return [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]}
            for cidr, port in values.profile.workload_identity]


def _ip_block(cidr: str, excepts: Sequence[str]) -> dict[str, Any]:
    block: dict[str, Any] = {"cidr": cidr}
    if excepts:
        block["except"] = list(excepts)
    return {"ipBlock": block}


def _metadata_egress(values: Values) -> list[dict[str, Any]]:
    v4 = sorted(c for c in values.metadata_deny if ":" not in c)
    v6 = sorted(c for c in values.metadata_deny if ":" in c)
    peers = [_ip_block("0.0.0.0/0", v4)]
    if values.ipv6:
        peers.append(_ip_block("::/0", v6))
    rules: list[dict[str, Any]] = [
        {"to": peers},
        # ipBlock does not match pod IPs on Cilium-based dataplanes: allow every pod explicitly.
        {"to": [{"namespaceSelector": {}}]},
        _dns_rule(values),
        *_credential_agent_rules(values),
        *_workload_identity_rules(values),
    ]
    return rules


def _same_namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _ports(app: AppPorts) -> list[dict[str, Any]]:
    return [{"protocol": p.protocol, "port": p.port} for p in app.ports]


def _object(
    key: PolicyKey,
    namespace: str,
    spec_extra: dict[str, Any],
    *,
    name: str | None = None,
    pod_selector: dict[str, Any] | None = None,
    policy_types: list[str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    tpl = copy.deepcopy(_template(key))
    meta = tpl.get("metadata", {})
    spec = tpl.get("spec", {})
    all_annotations = dict(meta.get("annotations", {}))
    all_annotations.update(annotations or {})
    out_spec: dict[str, Any] = {
        "podSelector": pod_selector if pod_selector is not None else spec.get("podSelector", {}),
        "policyTypes": policy_types or list(spec.get("policyTypes", [])),
    }
    for field_name in ("ingress", "egress"):
        if field_name in spec_extra:
            out_spec[field_name] = spec_extra[field_name]
    metadata: dict[str, Any] = {
        "name": name or meta["name"],
        "namespace": namespace,
        "labels": {
            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            BUNDLE_VERSION_LABEL: BUNDLE_VERSION,
            POLICY_LABEL: key.value,
        },
    }
    if all_annotations:
        metadata["annotations"] = dict(sorted(all_annotations.items()))
    return {
        "apiVersion": tpl["apiVersion"],
        "kind": tpl["kind"],
        "metadata": metadata,
        "spec": out_spec,
    }


def _policies_for(values: Values, namespace: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deny_egress = values.enabled(PolicyKey.DEFAULT_DENY_EGRESS)

    if values.enabled(PolicyKey.DEFAULT_DENY_INGRESS):
        out.append(_object(PolicyKey.DEFAULT_DENY_INGRESS, namespace, {}))

    if values.enabled(PolicyKey.ALLOW_SAME_NAMESPACE):
        peer = _same_namespace_peer(namespace)
        extra: dict[str, Any] = {"ingress": [{"from": [peer]}]}
        types = ["Ingress"]
        if deny_egress:
            # Under default-deny egress "same namespace may talk" needs the egress half too.
            extra["egress"] = [{"to": [copy.deepcopy(peer)]}]
            types = ["Ingress", "Egress"]
        out.append(_object(PolicyKey.ALLOW_SAME_NAMESPACE, namespace, extra, policy_types=types))

    if values.enabled(PolicyKey.ALLOW_APP_PORTS):
        for app in values.app_ports:
            out.append(
                _object(
                    PolicyKey.ALLOW_APP_PORTS,
                    namespace,
                    {"ingress": [{"ports": _ports(app)}]},
                    name=f"{NAME_PREFIX}allow-app-{app.name}",
                    pod_selector={"matchLabels": dict(app.pod_labels)},
                )
            )

    if values.enabled(PolicyKey.ALLOW_FROM_NAMESPACES) and values.allow_from_namespaces:
        selector = {
            "matchExpressions": [
                {
                    "key": NAMESPACE_NAME_LABEL,
                    "operator": "In",
                    "values": sorted(values.allow_from_namespaces),
                }
            ]
        }
        out.append(
            _object(
                PolicyKey.ALLOW_FROM_NAMESPACES,
                namespace,
                {"ingress": [{"from": [{"namespaceSelector": selector}]}]},
            )
        )

    # Either egress policy is meant to keep pods off the metadata server, and on GKE neither can.
    warning = values.profile.metadata_warning
    gke_warning = {WARNING_ANNOTATION: warning} if warning else {}
    if deny_egress:
        rules = [_dns_rule(values), *_credential_agent_rules(values),
                 *_workload_identity_rules(values)]
        out.append(
            _object(
                PolicyKey.DEFAULT_DENY_EGRESS,
                namespace,
                {"egress": rules},
                annotations=gke_warning,
            )
        )
    elif values.enabled(PolicyKey.DENY_METADATA_EGRESS):
        out.append(
            _object(
                PolicyKey.DENY_METADATA_EGRESS,
                namespace,
                {"egress": _metadata_egress(values)},
                annotations=gke_warning,
            )
        )
    return out


def render_bundle(values: Values, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """The bundle's NetworkPolicies for each namespace, sorted by (namespace, name)."""
    objects: list[dict[str, Any]] = []
    for namespace in sorted(set(namespaces)):
        if not is_namespace_name(namespace):
            raise UsageError(f"namespace {namespace!r} is not a valid namespace name")
        objects.extend(_policies_for(values, namespace))
    objects.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    return objects


def bundle_warnings(values: Values) -> list[str]:
    """What the rendered bundle cannot promise on this provider (said on stderr by commands)."""
    warnings: list[str] = []
    warning = values.profile.metadata_warning
    if warning is None:
        return warnings
    # The policy that is meant to keep pods off the metadata server, if any is rendered.
    if values.enabled(PolicyKey.DEFAULT_DENY_EGRESS):
        key: PolicyKey | None = PolicyKey.DEFAULT_DENY_EGRESS
    elif values.enabled(PolicyKey.DENY_METADATA_EGRESS):
        key = PolicyKey.DENY_METADATA_EGRESS
    else:
        key = None
    if key is not None:
        warnings.append(f"{NAME_PREFIX}{key.value}: {warning}")
    return warnings


def bundle_notes(values: Values) -> list[str]:
    """Informational notes about choices the renderer made (said on stderr by commands)."""
    notes: list[str] = []
    if values.enabled(PolicyKey.DEFAULT_DENY_EGRESS) and values.enabled(
        PolicyKey.DENY_METADATA_EGRESS
    ):
        metadata = f"{NAME_PREFIX}{PolicyKey.DENY_METADATA_EGRESS.value}"
        if values.profile.metadata_warning is not None:
            notes.append(
                f"default-deny egress is on and replaces {metadata}, which is not rendered; on "
                "GKE metadata traffic is redirected before NetworkPolicy is evaluated, so neither "
                "policy keeps pods off the metadata server (see the warning)"
            )
        else:
            notes.append(
                "default-deny egress is on: it also denies the metadata endpoints, so "
                f"{metadata} is not rendered"
            )
    return notes


def to_yaml(objects: Sequence[dict[str, Any]], *, pure: bool = False) -> str:
    """Multi-document YAML, keys in the objects' own (fixed) order: stable byte for byte.

    Dumped by libyaml's emitter (``CSafeDumper``) when PyYAML was built with it: the pure-Python
    emitter costs ~4 ms per namespace, most of a large render. Both give the same bytes for what
    the bundle holds (plain ASCII strings, maps, lists, ints; a test compares them on a large
    render); ``pure`` forces the Python one."""
    import yaml

    dumper: Any = yaml.SafeDumper if pure else getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text: str = yaml.dump_all(
        list(objects),
        Dumper=dumper,
        explicit_start=True,
        sort_keys=False,
        default_flow_style=False,
        width=100_000,  # never fold long annotation strings: folding would differ by content
    )
    return text
