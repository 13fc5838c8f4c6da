"""`netiso simulate`: the command-line and JSON contract of issue 3, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso.cli import main

from .policy_builders import netpol, ns, pod, sel

OBJECTS = [
    ns("prod", env="prod"),
    ns("dev"),
    pod("prod/web", "10.0.1.1", [{"containerPort": 8080, "name": "http"}], app="web"),
    pod("prod/db", "10.0.1.2", [{"containerPort": 5432}], app="db"),
    pod("dev/tool", "10.0.2.2", app="tool"),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "prod"}},
    netpol("prod/deny", {"podSelector": {}}),
    netpol("prod/web", {"podSelector": sel(app="web"), "ingress": [
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}),
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    return path


def write_flows(tmp_path: Path, flows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(yaml.safe_dump({"flows": flows}))
    return path


def test_flows_json_schema_and_order(capsys: pytest.CaptureFixture[str], cluster_file: Path,
                                     tmp_path: Path) -> None:
    """JSON: "{flows: [{from, to, port, protocol, allowed, expected, ok, egress: {allowed,
    isolated, policies}, ingress: {same}}], summary: {total, allowed, denied, mismatches}},
    flows in the order given"; exit 0 when every expect holds."""
    flows = write_flows(tmp_path, [
        {"from": "dev/tool", "to": "prod/web", "port": "http", "expect": "allow"},
        {"from": "dev/tool", "to": "prod/db", "port": 5432, "expect": "deny"},
        {"from": "ip:203.0.113.9", "to": "prod/web", "port": 8080, "protocol": "UDP"},
    ])
    code, out, err = run(capsys, "-o", "json", "simulate", str(cluster_file), "--flows",
                         str(flows))
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"flows", "summary"}
    keys = {"from", "to", "port", "protocol", "allowed", "expected", "ok", "egress", "ingress"}
    assert all(set(f) == keys for f in doc["flows"])
    assert all(set(f[s]) == {"allowed", "isolated", "policies"}
               for f in doc["flows"] for s in ("egress", "ingress"))
    first, second, third = doc["flows"]
    assert (first["from"], first["to"], first["port"], first["protocol"]) == (
        "dev/tool", "prod/web", 8080, "TCP")
    assert first["allowed"] is True and first["expected"] == "allow" and first["ok"] is True
    assert first["ingress"] == {"allowed": True, "isolated": True,
                                "policies": ["prod/deny", "prod/web"]}
    assert first["egress"] == {"allowed": True, "isolated": False, "policies": []}
    assert second["allowed"] is False and second["ok"] is True
    assert third["to"] == "prod/web" and third["expected"] is None and third["ok"] is None
    assert third["allowed"] is False and third["protocol"] == "UDP"
    assert doc["summary"] == {"total": 3, "allowed": 1, "denied": 2, "mismatches": 0}
    assert "skipped" in err and "Service" in err  # other kinds: a note on stderr


def test_failed_expectation_exits_3(capsys: pytest.CaptureFixture[str], cluster_file: Path,
                                    tmp_path: Path) -> None:
    """"Exit: 0; 3 when an `expect` does not hold" (the result is still printed)."""
    flows = write_flows(tmp_path, [
        {"from": "dev/tool", "to": "prod/db", "port": 5432, "expect": "allow"}])
    code, out, err = run(capsys, "simulate", str(cluster_file), "--flows", str(flows),
                         "-o", "json")
    assert code == 3
    doc = json.loads(out)
    assert doc["flows"][0]["ok"] is False and doc["summary"]["mismatches"] == 1
    assert "expectations do not hold" in err


