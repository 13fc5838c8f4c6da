"""The Kubernetes seam without a cluster: kubeconfig rules, exec plugins, error translation.

The cluster-facing half (real apply, RBAC, in-cluster, exec against a real API server) is in
tests/cluster; here only what needs no API server.
"""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso import kube
from netiso.errors import ExitCode, NetisoError, OperationFailed, UsageError
from tests.lab import pki


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(path: Path, *, clusters: dict[str, str], contexts: dict[str, tuple[str, str]],
                users: dict[str, dict[str, Any]] | None = None,
                current: str | None = None) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in clusters.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": u}}
                     for n, (c, u) in contexts.items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def _token_user(token: str) -> dict[str, Any]:
    return {"token": token}


def test_kubeconfig_list_first_file_wins(tmp_path: Path) -> None:
    a = _kubeconfig(tmp_path / "a", clusters={"shared": "http://127.0.0.1:1001"},
                    contexts={"ctx-a": ("shared", "u")}, users={"u": _token_user("A")},
                    current="ctx-a")
    b = _kubeconfig(tmp_path / "b", clusters={"shared": "http://127.0.0.1:2002",
                                              "only-b": "http://127.0.0.1:3003"},
                    contexts={"ctx-b": ("only-b", "u")}, users={"u": _token_user("B")},
                    current="ctx-b")
    env = {"KUBECONFIG": f"{a}:{tmp_path / 'missing'}:{b}"}
    with kube.connect(environ=env) as k:
        # kubectl: the first file that sets current-context wins; the client alone would
        # pick the last one.
        assert k.context == "ctx-a"
        assert k.server == "http://127.0.0.1:1001"
        assert k._headers(None)["authorization"] == "Bearer A"
        assert k.source.files == [str(a), str(b)]
    with kube.connect(context="ctx-b", environ=env) as k:
        assert k.server == "http://127.0.0.1:3003"
        assert k._headers(None)["authorization"] == "Bearer A"  # user "u" from the first file


def test_explicit_kubeconfig_beats_environment(tmp_path: Path) -> None:
    a = _kubeconfig(tmp_path / "a", clusters={"c": "http://127.0.0.1:1001"},
                    contexts={"x": ("c", "u")}, users={"u": _token_user("A")}, current="x")
    b = _kubeconfig(tmp_path / "b", clusters={"c": "http://127.0.0.1:2002"},
                    contexts={"x": ("c", "u")}, users={"u": _token_user("B")}, current="x")
    with kube.connect(str(b), environ={"KUBECONFIG": str(a)}) as k:
        assert k.server == "http://127.0.0.1:2002"


def test_explicit_kubeconfig_is_one_file_even_with_a_colon(tmp_path: Path) -> None:
    # kubectl splits only $KUBECONFIG; --kubeconfig names one file, ':' included.
    a = _kubeconfig(tmp_path / "a", clusters={"c": "http://127.0.0.1:1001"},
                    contexts={"x": ("c", "u")}, users={"u": _token_user("A")}, current="x")
    _kubeconfig(tmp_path / "b", clusters={"c": "http://127.0.0.1:2002"},
                contexts={"x": ("c", "u")}, users={"u": _token_user("B")}, current="x")
    joined = f"{a}:{tmp_path / 'b'}"
    assert kube.kubeconfig_paths(joined, {}) == [joined]
    with pytest.raises(UsageError) as err:
        kube.connect(joined, environ={}, in_cluster_dir=tmp_path / "no-sa")
    assert f"kubeconfig not found: {joined}" in err.value.one_line()
    odd = _kubeconfig(tmp_path / "odd:name", clusters={"c": "http://127.0.0.1:3003"},
                      contexts={"x": ("c", "u")}, users={"u": _token_user("O")}, current="x")
    with kube.connect(str(odd), environ={}) as k:
        assert k.server == "http://127.0.0.1:3003"
        assert k.source.files == [str(odd)]
    assert kube.kubeconfig_paths(None, {"KUBECONFIG": joined}) == [str(a), str(tmp_path / "b")]


