"""netiso as a ServiceAccount bound to exactly the ClusterRole of `netiso render --rbac`.

Real RBAC on the lab's API server: apply, status and uninstall work with that role and nothing
more; with one verb taken away, the error names the verb, resource and namespace refused. The
same identity is also used through an exec credential plugin and as an in-cluster pod would.
"""

from __future__ import annotations

import copy
import json
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso import kube
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
REPO = Path(__file__).resolve().parents[2]


def netiso(*args: str, kubeconfig: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False, env=env)


def rendered_role() -> dict[str, Any]:
    out = subprocess.run([*NETISO, "render", "--rbac"], capture_output=True, text=True,
                         check=True, timeout=60)
    docs = list(yaml.safe_load_all(out.stdout))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert any(d["kind"] == "ClusterRoleBinding" for d in docs)
    return dict(role)


def bind(lab: LabClient, role: dict[str, Any], namespace: str, sa: str) -> Iterator[str]:
    name = f"netiso-test-{uuid.uuid4().hex[:6]}"
    body = copy.deepcopy(role)
    body["metadata"]["name"] = name
    lab.rbac.create_cluster_role(body)
    lab.rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    })
    try:
        yield name
    finally:
        lab.rbac.delete_cluster_role_binding(name)
        lab.rbac.delete_cluster_role(name)


@pytest.fixture
def netiso_sa(lab: LabClient, namespace: str) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount bound to exactly netiso's ClusterRole."""
    kubeconfig = lab.service_account_kubeconfig(namespace, "netiso")
    yield from (kubeconfig for _ in bind(lab, rendered_role(), namespace, "netiso"))


def test_apply_status_uninstall_with_exactly_the_role(lab: LabClient, namespace: str,
                                                     netiso_sa: Path) -> None:
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "team-policy"}, "spec": {"podSelector": {}}})
    # The identity really is limited: it cannot read secrets.
    denied = lab.kubectl("auth", "can-i", "list", "secrets", "-n", namespace,
                         kubeconfig=netiso_sa, check=False)
    assert denied.stdout.strip() == "no"

    # Nothing wider than the commands use: they list and write, never get or watch.
    verbs = {v for rule in rendered_role()["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "create", "patch", "delete"}

    applied = netiso("-o", "json", "apply", "-n", namespace, kubeconfig=netiso_sa)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["summary"]["created"] >= 4
    dry = netiso("apply", "-n", namespace, "--dry-run", kubeconfig=netiso_sa)
    assert dry.returncode == 0, dry.stderr
    assert "0 would change" in dry.stdout

    status = netiso("-o", "json", "status", "-n", namespace, kubeconfig=netiso_sa)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["inSync"] is True

    gone = netiso("-o", "json", "uninstall", "-n", namespace, kubeconfig=netiso_sa)
    assert gone.returncode == 0, gone.stderr
    left = {p.metadata.name for p in lab.networking.list_namespaced_network_policy(namespace).items}
    assert left == {"team-policy"}


def test_missing_verb_gives_a_clear_error(lab: LabClient, namespace: str) -> None:
    role = rendered_role()
    for rule in role["rules"]:
        if "networkpolicies" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    kubeconfig = lab.service_account_kubeconfig(namespace, "netiso-no-create")
    for _ in bind(lab, role, namespace, "netiso-no-create"):
        out = netiso("apply", "-n", namespace, kubeconfig=kubeconfig)
        assert out.returncode == 1
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("netiso: error: ")
        assert f"system:serviceaccount:{namespace}:netiso-no-create" in last
        assert "cannot create networkpolicies.networking.k8s.io" in last
        assert f"in namespace '{namespace}'" in last
        assert "netiso render --rbac" in last
        assert "Traceback" not in out.stderr


def _plugin(path: Path, token: str) -> Path:
    path.write_text(
        "#!/bin/sh\ncat <<'EOF'\n" + json.dumps({
            "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "status": {"token": token}}) + "\nEOF\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_exec_plugin_and_in_cluster_identity(lab: LabClient, namespace: str, netiso_sa: Path,
                                             tmp_path: Path) -> None:
    sa_cfg = yaml.safe_load(netiso_sa.read_text())
    token = sa_cfg["users"][0]["user"]["token"]
    cluster = sa_cfg["clusters"][0]["cluster"]

    # 1. An exec credential plugin (the mechanism of aws eks get-token, kubelogin, ...).
    plugin = _plugin(tmp_path / "token-plugin", token)
    exec_cfg = copy.deepcopy(sa_cfg)
    exec_cfg["users"][0]["user"] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
        "interactiveMode": "Never"}}
    (tmp_path / "exec.kubeconfig").write_text(yaml.safe_dump(exec_cfg))
    out = netiso("-o", "json", "status", "-n", namespace, kubeconfig=tmp_path / "exec.kubeconfig")
    assert out.returncode == 0, out.stderr

    # 2. In-cluster: no kubeconfig, the pod environment and the mounted ServiceAccount files.
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(token)
    ca = cluster.get("certificate-authority-data")
    import base64

    if ca:
        (sa_dir / "ca.crt").write_bytes(base64.b64decode(ca))
    else:
        (sa_dir / "ca.crt").write_bytes(Path(cluster["certificate-authority"]).read_bytes())
    host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
           "KUBECONFIG": str(tmp_path / "none")}
    with kube.connect(environ=env, in_cluster_dir=sa_dir) as k:
        assert k.source.in_cluster
        assert k.list_network_policies(namespace) == []
        with pytest.raises(kube.Forbidden) as err:
            k.list_objects(kube.resource_type("v1", "ServiceAccount"), namespace)
        assert err.value.verb == "list"