@pytest.mark.parametrize(("args", "needle"), [
    (["--from", "dev/tool", "--to", "prod/ghost", "--port", "80"], "unknown pod prod/ghost"),
    (["--from", "dev/tool", "--to", "ip:999.1.1.1", "--port", "80"], "not an IP address"),
    (["--from", "dev/tool", "--to", "prod/db", "--port", "http"], "no port named 'http'"),
    (["--from", "dev/tool"], "--from and --to go together"),
    (["--from", "dev/tool", "--to", "prod/db", "--protocol", "ICMP"], "not TCP, UDP or SCTP"),
])
def test_bad_flow_input_exits_2(capsys: pytest.CaptureFixture[str], cluster_file: Path,
                                args: list[str], needle: str) -> None:
    """"2 for bad input (unknown pod, bad IP, ...: one line ...)"."""
    code, out, err = run(capsys, "simulate", str(cluster_file), *args)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("netiso: error:")]
    assert len(lines) == 1 and needle in lines[0]


def test_bad_file_exits_2_naming_file_and_object(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """"unparseable file: one line naming the file and the object"."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(netpol("team/broken", {"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "nonsense"}}]}]})))
    code, _, err = run(capsys, "simulate", str(bad))
    assert code == 2
    assert f"{bad}: NetworkPolicy team/broken: spec.ingress[0].from[0].ipBlock.cidr" in err
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(netpol("team/typo", {"podSelector": {}, "ingres": [{}]})))
    code, out, err = run(capsys, "simulate", str(typo))
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"netiso: error: {typo}: NetworkPolicy team/typo: spec: unknown field 'ingres'; "
        "allowed: podSelector, policyTypes, ingress, egress")
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("kind: [unclosed\n")
    code, _, err = run(capsys, "simulate", str(garbage))
    assert code == 2 and f"{garbage}: not valid YAML or JSON" in err
    code, _, err = run(capsys, "simulate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: cannot read" in err
    # JSON nested deeper than the decoder recurses is bad input too, not an internal error.
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run(capsys, "simulate", str(deep))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{deep}: not valid YAML or JSON" in err


def test_flows_file_error_names_the_flow(capsys: pytest.CaptureFixture[str], cluster_file: Path,
                                         tmp_path: Path) -> None:
    flows = write_flows(tmp_path, [{"from": "dev/tool", "to": "prod/db", "port": 1},
                                   {"from": "dev/tool", "to": "nope/x", "port": 1}])
    code, _, err = run(capsys, "simulate", str(cluster_file), "--flows", str(flows))
    assert code == 2 and "flows[1] (dev/tool -> nope/x port 1): unknown pod nope/x" in err


def test_single_flow_table_explains(capsys: pytest.CaptureFixture[str],
                                    cluster_file: Path) -> None:
    """"Table output explains each verdict: which policies isolate each side and which rule
    allowed it"."""
    code, out, _ = run(capsys, "--no-color", "simulate", str(cluster_file), "--from",
                       "dev/tool", "--to", "prod/web")
    assert code == 0
    assert "ALLOW  dev/tool -> prod/web  TCP/8080" in out
    assert "isolated by prod/deny, prod/web; allowed by prod/web ingress[0]" in out
    assert "egress of dev/tool: not isolated" in out


def test_matrix_over_declared_ports(capsys: pytest.CaptureFixture[str],
                                    cluster_file: Path) -> None:
    """"With neither --flows nor --from/--to: the whole pod x pod matrix over each
    destination's declared ports (table form: a compact truth table, `.` allowed, `X` denied)"."""
    code, out, _ = run(capsys, "-o", "json", "simulate", str(cluster_file))
    assert code == 0
    doc = json.loads(out)
    cells = {(f["from"], f["to"], f["port"]): f["allowed"] for f in doc["flows"]}
    assert set(cells) == {(s, d, p) for s in ("prod/web", "prod/db", "dev/tool")
                          for d, p in (("prod/web", 8080), ("prod/db", 5432))}
    assert cells[("dev/tool", "prod/web", 8080)] is True
    assert cells[("prod/web", "prod/db", 5432)] is False
    assert cells[("prod/db", "prod/db", 5432)] is True  # a pod cannot block access to itself
    assert doc["summary"] == {"total": 6, "allowed": 4, "denied": 2, "mismatches": 0}

    code, out, _ = run(capsys, "--no-color", "simulate", str(cluster_file))
    lines = out.splitlines()
    assert "TCP/5432: rows = from, columns = to ('.' allowed, 'X' denied)" in lines
    assert "dev/tool  X" in lines and "dev/tool  ." in lines


def test_empty_flows_file_evaluates_no_flows(capsys: pytest.CaptureFixture[str],
                                             cluster_file: Path, tmp_path: Path) -> None:
    """"for the flows in a file, for one flow, or (with neither) for the whole pod x pod
    matrix": a flows file with no flows is zero flows, not the matrix."""
    flows = write_flows(tmp_path, [])
    code, out, err = run(capsys, "-o", "json", "simulate", str(cluster_file), "--flows",
                         str(flows))
    assert code == 0, err
    assert json.loads(out) == {"flows": [], "summary": {"total": 0, "allowed": 0, "denied": 0,
                                                        "mismatches": 0}}
    code, out, _ = run(capsys, "--no-color", "simulate", str(cluster_file), "--flows", str(flows))
    assert code == 0 and out.splitlines() == ["0 flows: 0 allowed, 0 denied, 0 mismatches"]


@pytest.mark.parametrize("flow", [
    {"from": "dev/tool", "to": "prod/db", "port": 5432, "expcet": "allow"},
    {"from": "dev/tool", "to": "prod/db", "port": 5432, "expect": "deny", "proto": "UDP"},
])
def test_unknown_flow_fields_exit_2(capsys: pytest.CaptureFixture[str], cluster_file: Path,
                                    tmp_path: Path, flow: dict[str, Any]) -> None:
    """"FLOWS: {flows: [{from, to, port, protocol?, expect?: allow|deny}]}" — nothing else: a
    misspelt `expect` would silently drop a CI assertion. Exit 2 naming the file and the flow."""
    flows = write_flows(tmp_path, [{"from": "dev/tool", "to": "prod/web", "port": 8080}, flow])
    code, out, err = run(capsys, "simulate", str(cluster_file), "--flows", str(flows))
    assert code == 2 and out == ""
    bad = next(k for k in flow if k not in ("from", "to", "port", "protocol", "expect"))
    assert err.strip().splitlines()[-1] == (
        f"netiso: error: {flows}: flows[1]: unknown field {bad!r}; "
        "allowed: from, to, port, protocol, expect")


def test_ambiguous_ip_and_finished_pod_warn_on_stderr(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    """"an IP that is exactly one pod's is that pod" (finished pods do not count); an IP that
    several running pods claim is evaluated as external, with a warning on stderr naming the
    flow, so that `-o json` users see it too."""
    done = pod("prod/old", "10.0.1.1", app="web")
    done["status"]["phase"] = "Succeeded"
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all([*OBJECTS, done, pod("dev/twin", "10.0.2.2")]))
    flows = write_flows(tmp_path, [
        {"from": "dev/tool", "to": "10.0.1.1", "port": 8080, "expect": "allow"},
        {"from": "10.0.2.2", "to": "prod/web", "port": 8080, "expect": "deny"},  # external
        {"from": "prod/old", "to": "prod/web", "port": 8080},
    ])
    code, out, err = run(capsys, "-o", "json", "simulate", str(path), "--flows", str(flows))
    assert code == 0, err
    doc = json.loads(out)
    assert [(f["from"], f["to"]) for f in doc["flows"]] == [
        ("dev/tool", "prod/web"), ("ip:10.0.2.2", "prod/web"), ("prod/old", "prod/web")]
    warnings = [line.split(" warning ", 1)[1] for line in err.splitlines() if " warning " in line]
    assert warnings == [
        f"{flows}: flows[1]: ip:10.0.2.2 is the IP of several running pods (dev/tool, dev/twin): "
        "evaluated as an external IP",
        f"{flows}: flows[2]: pod prod/old has finished (phase Succeeded): it has no traffic; "
        "evaluated as if it were running",
    ]


MATRIX_WORLD = [
    ns("prod", env="prod"), ns("dev"), ns("kube-system"),
    pod("prod/web", "10.0.1.1", [{"containerPort": 8080, "name": "http"},
                                 {"containerPort": 53, "name": "dns", "protocol": "UDP"}],
        node="n1", host_ip="192.168.0.1", app="web"),
    pod("prod/api", "10.0.1.2", [{"containerPort": 9090, "name": "http"},
                                 {"containerPort": 8080}], node="n2", host_ip="192.168.0.2",
        app="api"),
    pod("dev/tool", "10.0.2.2", node="n1", host_ip="192.168.0.1", app="tool"),
    pod("dev/db", "10.0.2.3", [{"containerPort": 5432, "name": "pg"}], app="db"),
    pod("kube-system/agent", "192.168.0.1", [{"containerPort": 9090}], host_network=True,
        node="n1", host_ip="192.168.0.1"),
    netpol("prod/deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    netpol("prod/http", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}],
                                                         "ports": [{"port": "http"}]}]}),
    netpol("prod/out", {"podSelector": sel(app="api"), "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": sel(env="prod")}], "ports": [{"port": 8080}]}]}),
    netpol("dev/db", {"podSelector": sel(app="db"), "ingress": [
        {"from": [{"podSelector": sel(app="tool")}]}]}),
]


