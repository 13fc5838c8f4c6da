"""read_cluster_ref: the kubeconfig facts detection uses, by kubectl's rules, without a network."""

from __future__ import annotations

from pathlib import Path

import yaml

from netiso.kube import ClusterRef, read_cluster_ref


def write(path: Path, contexts: list[tuple[str, str, str]], clusters: dict[str, str],
          users: dict[str, dict[str, object]], current: str | None = None) -> str:
    doc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "contexts": [{"name": n, "context": {"cluster": c, "user": u}} for n, c, u in contexts],
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return str(path)


EKS_EXEC: dict[str, object] = {"exec": {
    "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
    "args": ["--region", "us-west-2", "eks", "get-token", "--cluster-name", "prod"],
}}


def test_current_context_with_exec_plugin(tmp_path: Path) -> None:
    arn = "arn:aws:eks:us-west-2:123456789012:cluster/prod"
    path = write(tmp_path / "config", [(arn, arn, arn), ("lab", "lab", "admin")],
                 {arn: "https://ABC.gr7.us-west-2.eks.amazonaws.com", "lab": "https://10.0.0.1"},
                 {arn: EKS_EXEC, "admin": {"token": "x"}}, current=arn)
    assert read_cluster_ref(path, None, environ={}) == ClusterRef(
        context=arn, cluster=arn, server="https://ABC.gr7.us-west-2.eks.amazonaws.com",
        exec_command="aws",
        exec_args=("--region", "us-west-2", "eks", "get-token", "--cluster-name", "prod"))
    # --context picks another one; a token user has no exec plugin.
    assert read_cluster_ref(path, "lab", environ={}) == ClusterRef(
        context="lab", cluster="lab", server="https://10.0.0.1")


def test_kubeconfig_list_first_file_wins(tmp_path: Path) -> None:
    # The first file names user "u" in its context but leaves it to the second to define.
    first = write(tmp_path / "a", [("ctx", "c1", "u")], {"c1": "https://first"}, {},
                  current="ctx")
    second = write(tmp_path / "b", [("ctx", "c2", "u"), ("other", "c2", "u")],
                   {"c1": "https://second", "c2": "https://c2"}, {"u": EKS_EXEC}, current="other")
    ref = read_cluster_ref(None, None, environ={"KUBECONFIG": f"{first}:{second}"})
    # current-context from the first file that sets it; each name from the first file defining it.
    assert (ref.context, ref.cluster, ref.server, ref.exec_command) == (
        "ctx", "c1", "https://first", "aws")


def test_in_cluster_and_nothing(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": "fd00::1",
           "KUBERNETES_SERVICE_PORT": "443"}
    assert read_cluster_ref(None, None, environ=env, in_cluster_dir=sa) == ClusterRef(
        context="in-cluster", server="https://[fd00::1]:443", in_cluster=True)
    assert read_cluster_ref(None, None, environ={"KUBECONFIG": str(tmp_path / "missing")},
                            in_cluster_dir=sa) == ClusterRef()
