"""Every command's `-o json` output against the JSON Schema shipped in the package.

Real outputs through the real CLI: render (each provider, and --rbac for each role), version and
simulate (given flows, one flow, the streamed matrix) here; apply, status and uninstall in the
lab (tests/cluster/test_cli_contract.py). The README links each schema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from netiso.cli import main
from tests.schemas import COMMANDS, schema, validate
from tests.unit.policy.test_simulate_cli import OBJECTS

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_each_schema_is_a_valid_2020_12_schema_and_linked_from_the_readme(command: str) -> None:
    Draft202012Validator.check_schema(schema(command))
    readme = (REPO / "README.md").read_text()
    assert f"netiso/manifests/schemas/{command}.schema.json" in readme


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-o", "json", "version")
    assert code == 0
    doc = json.loads(out)
    validate("version", doc)
    # The schema holds the contract: a field more is a changed output.
    with pytest.raises(AssertionError, match="Additional properties"):
        validate("version", {**doc, "extra": 1})


@pytest.mark.parametrize("provider", ["generic", "eks", "gke", "aks"])
def test_render_each_provider(capsys: pytest.CaptureFixture[str], provider: str) -> None:
    code, out, err = run(capsys, "render", "-p", provider, "-n", "shop", "-n", "pay", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    validate("render", doc)
    assert len(doc["items"]) >= 8
    broken = copy.deepcopy(doc)
    del broken["items"][0]["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    with pytest.raises(AssertionError, match="items/0/metadata/labels"):
        validate("render", broken)


@pytest.mark.parametrize("role", ["default", "verify", "enable"])
def test_render_rbac(capsys: pytest.CaptureFixture[str], role: str) -> None:
    code, out, err = run(capsys, "render", "--rbac", "--for", role, "-o", "json")
    assert code == 0, err
    validate("render", json.loads(out))


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    return path


def test_simulate_flows_one_flow_and_matrix(capsys: pytest.CaptureFixture[str],
                                            cluster_file: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(yaml.safe_dump({"flows": [
        {"from": "dev/tool", "to": "prod/web", "port": "http", "expect": "allow"},
        {"from": "ip:203.0.113.9", "to": "prod/web", "port": 8080, "protocol": "UDP"},
    ]}))
    code, out, err = run(capsys, "simulate", str(cluster_file), "--flows", str(flows), "-o",
                         "json")
    assert code == 0, err
    validate("simulate", json.loads(out))

    code, out, err = run(capsys, "simulate", str(cluster_file), "--from", "dev/tool", "--to",
                         "prod/db", "-ojson")
    assert code == 0, err
    validate("simulate", json.loads(out))

    # The matrix is streamed chunk by chunk, not built as one dict: its text must still fit.
    code, out, err = run(capsys, "-o", "json", "simulate", str(cluster_file))
    assert code == 0, err
    matrix = json.loads(out)
    validate("simulate", matrix)
    assert matrix["summary"]["total"] == len(matrix["flows"]) > 0