def test_empty_kubeconfig_in_the_list_is_an_empty_config(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    comments = tmp_path / "comments"
    comments.write_text("# nothing here yet\n")
    good = _kubeconfig(tmp_path / "good", clusters={"c": "http://127.0.0.1:1001"},
                       contexts={"x": ("c", "u")}, users={"u": _token_user("G")}, current="x")
    with kube.connect(environ={"KUBECONFIG": f"{empty}:{comments}:{good}"}) as k:
        assert k.server == "http://127.0.0.1:1001"
        assert k.source.files == [str(good)]
    with pytest.raises(UsageError) as err:
        kube.connect(environ={"KUBECONFIG": f"{empty}:{comments}"},
                     in_cluster_dir=tmp_path / "no-sa")
    assert "holds no configuration" in err.value.one_line()
    with pytest.raises(UsageError) as err:
        kube.connect(str(empty), environ={}, in_cluster_dir=tmp_path / "no-sa")
    assert "holds no configuration" in err.value.one_line()


def test_relative_paths_resolve_against_their_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    # A real CA: what a kubeconfig names is checked before any request (a file holding no
    # certificate is a usage error, see test_kube_kubeconfig_faults.py).
    (sub / "ca.crt").write_bytes(pki.ensure(tmp_path / "pki").ca_cert.read_bytes())
    doc = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1",
                                                "certificate-authority": "ca.crt"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "current-context": "x",
    }
    (sub / "config").write_text(yaml.safe_dump(doc))
    with kube.connect(str(sub / "config"), environ={}) as k:
        assert k._api.configuration.ssl_ca_cert == str(sub / "ca.crt")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing-explicit", "kubeconfig not found"),
        ("no-config", "no kubeconfig found"),
        ("unknown-context", "context 'nope' is not in"),
        ("no-current", "sets no current-context"),
        ("bad-yaml", "not readable YAML"),
    ],
)
def test_kubeconfig_problems_are_usage_errors(tmp_path: Path, setup: str, fragment: str) -> None:
    good = _kubeconfig(tmp_path / "good", clusters={"c": "http://127.0.0.1:1"},
                       contexts={"x": ("c", "u")}, users={"u": _token_user("t")}, current="x")
    kwargs: dict[str, Any] = {"environ": {}, "in_cluster_dir": tmp_path / "no-sa"}
    if setup == "missing-explicit":
        kwargs["kubeconfig"] = str(tmp_path / "absent")
    elif setup == "no-config":
        kwargs["environ"] = {"KUBECONFIG": str(tmp_path / "absent")}
    elif setup == "unknown-context":
        kwargs.update(kubeconfig=str(good), context="nope")
    elif setup == "no-current":
        bare = _kubeconfig(tmp_path / "bare", clusters={"c": "http://127.0.0.1:1"},
                           contexts={"x": ("c", "u")}, users={"u": _token_user("t")})
        kwargs["kubeconfig"] = str(bare)
    else:
        (tmp_path / "bad").write_text("clusters: [\n")
        kwargs["kubeconfig"] = str(tmp_path / "bad")
    with pytest.raises(UsageError) as err:
        kube.connect(**kwargs)
    assert fragment in err.value.one_line()
    assert err.value.exit_code is ExitCode.USAGE


def _exec_user(script: Path) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                     "command": str(script), "interactiveMode": "Never"}}


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_exec_plugin_token_is_used(tmp_path: Path) -> None:
    plugin = _script(tmp_path / "plugin", """cat <<'EOF'
{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
 "status": {"token": "from-the-plugin"}}
EOF
""")
    cfg = _kubeconfig(tmp_path / "cfg", clusters={"c": "http://127.0.0.1:1"},
                      contexts={"x": ("c", "p")}, users={"p": _exec_user(plugin)}, current="x")
    with kube.connect(str(cfg), environ={}) as k:
        assert k._headers(None)["authorization"] == "Bearer from-the-plugin"


