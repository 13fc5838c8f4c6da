"""Values: defaults per provider, the values file, flags, namespace selection, exact errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netiso.config import (
    DEFAULT_APP_PORTS,
    EXCLUDE_LABEL,
    PolicyKey,
    PortSpec,
    Skipped,
    SkipReason,
    Values,
    _At,
    load_values,
    parse_selector,
    select_namespaces,
)
from netiso.errors import UsageError
from netiso.profiles import SYSTEM_NAMESPACES, Provider


def values_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    v = load_values(None)
    assert v.provider is Provider.GENERIC
    assert v.policies == frozenset(
        {
            PolicyKey.DEFAULT_DENY_INGRESS,
            PolicyKey.ALLOW_SAME_NAMESPACE,
            PolicyKey.ALLOW_APP_PORTS,
            PolicyKey.ALLOW_FROM_NAMESPACES,
            PolicyKey.DENY_METADATA_EGRESS,
        }
    )
    assert not v.enabled(PolicyKey.DEFAULT_DENY_EGRESS)
    assert v.app_ports == DEFAULT_APP_PORTS
    assert v.app_ports[0].pod_labels == (("app", "web-server"),)
    assert v.app_ports[0].ports == (PortSpec(8000, "TCP"),)
    assert v.metadata_deny == ("169.254.169.254/32",)
    assert v.dns.node_local == ("169.254.20.10",)
    assert v.dns.namespace == "kube-system"
    assert dict(v.dns.pod_labels) == {"k8s-app": "kube-dns"}
    assert v.ipv6 is True
    assert v.namespaces.include == ()
    assert v.namespaces.selector is None


@pytest.mark.parametrize(
    ("provider", "metadata", "excluded"),
    [
        ("eks", {"169.254.169.254/32", "fd00:ec2::254/128"}, "amazon-cloudwatch"),
        ("gke", {"169.254.169.254/32", "fd20:ce::254/128"}, "gmp-system"),
        ("gke", {"169.254.169.254/32", "fd20:ce::254/128"}, "gke-managed-cim"),
        ("aks", {"169.254.169.254/32"}, "aks-command"),
        ("EKS", {"169.254.169.254/32", "fd00:ec2::254/128"}, "amazon-guardduty"),
    ],
)
def test_provider_defaults(provider: str, metadata: set[str], excluded: str) -> None:
    v = load_values(None, provider=provider)
    assert set(v.metadata_deny) == metadata
    assert v.namespaces.exclusion_for(excluded) is not None
    for ns in SYSTEM_NAMESPACES:
        assert v.namespaces.exclusion_for(ns) is not None
    assert load_values(None).namespaces.exclusion_for(excluded) is None


def test_full_values_file(tmp_path: Path) -> None:
    f = values_file(
        tmp_path,
        """
namespaces:
  include: [production, staging]
  exclude: ["legacy-*"]
policies:
  defaultDenyEgress: true
  allowFromNamespaces: false
appPorts:
  - podSelector: {app: web-server}
    ports: [8000, "8443", {port: http, protocol: tcp}]
  - name: dns-cache
    podSelector: {app.kubernetes.io/name: cache, tier: "1"}
    ports: [{port: 53, protocol: UDP}]
allowFromNamespaces: [ingress-nginx]
metadata:
  deny: [169.254.169.254, "fd00:ec2::254/128"]
dns:
  namespace: dns
  podSelector: {app: coredns}
  nodeLocal: []