def test_matrix_table_and_json_agree_with_per_flow_evaluate(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """"(with neither) the whole pod x pod matrix over each destination's declared container
    ports": every cell of the JSON (and of its YAML twin) is exactly what `--from --to --port`
    says for that flow, every cell of the table is its verdict, the summary counts them, and
    finished pods are in neither (they have no traffic)."""
    done = pod("dev/old", "10.0.2.9", [{"containerPort": 7000}], app="tool")
    done["status"]["phase"] = "Failed"
    objs = [*MATRIX_WORLD, done]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    from netiso.policy import Cluster, Engine
    from netiso.policy.flows import FlowResult

    eng = Engine(Cluster.from_objects(objs))
    running = [p for p in eng.cluster.pods if not p.finished]
    want = [FlowResult(eng.check(s.key, d.key, port, proto), None).to_json()
            for d in running for port, proto in dict.fromkeys(
                (cp.number, cp.protocol) for cp in d.ports) for s in running]
    assert len(want) == 5 * 6 and {f["allowed"] for f in want} == {True, False}

    code, out, err = run(capsys, "-o", "json", "simulate", str(path))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["flows"] == want
    allowed = sum(f["allowed"] for f in want)
    assert doc["summary"] == {"total": 30, "allowed": allowed, "denied": 30 - allowed,
                              "mismatches": 0}
    assert "1 finished pods (phase Succeeded/Failed) left out of the matrix: dev/old" in err
    code, out, _ = run(capsys, "-o", "yaml", "simulate", str(path))
    assert code == 0 and yaml.safe_load(out) == doc

    code, out, _ = run(capsys, "--no-color", "simulate", str(path))
    assert code == 0
    seen: dict[tuple[str, str, int, str], bool] = {}
    for section in out.split("\n\n"):
        lines = section.strip("\n").splitlines()
        if not lines or "rows = from" not in lines[0]:
            continue
        proto, port = lines[0].split(":")[0].split("/")
        legend = {int(line.split("=")[0]): line.split("=")[1].split()[0]
                  for line in lines if line.startswith("  ") and " = " in line}
        for line in lines[1:]:
            parts = line.split()
            if len(parts) == 2 and set(parts[1]) <= {".", "X"}:
                key, cells = parts
                assert len(cells) == len(legend), line
                for c, cell in enumerate(cells):
                    seen[(key, legend[c + 1], int(port), proto)] = cell == "."
    assert seen == {(f["from"], f["to"], f["port"], f["protocol"]): f["allowed"] for f in want}
    assert "dev/old" not in out
