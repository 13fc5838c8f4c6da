"""The lab's version pins live in several files; they must name the same versions.

A pin bumped in one place only would build one version and test against (or document) another:
build.py's constants key the binary cache, the go.mod files decide what is compiled, scripts/test
and the bundle schema test download the Kubernetes OpenAPI spec of "the lab's" version, and the
lab README states the versions.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.lab import build

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / "tests" / "lab" / "tools"


def _require(gomod: Path, module: str) -> str:
    """The version ``gomod`` requires of ``module`` (direct or in a require block)."""
    text = gomod.read_text()
    found: list[str] = re.findall(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    assert len(found) == 1, f"{gomod}: expected one requirement of {module}, found {found}"
    return found[0]


def test_go_modules_build_the_versions_build_py_names() -> None:
    assert _require(TOOLS / "go.mod", "k8s.io/kubernetes") == build.K8S_VERSION
    assert _require(TOOLS / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3") == build.ETCD_VERSION
    assert (
        _require(TOOLS / "kube-router" / "go.mod", "github.com/cloudnativelabs/kube-router/v2")
        == build.KUBE_ROUTER_VERSION
    )


def test_staging_modules_are_replaced_by_the_matching_minor() -> None:
    # k8s.io/kubernetes v1.X.Y goes with its staging modules at v0.X.Y.
    staging = "v0." + build.K8S_VERSION.removeprefix("v1.")
    replaced = re.findall(r"^\s*k8s\.io/\S+\s+=>\s+k8s\.io/\S+\s+(v\S+)", (TOOLS / "go.mod")
                          .read_text(), re.M)
    assert replaced, "tools/go.mod replaces no staging module"
    assert set(replaced) == {staging}


def test_scripts_and_schema_test_default_to_the_lab_pin() -> None:
    script = (REPO / "scripts" / "test").read_text()
    assert re.findall(r"NETISO_K8S_VERSION:-(v[0-9.]+)", script) == [build.K8S_VERSION]
    schema = (REPO / "tests" / "unit" / "test_bundle_schema.py").read_text()
    assert re.findall(r'"NETISO_K8S_VERSION",\s*"(v[0-9.]+)"', schema) == [build.K8S_VERSION]


def test_lab_readme_states_the_pinned_versions() -> None:
    readme = (REPO / "tests" / "lab" / "README.md").read_text()
    for version in (build.K8S_VERSION, build.ETCD_VERSION, build.KUBE_ROUTER_VERSION,
                    build.TIGERA_OPERATOR_VERSION, build.CALICO_VERSION, build.LIBBPF_VERSION):
        assert f"| {version} |" in readme, version