def test_failing_exec_plugin_is_named(tmp_path: Path) -> None:
    plugin = _script(tmp_path / "aws-ish", "echo 'no credentials configured' >&2\nexit 3\n")
    cfg = _kubeconfig(tmp_path / "cfg", clusters={"c": "http://127.0.0.1:1"},
                      contexts={"x": ("c", "p")}, users={"p": _exec_user(plugin)}, current="x")
    with pytest.raises(OperationFailed) as err:
        kube.connect(str(cfg), environ={})
    line = err.value.one_line()
    assert "exec credential plugin" in line
    assert "aws-ish" in line
    assert "'x'" in line


def test_in_cluster_when_no_kubeconfig(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_text("ca")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
           "KUBECONFIG": str(tmp_path / "absent")}
    with kube.connect(environ=env, in_cluster_dir=sa) as k:
        assert k.source.in_cluster
        assert k.server == "https://10.96.0.1:443"
        assert k._headers(None)["authorization"].lower() == "bearer pod-token"


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    port = _free_port()
    cfg = _kubeconfig(tmp_path / "cfg", clusters={"c": f"http://127.0.0.1:{port}"},
                      contexts={"x": ("c", "u")}, users={"u": _token_user("t")}, current="x")
    start = time.monotonic()
    with kube.connect(str(cfg), environ={}) as k, pytest.raises(kube.Unreachable) as err:
        k.list_namespaces()
    assert time.monotonic() - start < 10
    line = err.value.one_line()
    assert f"http://127.0.0.1:{port}" in line
    assert "connection refused" in line
    assert "list namespaces" in line
    assert err.value.exit_code is ExitCode.FAILED


# --- translation of API errors (bodies as the API server sends them) -------------------------

REQ = kube.Request("patch", kube.NETWORK_POLICY, "team-a", "netiso-default-deny-ingress")


def test_403_names_user_verb_resource_namespace() -> None:
    body = {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
        "code": 403,
        "message": 'networkpolicies.networking.k8s.io "netiso-default-deny-ingress" is '
                   'forbidden: User "system:serviceaccount:ci:netiso" cannot create resource '
                   '"networkpolicies" in API group "networking.k8s.io" in the namespace "team-a"',
        "details": {"name": "netiso-default-deny-ingress", "group": "networking.k8s.io",
                    "kind": "networkpolicies"},
    }
    err = kube.translate_status(403, body, REQ, "https://api:6443")
    assert isinstance(err, kube.Forbidden)
    # The authorizer refused "create" (the create half of an apply), not "patch".
    assert (err.verb, err.resource, err.namespace) == (
        "create", "networkpolicies.networking.k8s.io", "team-a")
    line = err.one_line()
    assert "system:serviceaccount:ci:netiso" in line
    assert "cannot create networkpolicies.networking.k8s.io" in line
    assert "'team-a'" in line
    assert "netiso render --rbac" in line


