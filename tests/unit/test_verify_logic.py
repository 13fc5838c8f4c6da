"""verify's pure parts: node choice, outcome classification, probe manifests, judging, JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from netiso.config import load_values
from netiso.errors import UsageError
from netiso.policy import Cluster, Engine
from netiso.verify.checks import (
    BUNDLE_CHECKS,
    Context,
    Expectation,
    FlowResult,
    declare,
    expectation,
    likely_cause,
)
from netiso.verify.junit import to_junit
from netiso.verify.probes import (
    ProbeSettings,
    classify,
    job_manifest,
    namespace_manifest,
    parse_results,
    pod_problem,
    server_script,
)
from netiso.verify.run import _app_port, validate_skip
from netiso.verify.scenarios import (
    FlowSpec,
    Layout,
    NodeInfo,
    Outcome,
    Probe,
    Role,
    Target,
    choose_other_port,
    metadata_addresses,
    pick_nodes,
)


def node(name: str, zone: str = "", pool: str = "", *, ready: bool = True,
         os_name: str = "linux", cordoned: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": os_name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    if pool:
        labels["eks.amazonaws.com/nodegroup"] = pool
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


# --- nodes ------------------------------------------------------------------------------------

def test_only_ready_schedulable_linux_nodes() -> None:
    chosen, skipped = pick_nodes([node("a"), node("b", ready=False), node("c", os_name="windows"),
                                  node("d", cordoned=True)], None)
    assert [n.name for n in chosen] == ["a"]
    assert dict(skipped) == {"b": "not Ready", "c": "windows node (probes are Linux pods)",
                             "d": "cordoned (spec.unschedulable)"}


def test_limit_spreads_across_zones_and_pools() -> None:
    nodes = [node(f"z1-{i}", "z1", "p1") for i in range(5)] + \
        [node(f"z2-{i}", "z2", "p1") for i in range(5)] + [node("z3-0", "z3", "p2")]
    chosen, skipped = pick_nodes(nodes, 3)
    assert {n.zone for n in chosen} == {"z1", "z2", "z3"}
    assert len(skipped) == 8 and all(r == "over --nodes 3" for _n, r in skipped)
    every, _ = pick_nodes(nodes, None)
    assert len(every) == 11


# --- outcomes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "rc", "text", "outcome"), [
    ("tcp", 0, "ok", Outcome.ALLOWED),
    ("tcp", 1, "nc: can't connect to remote host (10.244.1.5): Connection refused",
     Outcome.BLOCKED),
    ("tcp", 1, "nc: timed out", Outcome.BLOCKED),
    ("tcp", 1, "", Outcome.BLOCKED),
    ("tcp", 1, "nc: can't connect to remote host: No route to host", Outcome.BLOCKED),
    ("tcp", 127, "sh: nc: not found", Outcome.ERROR),
    ("tcp", 1, "nc: bad address 'x'", Outcome.ERROR),
    ("dns", 0, "Name: kubernetes.default.svc.cluster.local Address: 10.96.0.1",
     Outcome.ALLOWED),
    ("dns", 1, "** server can't find x: NXDOMAIN", Outcome.ALLOWED),
    ("dns", 1, ";; connection timed out; no servers could be reached", Outcome.BLOCKED),
    ("dns", 127, "sh: nslookup: not found", Outcome.ERROR),
])
def test_classify(kind: str, rc: int, text: str, outcome: Outcome) -> None:
    assert classify(kind, rc, text).outcome is outcome


def test_parse_results_ignores_noise() -> None:
    text = "f1 0 1 ok\nsomething else\nf2 1 3 nc: timed out\nf3 127 1\n"
    assert parse_results(text) == {"f1": (0, 1, "ok"), "f2": (1, 3, "nc: timed out"),
                                   "f3": (127, 1, "")}


# --- manifests ----------------------------------------------------------------------------------

def test_probe_job_is_restricted_pinned_tolerant_and_never_ready() -> None:
    settings = ProbeSettings("abc123", pull_secrets=("regcred",))
    probe = Probe("srv-1", "ns", NodeInfo("n1", "host-1", "", ""), Role.SERVER,
                  {"app": "web-server"})
    job = job_manifest(settings, probe, "nv-abc123-srv-1", server_script([8000, 8081]),
                       ports=[8000, 8081])
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = spec["containers"][0]["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "host-1"}
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["readinessGates"] == [{"conditionType": "netiso.io/probe-never-ready"}]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert "sysctls" not in spec["securityContext"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "web-server" and labels["netiso.io/verify-run"] == "abc123"
    low = job_manifest(settings, probe, "x", server_script([80]), ports=[80])
    assert low["spec"]["template"]["spec"]["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]


def test_namespace_is_netiso_restricted_and_excluded_from_apply() -> None:
    labels = namespace_manifest("netiso-verify-abc123", ProbeSettings("abc123"))["metadata"][
        "labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "netiso"
    assert labels["netiso.io/exclude"] == "true"


def test_pod_problem_quotes_the_pods_reason() -> None:
    pulling = {"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {
        "reason": "ErrImagePull", "message": "image x not found"}}}]}}
    assert pod_problem(pulling) == "ErrImagePull: image x not found"
    unsched = {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                          "reason": "Unschedulable", "message": "0/2 nodes"}]}}
    assert pod_problem(unsched) == "Unschedulable: 0/2 nodes"
    creating = {"status": {"containerStatuses": [{"state": {"waiting": {
        "reason": "ContainerCreating"}}}]}}
    assert pod_problem(creating) is None


# --- flows and judging --------------------------------------------------------------------------

def layout(nodes: int = 2) -> Layout:
    infos = tuple(NodeInfo(f"n{i}", f"n{i}", "", "") for i in range(1, nodes + 1))
    return Layout("abc123", infos, "netiso-verify-abc123", "netiso-verify-abc123",
                  "netiso-verify-abc123-peer", 8000, None, {"app": "web-server"}, 8081)


def test_flows_cover_same_node_and_cross_node_for_every_check() -> None:
    ctx = Context(layout(), ("169.254.169.254",), (), "kubernetes.default.svc.cluster.local")
    flows = declare(BUNDLE_CHECKS[:4], ctx)
    assert [f.id for f in flows] == [f"f{i}" for i in range(1, 17)]
    same = [(f.client, f.target.server) for f in flows if f.check == "same-namespace"]
    assert same == [("cli-a-1", "srv-1"), ("cli-a-1", "srv-2"), ("cli-a-2", "srv-2"),
                    ("cli-a-2", "srv-1")]
    assert {f.target.port for f in flows if f.check == "app-port"} == {8000}
    assert {f.target.port for f in flows if f.check == "other-namespace"} == {8081}
    one = declare(BUNDLE_CHECKS[:1], Context(layout(1), (), (), "x"))
    assert [(f.client, f.target.server) for f in one] == [("cli-a-1", "srv-1")]


def cluster(extra: list[dict[str, Any]]) -> Engine:
    def pod(ns: str, name: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip}}
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {
            "kubernetes.io/metadata.name": n}}} for n in ("a", "b")]
    objs += [pod("a", "srv", "10.0.0.1", {"app": "web-server"}), pod("a", "cli", "10.0.0.2", {}),
             pod("b", "cli", "10.0.1.2", {})]
    return Engine(Cluster.from_objects(objs + extra))


def deny(ns: str, name: str = "deny") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def test_expectation_names_the_deciding_policies() -> None:
    open_ = expectation(cluster([]).check("b/cli", "a/srv", 8081))
    assert open_.outcome is Outcome.ALLOWED and open_.decided_by == ()
    closed = expectation(cluster([deny("a")]).check("b/cli", "a/srv", 8081))
    assert closed.outcome is Outcome.BLOCKED and closed.decided_by == ("a/deny",)
    allow_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "team-allow-all", "namespace": "a"},
                 "spec": {"podSelector": {}, "ingress": [{}]}}
    foreign = expectation(cluster([deny("a"), allow_all]).check("b/cli", "a/srv", 8081))
    assert foreign.outcome is Outcome.ALLOWED and foreign.decided_by == ("a/team-allow-all",)


def flow_result(expected: Outcome, intended: Outcome | None, observed: Outcome) -> FlowResult:
    spec = FlowSpec("f1", "same-namespace", "cli-a-1", Target(8081, server="srv-1"), "x")
    return FlowResult(spec, "a/cli", "n1", "a/srv", "n1",
                      Expectation(expected, ("a/p",), "because"),
                      Expectation(intended, (), "values") if intended else None,
                      observed, "detail", 1)


def test_a_flow_passes_only_when_traffic_objects_and_values_agree() -> None:
    assert flow_result(Outcome.ALLOWED, Outcome.ALLOWED, Outcome.ALLOWED).ok
    leak = flow_result(Outcome.BLOCKED, Outcome.BLOCKED, Outcome.ALLOWED)
    assert not leak.ok and leak.disagrees and "expected blocked" in leak.reason
    drift = flow_result(Outcome.BLOCKED, Outcome.ALLOWED, Outcome.BLOCKED)
    assert not drift.ok and not drift.disagrees and "missing or drifted" in drift.reason
    err = flow_result(Outcome.BLOCKED, Outcome.BLOCKED, Outcome.ERROR)
    assert not err.ok and err.probe_error and not err.disagrees
    result = BUNDLE_CHECKS[0].run([flow_result(Outcome.ALLOWED, None, Outcome.ALLOWED), drift])
    assert result.status.value == "failed"
    assert "--skip same-namespace" in result.message


def test_skip_names_are_checked() -> None:
    assert validate_skip(["metadata", "enforcement"]) == {"metadata", "enforcement"}
    with pytest.raises(UsageError, match="unknown check 'meta'"):
        validate_skip(["meta"])


def test_app_port_and_other_port_from_values(tmp_path: Any) -> None:
    assert _app_port(load_values(None)) == (8000, None, {"app": "web-server"})
    f = tmp_path / "v.yaml"
    f.write_text("appPorts:\n  - podSelector: {app: api}\n    ports: [{port: 53, protocol: UDP},"
                 " http]\n")
    assert _app_port(load_values(f)) == (8000, "http", {"app": "api"})
    assert choose_other_port([8081]) == 9091
    assert metadata_addresses(["169.254.169.254/32", "fd00:ec2::254/128"]) == ["169.254.169.254"]


def test_likely_cause_per_provider_and_partial() -> None:
    assert "enableNetworkPolicy" in likely_cause("eks", ["n1"], True)
    assert "Dataplane V2" in likely_cause("gke", ["n1"], True)
    assert "networkPolicy is none" in likely_cause("aks", ["n1"], True)
    assert "not enforced on n2 only" in likely_cause("generic", ["n2"], False)
    assert "kube-system/calico-node-x" in likely_cause("generic", ["n2"], False,
                                                     {"n2": ["kube-system/calico-node-x"]})


# --- output -------------------------------------------------------------------------------------

def sample_result() -> dict[str, Any]:
    ok = flow_result(Outcome.ALLOWED, Outcome.ALLOWED, Outcome.ALLOWED)
    bad = flow_result(Outcome.BLOCKED, Outcome.BLOCKED, Outcome.ALLOWED)
    bad.spec = FlowSpec("f2", "same-namespace", "cli-a-1", Target(8081, server="srv-2"), "x")
    err = flow_result(Outcome.BLOCKED, Outcome.BLOCKED, Outcome.ERROR)
    err.spec = FlowSpec("f3", "same-namespace", "cli-a-1", Target(8081, server="srv-2"), "x")
    return {
        "kind": "VerifyResult", "server": "https://x", "context": "c", "runId": "abc123",
        "provider": "generic", "inNamespace": None, "namespaces": ["netiso-verify-abc123"],
        "verdict": "failed",
        "enforcement": {"state": "enforced", "likelyCause": None, "nodes": [
            {"name": "n1", "zone": None, "pool": None, "enforced": True, "detail": ""}]},
        "skippedNodes": [],
        "checks": [{"name": "same-namespace", "description": "d", "status": "failed",
                    "message": "m", "flows": ["f1", "f2", "f3"]},
                   {"name": "pod-identity", "description": "d", "status": "skipped",
                    "message": "not EKS", "flows": []}],
        "flows": [f.to_json() for f in (ok, bad, err)],
        "summary": {"flows": 3, "passed": 1, "failed": 1, "probeErrors": 1, "checksSkipped": 1},
        "notes": [], "kept": False, "leftoversRemoved": [], "seconds": 9.5,
    }


def test_schema_accepts_the_result_document() -> None:
    schema = json.loads(files("netiso.manifests").joinpath("schemas/verify.schema.json")
                        .read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = sample_result()
    jsonschema.Draft202012Validator(schema).validate(doc)
    doc["flows"][0]["observed"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(doc)


def test_junit_has_one_testcase_per_flow() -> None:
    root = ET.fromstring(to_junit(sample_result()).split("\n", 1)[1])
    cases = root.findall(".//testcase")
    assert len(cases) == 4  # three flows and the skipped check
    assert root.get("failures") == "1" and root.get("errors") == "1" and root.get("skipped") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert failed[0].get("name", "").startswith("f2 ")


def test_ctrl_c_exits_130_not_0() -> None:
    """typer returns Ctrl-C as exit code 130 in non-standalone mode; netiso must not exit 0
    (verify's cleanup runs, then the interruption is reported)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", "from netiso.cli import main; main()",
                             "simulate", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    time.sleep(3)  # reading stdin, which never ends (start-up is slow on a loaded machine)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "netiso: interrupted"


def test_bad_verify_input_is_one_line_exit_2() -> None:
    import subprocess
    import sys

    base = [sys.executable, "-c", "from netiso.cli import main; main()", "verify"]
    for args, text in ((["--skip", "nope"], "--skip: unknown check 'nope'"),
                       (["--nodes", "0"], "--nodes: '0' is not 'all' or a number >= 1"),
                       (["--in-namespace", "Bad_Name"], "is not a valid namespace name"),
                       (["--in-namespace", "x", "--canary-only"], "cannot be combined")):
        out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("netiso: error: ") and text in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
