"""Every rendered object is a valid networking.k8s.io/v1 NetworkPolicy - checked offline.

The schema is the Kubernetes OpenAPI v3 document shipped inside the k8s.io/kubernetes Go module,
which the lab build (and ``scripts/test``) puts in the Go module cache. It is read from there,
never committed. The schema alone does not forbid unknown fields (the API server prunes or
rejects them depending on field validation), so a strict walk adds that, plus the validation
rules the API server enforces in code (ipBlock.except inside cidr, port ranges, name syntax).

Missing schema: fail in CI (``CI=true``), skip locally with the command that fetches it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netiso.bundle import render_bundle
from netiso.config import load_values
from netiso.errors import UsageError
from netiso.profiles import PROVIDERS

# Same pin as the lab (tests/lab/build.py K8S_VERSION): one download serves both.
K8S_VERSION = os.environ.get("NETISO_K8S_VERSION", "v1.37.2")
SPEC_RELPATH = "api/openapi-spec/v3/apis__networking.k8s.io__v1_openapi.json"
NETWORK_POLICY = "io.k8s.api.networking.v1.NetworkPolicy"
FETCH_HINT = f"cd /tmp && GOFLAGS=-mod=mod go mod download -json k8s.io/kubernetes@{K8S_VERSION}"


def _modcache() -> Path:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    go = shutil.which("go")
    if go:
        out = subprocess.run(
            [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip()
        if out:
            return Path(out)
    return Path.home() / "go" / "pkg" / "mod"


@cache
def _spec() -> dict[str, Any]:
    path = _modcache() / f"k8s.io/kubernetes@{K8S_VERSION}" / SPEC_RELPATH
    if not path.is_file():
        message = f"Kubernetes OpenAPI spec not found at {path}; fetch it with: {FETCH_HINT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _validator() -> Any:
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    uri = "urn:k8s:networking.k8s.io:v1"
    registry: Any = Registry().with_resource(
        uri, Resource.from_contents(_spec(), default_specification=DRAFT4)
    )
    return OAS30Validator(
        {"$ref": f"{uri}#/components/schemas/{NETWORK_POLICY}"}, registry=registry
    )


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in schema:
            schema = _spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _unknown_fields(instance: Any, schema: dict[str, Any], path: str) -> list[str]:
    schema = _resolve(schema)
    found: list[str] = []
    if isinstance(instance, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            if props is not None and key in props:
                found += _unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += _unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None:
                found.append(f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            found += _unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def _all_bundles(tmp_path: Path) -> list[dict[str, Any]]:
    everything = tmp_path / "all.yaml"
    everything.write_text(
        "allowFromNamespaces: [ingress-nginx, monitoring]\n"
        "appPorts:\n"
        "  - podSelector: {app: web-server}\n"
        "    ports: [8000, {port: 8443, protocol: TCP}, {port: http-alt},\n"
        "            {port: 53, protocol: UDP}]\n"
        "  - name: metrics\n"
        "    podSelector: {app.kubernetes.io/name: exporter}\n"
        "    ports: [{port: 9100, protocol: SCTP}]\n"
    )
    egress = tmp_path / "egress.yaml"
    egress.write_text("policies: {defaultDenyEgress: true}\nipv6: false\n")
    objs: list[dict[str, Any]] = []
    for provider in PROVIDERS:
        for values in (None, everything, egress):
            vals = load_values(values, provider=provider, namespaces=["production", "team-a"])
            objs += render_bundle(vals, ["production", "team-a"])
    return objs


def test_spec_is_the_networkpolicy_schema() -> None:
    assert NETWORK_POLICY in _spec()["components"]["schemas"]


def test_strict_walk_catches_typos() -> None:
    """The strict walk is not a no-op: a misspelt field is reported."""
    schema = {"$ref": f"#/components/schemas/{NETWORK_POLICY}"}
    obj = {"spec": {"podSelector": {"matchLabel": {}}, "polcyTypes": ["Ingress"]}}
    assert sorted(_unknown_fields(obj, schema, "")) == [
        ".spec.podSelector.matchLabel",
        ".spec.polcyTypes",
    ]


def test_rendered_objects_validate_against_openapi(tmp_path: Path) -> None:
    validator = _validator()
    schema = {"$ref": f"#/components/schemas/{NETWORK_POLICY}"}
    objs = _all_bundles(tmp_path)
    assert len(objs) > 50
    for obj in objs:
        where = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        errors = [e.message for e in validator.iter_errors(obj)]
        assert errors == [], f"{where}: {errors}"
        assert _unknown_fields(obj, schema, "") == [], where


def test_validator_rejects_a_broken_policy() -> None:
    broken = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "x"},
        "spec": {"podSelector": {}, "policyTypes": "Ingress"},
    }
    assert list(_validator().iter_errors(broken))


_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def test_api_server_rules_the_schema_cannot_express(tmp_path: Path) -> None:
    for obj in _all_bundles(tmp_path):
        assert _DNS1123_SUBDOMAIN.match(obj["metadata"]["name"])
        assert len(obj["metadata"]["name"]) <= 63
        spec = obj["spec"]
        assert set(spec["policyTypes"]) <= {"Ingress", "Egress"}
        for rule in [*spec.get("ingress", []), *spec.get("egress", [])]:
            for port in rule.get("ports", []):
                assert port["protocol"] in ("TCP", "UDP", "SCTP")
                if isinstance(port["port"], int):
                    assert 1 <= port["port"] <= 65535
                else:
                    assert len(port["port"]) <= 15
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                block = peer.get("ipBlock")
                if block is None:
                    continue
                assert set(peer) == {"ipBlock"}  # ipBlock excludes the selectors
                cidr = ipaddress.ip_network(block["cidr"])
                for exc in block.get("except", []):
                    sub = ipaddress.ip_network(exc)
                    # the API server demands a strict subset of the cidr
                    assert sub.version == cidr.version
                    assert sub.subnet_of(cidr) and sub != cidr  # type: ignore[arg-type]


_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
_ports = st.one_of(
    st.integers(1, 65535),
    st.fixed_dictionaries(
        {"port": st.integers(1, 65535), "protocol": st.sampled_from(["TCP", "UDP", "SCTP"])}
    ),
    st.from_regex(r"[a-z][a-z0-9]{0,13}", fullmatch=True),
)


@st.composite
def _values_docs(draw: st.DrawFn) -> dict[str, Any]:
    app_names = draw(st.lists(_names, max_size=3, unique=True))
    return {
        "appPorts": [
            {
                "name": name,
                "podSelector": {"app": name},
                "ports": draw(st.lists(_ports, min_size=1, max_size=3, unique_by=str)),
            }
            for name in app_names
        ],
        "allowFromNamespaces": draw(st.lists(_names, max_size=3, unique=True)),
        "policies": {
            "defaultDenyEgress": draw(st.booleans()),
            "defaultDenyIngress": draw(st.booleans()),
        },
        "ipv6": draw(st.booleans()),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=_values_docs(),
    provider=st.sampled_from(PROVIDERS),
    namespaces=st.lists(_names, min_size=1, max_size=3, unique=True),
)
def test_any_valid_values_render_valid_objects(
    tmp_path: Path, doc: dict[str, Any], provider: str, namespaces: list[str]
) -> None:
    import yaml

    from netiso.bundle import to_yaml

    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(doc))
    try:
        vals = load_values(f, provider=provider, namespaces=namespaces)
    except UsageError as exc:
        # the only refusal the generator can provoke: two ports equal after normalisation
        assert "duplicate port" in exc.one_line()
        return
    objs = render_bundle(vals, namespaces)
    validator = _validator()
    for obj in objs:
        assert list(validator.iter_errors(obj)) == []
    assert list(yaml.safe_load_all(to_yaml(objs))) == objs
    assert render_bundle(vals, list(reversed(namespaces))) == objs