ipv6: false
""",
    )
    v = load_values(f, provider="eks")
    assert v.namespaces.include == ("production", "staging")
    assert v.namespaces.exclusion_for("legacy-billing") is not None
    assert v.enabled(PolicyKey.DEFAULT_DENY_EGRESS)
    assert not v.enabled(PolicyKey.ALLOW_FROM_NAMESPACES)
    assert v.app_ports[0].name == "web-server"
    assert v.app_ports[0].ports == (PortSpec(8000), PortSpec(8443), PortSpec("http"))
    assert v.app_ports[1].name == "dns-cache"
    assert v.app_ports[1].pod_labels == (("app.kubernetes.io/name", "cache"), ("tier", "1"))
    assert v.app_ports[1].ports == (PortSpec(53, "UDP"),)
    assert v.allow_from_namespaces == ("ingress-nginx",)
    assert v.metadata_deny == ("169.254.169.254/32", "fd00:ec2::254/128")
    assert v.dns.namespace == "dns"
    assert v.dns.node_local == ()
    assert v.ipv6 is False


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_values(values_file(tmp_path, "# nothing\n")) == load_values(None)


def test_values_are_frozen() -> None:
    v = load_values(None)
    with pytest.raises(AttributeError):
        v.ipv6 = False  # type: ignore[misc]
    assert isinstance(v, Values)
    hash(v.app_ports)


def test_flags_replace_file_targeting(tmp_path: Path) -> None:
    f = values_file(tmp_path, "namespaces: {selector: 'team=a', exclude: [old]}\n")
    v = load_values(f, namespaces=["production"])
    assert v.namespaces.include == ("production",)
    assert v.namespaces.selector is None
    assert v.namespaces.exclusion_for("old") is not None  # exclusions are kept
    v = load_values(values_file(tmp_path, "namespaces: {include: [a]}\n"), selector="x=y")
    assert v.namespaces.include == ()
    assert v.namespaces.selector is not None


def _error(**kwargs: object) -> str:
    with pytest.raises(UsageError) as exc:
        load_values(**kwargs)  # type: ignore[arg-type]
    line = exc.value.one_line()
    assert "\n" not in line
    return line


def test_exact_error_lines(tmp_path: Path) -> None:
    f = values_file(tmp_path, "appPorts:\n  - podSelector: {app: w}\n    ports: [80, 0]\n")
    assert (
        _error(path=f) == f"{f}: appPorts[0].ports[1]: 0 is out of range; allowed: {PORT_ALLOWED}"
    )
    f = values_file(tmp_path, "namespaces:\n  include: [a\n")
    assert _error(path=f).startswith(f"{f}:3:1: invalid YAML: ")
    assert _error(path=None, provider="openstack") == (
        "--provider: unknown provider 'openstack'; allowed: eks, gke, aks, generic"
    )
    assert _error(path=None, namespaces=["kube-system"]) == (
        "--namespace: 'kube-system' is a system namespace; netiso does not isolate it by "
        "default; allowed: pass --force to target it anyway"
    )
    f = values_file(tmp_path, "namespaces: {include: [ok, kube-public]}\n")
    assert _error(path=f).startswith(f"{f}: namespaces.include[1]: 'kube-public' is a system")
    # An article that fits what follows ("is a excluded" was the old text).
    f = values_file(tmp_path, "namespaces: {include: [team-a], exclude: ['team-*']}\n")
    assert _error(path=f) == (
        f"{f}: namespaces.include[0]: 'team-a' is an excluded namespace (pattern 'team-*', "
        "namespaces.exclude); netiso does not isolate it by default; "
        "allowed: pass --force to target it anyway")
    assert "'amazon-x' is an eks system namespace (amazon-*);" in _error(
        path=None, provider="eks", namespaces=["amazon-x"])
    assert "cannot be combined" in _error(path=None, namespaces=["a"], selector="b=c")
    assert "empty label selector" in _error(path=None, selector="  ")


def test_force_allows_system_namespaces() -> None:
    v = load_values(None, namespaces=["kube-system"], force=True)
    assert v.namespaces.include == ("kube-system",)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("team=a", {"team": "a"}, True),
        ("team==a", {"team": "b"}, False),
        ("team!=a", {}, True),
        ("team!=a", {"team": "a"}, False),
        ("env in (prod, staging)", {"env": "staging"}, True),
        ("env notin (prod,staging)", {"env": "dev"}, True),
        ("env notin (prod,staging)", {"env": "prod"}, False),
        ("tier", {"tier": ""}, True),
        ("!legacy", {"legacy": "true"}, False),
        ("team=a,env in (prod),!legacy", {"team": "a", "env": "prod"}, True),
        ("example.com/owner=x", {"example.com/owner": "x"}, True),
    ],
)
def test_selector_parsing(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text, _At("--selector")).matches(labels) is expected


@pytest.mark.parametrize(
    "text", ["", ",", "a=b,", "a in (b", "a in ()", "a=b=c", "-bad=x", "a=b c", "in (a)"]
)
def test_bad_selectors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_selector(text, _At("--selector"))


def test_selector_to_kubernetes() -> None:
    sel = parse_selector("team=a,env in (prod,dev),!legacy", _At("x"))
    assert sel.to_kubernetes() == {
        "matchLabels": {"team": "a"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["dev", "prod"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }


CLUSTER = {
    "default": {},
    "production": {"team": "a"},
    "staging": {"team": "b"},
    "opted-out": {"team": "a", EXCLUDE_LABEL: "true"},
    "kube-system": {},
    "calico-system": {},
    "amazon-cloudwatch": {},
    "legacy-1": {"team": "a"},
}


def test_select_all_but_system() -> None:
    targets, skipped = select_namespaces(load_values(None, provider="eks"), CLUSTER)
    assert targets == ["default", "legacy-1", "production", "staging"]
    reasons = {s.namespace: (s.reason, s.detail) for s in skipped}
    assert reasons["kube-system"] == (SkipReason.EXCLUDED, "system namespace")
    assert reasons["calico-system"] == (SkipReason.EXCLUDED, "system namespace")
    assert reasons["amazon-cloudwatch"] == (SkipReason.EXCLUDED, "eks system namespace (amazon-*)")
    assert reasons["opted-out"] == (SkipReason.OPTED_OUT, f"labelled {EXCLUDE_LABEL}=true")
    # generic does not know about amazon-*
    targets, _ = select_namespaces(load_values(None), CLUSTER)
    assert "amazon-cloudwatch" in targets


def test_select_by_selector_and_user_exclusions(tmp_path: Path) -> None:
    f = values_file(tmp_path, "namespaces: {selector: team=a, exclude: ['legacy-*']}\n")
    targets, skipped = select_namespaces(load_values(f), CLUSTER)
    assert targets == ["production"]
    reasons = {s.namespace: (s.reason, s.detail) for s in skipped}
    assert reasons["staging"] == (SkipReason.NOT_SELECTED, "does not match selector 'team=a'")
    assert reasons["legacy-1"] == (SkipReason.EXCLUDED,
                                   "excluded by pattern 'legacy-*' (namespaces.exclude)")
    assert reasons["opted-out"][0] is SkipReason.OPTED_OUT
    assert reasons["opted-out"][1].startswith("labelled")


def test_select_explicit() -> None:
    v = load_values(None, namespaces=["staging", "opted-out", "production"])
    targets, skipped = select_namespaces(v, CLUSTER)
    assert targets == ["production", "staging"]
    assert skipped == [
        Skipped("opted-out", SkipReason.OPTED_OUT, f"labelled {EXCLUDE_LABEL}=true")]
    with pytest.raises(UsageError, match="'nope' not found in the cluster"):
        select_namespaces(load_values(None, namespaces=["nope"]), CLUSTER)


def test_select_explicit_system_needs_force() -> None:
    forced = load_values(None, namespaces=["kube-system"], force=True)
    assert select_namespaces(forced, CLUSTER) == (["kube-system"], [])
    # a Values built without load_values still cannot target a system namespace unforced
    from dataclasses import replace

    unforced = replace(forced, namespaces=replace(forced.namespaces, force=False))
    with pytest.raises(UsageError, match="--force"):
        select_namespaces(unforced, CLUSTER)


@given(st.integers())
def test_port_range_is_exact(port: int) -> None:
    from netiso.config import _port

    if 1 <= port <= 65535:
        assert _port(port, _At("p")).port == port
    else:
        with pytest.raises(UsageError, match="out of range"):
            _port(port, _At("p"))


# Arbitrary text, and text made of the name alphabet plus a newline: a regex anchored with `$`
# accepts "a\n", which the first strategy alone rarely generates.
NAMES = st.one_of(st.text(max_size=70), st.text(alphabet="az09-\n", max_size=70))


@given(NAMES)
def test_namespace_names_never_crash(name: str) -> None:
    try:
        v = load_values(None, namespaces=[name], force=True)
    except UsageError as exc:
        assert "\n" not in exc.one_line()
    else:
        assert v.namespaces.include == (name,)
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), repr(name)


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    """The values example in README.md loads: the manual cannot drift from the validator."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    v = load_values(values_file(tmp_path, example), provider="eks")
    assert v.namespaces.include == ("production", "staging")
    assert v.allow_from_namespaces == ("ingress-nginx", "monitoring")
    assert v.app_ports == DEFAULT_APP_PORTS


