"""`netiso render` end to end through the real process: stdout is the bundle and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netiso.bundle import MANAGED_BY_LABEL, render_bundle, to_yaml
from netiso.config import load_values


def netiso(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from netiso.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_render_production() -> None:
    proc = netiso("render", "--namespace", "production")
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["metadata"]["name"] for d in docs] == [
        "netiso-allow-app-web-server",
        "netiso-allow-same-namespace",
        "netiso-default-deny-ingress",
        "netiso-deny-metadata-egress",
    ]
    assert all(d["metadata"]["labels"][MANAGED_BY_LABEL] == "netiso" for d in docs)
    assert proc.stdout.startswith("---\napiVersion: networking.k8s.io/v1\n")


def test_render_is_byte_for_byte_stable() -> None:
    args = ("render", "-p", "eks", "-n", "b", "-n", "a")
    first, second = netiso(*args), netiso(*args)
    assert first.returncode == 0
    assert first.stdout == second.stdout
    reordered = netiso("render", "-p", "eks", "-n", "a", "-n", "b")
    assert reordered.stdout == first.stdout


def test_render_matches_the_library() -> None:
    proc = netiso("render", "-p", "aks", "-n", "production")
    vals = load_values(None, provider="aks", namespaces=["production"])
    assert proc.stdout == to_yaml(render_bundle(vals, ["production"]))


def test_render_json_is_one_list_document() -> None:
    proc = netiso("render", "-n", "production", "-o", "json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "List"
    assert doc["apiVersion"] == "v1"
    assert len(doc["items"]) == 4
    assert doc["items"] == list(yaml.safe_load_all(netiso("render", "-n", "production").stdout))


def test_render_yaml_output_is_the_same_as_default() -> None:
    assert netiso("-o", "yaml", "render", "-n", "p").stdout == netiso("render", "-n", "p").stdout


def test_gke_warning_goes_to_stderr_only() -> None:
    proc = netiso("render", "-p", "gke", "-n", "production")
    assert proc.returncode == 0
    assert "Workload Identity" in proc.stderr
    assert "warning" in proc.stderr
    # stdout holds YAML only (the warning is also an annotation on the object)
    docs = list(yaml.safe_load_all(proc.stdout))
    assert len(docs) == 4
    quiet = netiso("-q", "render", "-p", "gke", "-n", "production")
    assert "Workload Identity" in quiet.stderr  # -q keeps warnings


def test_render_from_values_file(tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text(
        "namespaces: {include: [shop, blog]}\n"
        "allowFromNamespaces: [ingress-nginx]\n"
        "policies: {defaultDenyEgress: true}\n"
    )
    proc = netiso("render", "--values", str(f))
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert sorted({d["metadata"]["namespace"] for d in docs}) == ["blog", "shop"]
    names = {d["metadata"]["name"] for d in docs}
    assert "netiso-allow-from-namespaces" in names
    assert "netiso-default-deny-egress" in names
    assert "netiso-deny-metadata-egress" not in names
    assert "not rendered" in proc.stderr  # says why the metadata policy is absent


def test_quiet_hides_notes_but_not_results(tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text("policies: {defaultDenyEgress: true}\n")
    loud = netiso("render", "-n", "shop", "-f", str(f))
    quiet = netiso("render", "-n", "shop", "-f", str(f), "-q")
    assert "not rendered" in loud.stderr
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout


def _rbac_objects(role: str = "default") -> list[dict[str, object]]:
    from importlib.resources import files

    rbac = files("netiso.manifests").joinpath("rbac")
    text = rbac.joinpath("identity.yaml").read_text() + "---\n" + rbac.joinpath(
        f"{role}.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_render_rbac_yaml_and_json() -> None:
    plain = netiso("render", "--rbac")
    assert plain.returncode == 0, plain.stderr
    assert [d for d in yaml.safe_load_all(plain.stdout) if d] == _rbac_objects()
    as_json = netiso("render", "--rbac", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc == {"apiVersion": "v1", "kind": "List", "items": _rbac_objects()}
    assert "ClusterRole" in {item["kind"] for item in doc["items"]}


def test_render_rbac_refuses_bundle_options() -> None:
    proc = netiso("render", "--rbac", "-n", "p", "-p", "eks")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "netiso: error: --rbac cannot be combined with --provider, --namespace; "
        "allowed: --rbac alone, with -o json for one JSON List "
        "(the RBAC objects do not depend on the bundle's options)\n"
    )


@pytest.mark.parametrize("role", ["default", "verify", "enable"])
def test_render_rbac_for_each_role_applies_on_a_fresh_cluster(role: str) -> None:
    argv = ("render", "--rbac") if role == "default" else ("render", "--rbac", "--for", role)
    proc = netiso(*argv)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs == _rbac_objects(role)
    kinds = [d["kind"] for d in docs]
    # The namespace first, so `kubectl apply -f -` creates it before the ServiceAccount in it.
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert docs[0]["metadata"]["name"] == docs[1]["metadata"]["namespace"] == "netiso-system"
    role_name = docs[2]["metadata"]["name"]
    assert role_name == ("netiso" if role == "default" else f"netiso-{role}")
    assert docs[3]["roleRef"]["name"] == role_name
    assert docs[3]["subjects"] == [{"kind": "ServiceAccount", "name": "netiso",
                                    "namespace": "netiso-system"}]
    for rule in docs[2]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"], rule


def test_the_day_to_day_role_deletes_nothing_but_networkpolicies() -> None:
    rules = _rbac_objects()[2]["rules"]
    assert isinstance(rules, list)
    deletes = {r for rule in rules if "delete" in rule["verbs"] for r in rule["resources"]}
    assert deletes == {"networkpolicies"}
    verbs = {v for rule in rules for v in rule["verbs"]}
    assert verbs == {"list", "create", "patch", "delete"}


def test_for_without_rbac_is_a_usage_error() -> None:
    proc = netiso("render", "-n", "x", "--for", "verify")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("netiso: error: --for needs --rbac; "
                           "allowed: netiso render --rbac --for ROLE\n")