def test_403_at_cluster_scope_is_rbac() -> None:
    req = kube.Request("list", kube.NAMESPACE)
    body = {"reason": "Forbidden", "code": 403,
            "message": 'namespaces is forbidden: User "jane" cannot list resource "namespaces" '
                       'in API group "" at the cluster scope'}
    err = kube.translate_status(403, body, req, "https://api:6443")
    assert isinstance(err, kube.Forbidden)
    assert err.one_line().startswith("forbidden as jane: cannot list namespaces (cluster-scoped)")


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ('networkpolicies "netiso-default-deny-ingress" is forbidden: exceeded quota: np-quota, '
         "requested: count/networkpolicies.networking.k8s.io=1, used: "
         "count/networkpolicies.networking.k8s.io=2, limited: "
         "count/networkpolicies.networking.k8s.io=2", "not a permissions problem"),
        ('networkpolicies "netiso-default-deny-ingress" is forbidden: unable to create new '
         "content in namespace team-a because it is being terminated", "being deleted"),
        ('admission webhook "policy.example.com" denied the request: NetworkPolicies must '
         "carry an owner annotation", "not a permissions problem"),
    ],
)
def test_other_403s_keep_the_servers_words(message: str, hint: str) -> None:
    body = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": message}
    err = kube.translate_status(403, body, REQ, "https://api:6443")
    assert not isinstance(err, kube.Forbidden)
    assert isinstance(err, kube.Denied)
    assert err.status == 403
    line = err.one_line()
    assert message in line
    assert "patch networkpolicies.networking.k8s.io/netiso-default-deny-ingress" in line
    assert hint in line
    assert "netiso render --rbac" not in line
    assert "cannot" not in line.split(":", 1)[0]


def test_401_is_unauthorized() -> None:
    err = kube.translate_status(401, {"reason": "Unauthorized", "message": "Unauthorized"},
                                REQ, "https://api:6443")
    assert isinstance(err, kube.Unauthorized)
    assert "https://api:6443" in err.one_line()


def test_missing_crd_names_the_component() -> None:
    req = kube.Request("list", kube.resource_type("cilium.io/v2", "CiliumNetworkPolicy"))
    body = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": "the server could not find the requested resource", "details": {}}
    err = kube.translate_status(404, body, req, "https://api:6443")
    assert isinstance(err, kube.MissingResourceType)
    assert err.exit_code is ExitCode.PRECONDITION
    assert "Cilium" in err.one_line()
    assert "ciliumnetworkpolicies.cilium.io" in err.one_line()


def test_named_404_is_not_found() -> None:
    body = {"reason": "NotFound", "code": 404, "message": 'namespaces "gone" not found',
            "details": {"name": "gone", "kind": "namespaces"}}
    err = kube.translate_status(404, body, REQ, "https://api:6443")
    assert isinstance(err, kube.NotFound)


def test_apply_conflict_names_the_other_manager() -> None:
    body = {
        "kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": 'Apply failed with 1 conflict: conflict with "kubectl-edit" using '
                   "networking.k8s.io/v1: .spec.podSelector",
        "details": {"causes": [{"reason": "FieldManagerConflict",
                                "message": 'conflict with "kubectl-edit" using '
                                           "networking.k8s.io/v1",
                                "field": ".spec.podSelector"}]},
    }
    err = kube.translate_status(409, body, REQ, "https://api:6443")
    assert isinstance(err, kube.ApplyConflict)
    assert err.managers == ["kubectl-edit"]
    assert err.fields == [".spec.podSelector"]
    assert "--force-conflicts" in err.one_line()


def test_unknown_kind_is_a_clear_usage_error() -> None:
    with pytest.raises(NetisoError) as err:
        kube.resource_type("example.com/v1", "Widget")
    assert "Widget" in err.value.one_line()


def test_resource_paths() -> None:
    assert kube.NETWORK_POLICY.path("a", "b") == (
        "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/b")
    assert kube.NETWORK_POLICY.path() == "/apis/networking.k8s.io/v1/networkpolicies"
    assert kube.NAMESPACE.path(name="x") == "/api/v1/namespaces/x"
    assert kube.POD.path("ns") == "/api/v1/namespaces/ns/pods"


def test_strip_server_fields_keeps_intent() -> None:
    live = {"apiVersion": "v1", "kind": "X", "status": {"a": 1},
            "metadata": {"name": "n", "uid": "u", "resourceVersion": "9", "generation": 2,
                         "managedFields": [{"manager": "netiso"}], "labels": {"a": "b"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "creationTimestamp": "t"},
            "spec": {"x": 1}}
    assert kube.strip_server_fields(live) == {
        "apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"x": 1}}
    assert kube.field_managers(live) == ["netiso"]