# --- names are matched whole: a trailing newline is not part of a valid name ------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('namespaces: {include: ["prod\\n"]}\n', "namespaces.include[0]"),
        ('allowFromNamespaces: ["mon\\n"]\n', "allowFromNamespaces[0]"),
        ('dns: {namespace: "kube-system\\n"}\n', "dns.namespace"),
        ('dns: {podSelector: {"app\\n": x}}\n', "dns.podSelector"),
        ('dns: {podSelector: {app: "x\\n"}}\n', "dns.podSelector.app"),
        ('appPorts: [{podSelector: {app: w}, ports: ["http\\n"]}]\n', "appPorts[0].ports[0]"),
        ('appPorts: [{podSelector: {app: w}, ports: [80], name: "web\\n"}]\n', "appPorts[0].name"),
    ],
)
def test_trailing_newline_is_refused(tmp_path: Path, text: str, path: str) -> None:
    f = values_file(tmp_path, text)
    assert _error(path=f).startswith(f"{f}: {path}"), _error(path=f)


def test_trailing_newline_in_a_flag_is_refused() -> None:
    assert _error(path=None, namespaces=["prod\n"]).startswith(
        "--namespace: 'prod\\n' is not a valid namespace name"
    )


def test_render_refuses_an_invalid_namespace_too() -> None:
    from netiso.bundle import render_bundle

    with pytest.raises(UsageError, match="not a valid namespace name"):
        render_bundle(load_values(None), ["prod\n"])


# --- YAML nesting ----------------------------------------------------------------------------


def test_deeply_nested_yaml_is_a_usage_error(tmp_path: Path) -> None:
    f = values_file(tmp_path, "x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert _error(path=f) == (
        f"{f}: invalid YAML: nesting too deep; allowed: a values file nested a few levels deep"
    )


# --- port names (IANA service names) and NodeLocal addresses ----------------------------------


@pytest.mark.parametrize("name", ["http", "web-http", "h2c", "a", "x-1-2", "abcdefghijklmno"])
def test_valid_port_names(tmp_path: Path, name: str) -> None:
    f = values_file(tmp_path, f"appPorts: [{{podSelector: {{app: w}}, ports: [{name}]}}]\n")
    assert load_values(f).app_ports[0].ports == (PortSpec(name),)


@pytest.mark.parametrize(
    "name", ["web--http", "-http", "http-", "123", "abcdefghijklmnop", "Http", "h_t", "h.t", "-"]
)
def test_invalid_port_names(tmp_path: Path, name: str) -> None:
    f = values_file(tmp_path, f"appPorts: [{{podSelector: {{app: w}}, ports: ['{name}']}}]\n")
    if name == "123":  # all digits: a port number, and a valid one
        assert load_values(f).app_ports[0].ports == (PortSpec(123),)
        return
    assert _error(path=f) == (
        f"{f}: appPorts[0].ports[0]: {name!r} is not a valid port; allowed: {PORT_ALLOWED}"
    )


PORT_ALLOWED = (
    "1-65535, or a named port (1-15 chars of a-z, 0-9 and '-', at least one letter, "
    "no leading, trailing or double '-')"
)


def test_scoped_ipv6_node_local_is_refused(tmp_path: Path) -> None:
    f = values_file(tmp_path, 'dns: {nodeLocal: ["fe80::1%eth0"]}\n')
    assert _error(path=f) == (
        f"{f}: dns.nodeLocal[0]: 'fe80::1%eth0' has a scope (%eth0), which a NetworkPolicy "
        "ipBlock cannot express; allowed: an IP address without a scope, e.g. 169.254.20.10"
    )


def test_scoped_ipv6_metadata_cidr_is_refused(tmp_path: Path) -> None:
    f = values_file(tmp_path, 'metadata: {deny: ["fe80::1%eth0/128"]}\n')
    assert "has a scope (%eth0)" in _error(path=f)


# --- appPorts names --------------------------------------------------------------------------


def test_null_app_name_means_the_default(tmp_path: Path) -> None:
    f = values_file(tmp_path, "appPorts: [{podSelector: {app: web}, ports: [80], name: null}]\n")
    assert load_values(f).app_ports[0].name == "web"


@pytest.mark.parametrize(("raw", "shown"), [("true", "true"), ("8080", "8080")])
def test_app_name_must_be_a_string(tmp_path: Path, raw: str, shown: str) -> None:
    f = values_file(
        tmp_path, f"appPorts: [{{podSelector: {{app: w}}, ports: [80], name: {raw}}}]\n"
    )
    assert _error(path=f) == (
        f"{f}: appPorts[0].name: {shown} is not a string (quote it); "
        "allowed: lowercase letters, digits and '-', <= 46 chars (set name: explicitly)"
    )


# --- keys that cannot be shown as a path ------------------------------------------------------


def test_empty_label_key_names_the_selector(tmp_path: Path) -> None:
    f = values_file(tmp_path, "appPorts: [{podSelector: {'': web}, ports: [80]}]\n")
    line = _error(path=f)
    assert line.startswith(f"{f}: appPorts[0].podSelector: empty label key; allowed: ")
    assert "podSelector.:" not in line


def test_empty_unknown_key_names_its_parent(tmp_path: Path) -> None:
    f = values_file(tmp_path, "namespaces: {'': 1}\n")
    assert _error(path=f).startswith(f"{f}: namespaces: unknown key ''; allowed: include, ")


def test_one_selector_implementation() -> None:
    """The values' selector is the evaluator's LabelSelector (matching included), not a copy."""
    from netiso.policy.selectors import LabelSelector as EvaluatorSelector

    sel = parse_selector("team=a,env notin (dev),!legacy", _At("x"))
    assert isinstance(sel, EvaluatorSelector)
    assert sel.text == "team=a,env notin (dev),!legacy"
    assert sel.matches({"team": "a"})  # NotIn matches a missing key, as the API says
    assert not sel.matches({"team": "a", "env": "dev"})
    assert not sel.matches({"team": "a", "legacy": ""})


@pytest.mark.parametrize("name", ["web-", "-web", "we--b", "8080", "a" * 16, "web\n", "Web"])
def test_bad_port_names_refused_by_values_and_evaluator(name: str) -> None:
    """One rule for a named port (IANA_SVC_NAME) in the values file and in simulate's loader."""
    from netiso.config import _port
    from netiso.policy import PolicyInputError, is_port_name, load_objects

    assert not is_port_name(name)
    if not name.isdigit():
        with pytest.raises(UsageError):
            _port(name, _At("x"))
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"containers": [{"ports": [{"containerPort": 80, "name": name}]}]}}
    with pytest.raises(PolicyInputError):
        load_objects([pod])


@pytest.mark.parametrize("name", ["web", "http-alt", "a1", "x" * 15])
def test_good_port_names_accepted_by_values_and_evaluator(name: str) -> None:
    from netiso.config import _port
    from netiso.policy import is_port_name, load_objects

    assert is_port_name(name)
    assert _port(name, _At("x")) == PortSpec(name, "TCP")
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"containers": [{"ports": [{"containerPort": 80, "name": name}]}]}}
    assert load_objects([pod]).pods[0].ports[0].name == name
