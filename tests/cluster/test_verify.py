"""`netiso verify` against the lab: real probe Jobs, real kube-router enforcement.

One test per acceptance point of the verify issue: enforcement off -> exit 3 and no bundle
checks; enforcement on -> exit 0, every flow matches, the JSON validates against the shipped
schema; a deleted allow-same-namespace -> exit 3 naming exactly those flows; a foreign allow-all
-> expected "allowed", exit 0; --in-namespace never makes a probe pod a Service endpoint; an
image that cannot be pulled -> exit 1 with the pod's reason. After each, nothing of the run is
left (no netiso-verify namespace, Job or pod). Cleanup on Ctrl-C and SIGTERM, leftovers of a
killed run removed by the next verify, --keep leftovers removed by uninstall.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
RUN_LABEL = "netiso.io/verify-run"


def netiso(lab: LabClient, *args: str, kubeconfig: Path | None = None, timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig or lab.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def schema() -> dict[str, Any]:
    text = files("netiso.manifests").joinpath("schemas/verify.schema.json").read_text("utf-8")
    return dict(json.loads(text))


def validated(stdout: str) -> dict[str, Any]:
    doc = json.loads(stdout)
    jsonschema.Draft202012Validator(schema()).validate(doc)
    return dict(doc)


def leftovers(lab: LabClient) -> list[str]:
    """Everything of any verify run still present: namespaces, Jobs, pods."""
    out = [f"namespace {n.metadata.name}" for n in lab.core.list_namespace().items
           if n.metadata.name.startswith("netiso-verify-")]
    batch = __import__("kubernetes").client.BatchV1Api(lab.api)
    out += [f"job {j.metadata.namespace}/{j.metadata.name}"
            for j in batch.list_job_for_all_namespaces(label_selector=RUN_LABEL).items]
    out += [f"pod {p.metadata.namespace}/{p.metadata.name}"
            for p in lab.core.list_pod_for_all_namespaces(label_selector=RUN_LABEL).items]
    return out


def assert_nothing_left(lab: LabClient, timeout: float = 90) -> None:
    """Verify deletes its namespaces; the namespace controller finishes in its own time."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(lab)
        if not left:
            return
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(1)


@pytest.fixture(autouse=True)
def clean(lab: LabClient) -> Any:
    assert_nothing_left(lab)
    yield
    lab.set_enforcement(True)  # always restored, whatever a test did
    assert_nothing_left(lab)


def apply_bundle(lab: LabClient, namespace: str) -> None:
    out = netiso(lab, "apply", "-n", namespace)
    assert out.returncode == 0, out.stderr


# --- acceptance -------------------------------------------------------------------------------

def test_enforcement_off_is_not_enforced_and_runs_no_bundle_check(lab: LabClient) -> None:
    with lab.enforcement(False):
        out = netiso(lab, "-o", "json", "verify")
    assert out.returncode == 3, out.stderr
    doc = validated(out.stdout)
    assert doc["verdict"] == "not-enforced"
    assert doc["enforcement"]["state"] == "not-enforced"
    assert {n["enforced"] for n in doc["enforcement"]["nodes"]} == {False}
    assert len(doc["enforcement"]["nodes"]) == 2
    assert "no NetworkPolicy-enforcing network plugin" in doc["enforcement"]["likelyCause"]
    # Stopped at the canary: no bundle check ran.
    assert [c["name"] for c in doc["checks"]] == ["enforcement"]
    assert {f["check"] for f in doc["flows"]} == {"enforcement"}
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("netiso: error: NetworkPolicy not enforced on lab-node-1, lab-node-2")
    assert "likely cause" in last


def test_enforced_bundle_passes_with_schema_table_and_junit(lab: LabClient,
                                                            tmp_path: Path) -> None:
    junit = tmp_path / "verify.xml"
    out = netiso(lab, "-o", "json", "verify", "--junit", str(junit))
    assert out.returncode == 0, out.stdout + out.stderr
    doc = validated(out.stdout)
    assert doc["verdict"] == "passed"
    assert doc["enforcement"]["state"] == "enforced"
    flows = doc["flows"]
    assert flows and all(f["ok"] for f in flows)
    checks = {c["name"]: c["status"] for c in doc["checks"]}
    assert checks == {"enforcement": "passed", "same-namespace": "passed",
                      "other-namespace": "passed", "app-port": "passed",
                      "in-cluster-egress": "passed", "metadata": "passed", "dns": "passed",
                      "pod-identity": "skipped"}
    by_check: dict[str, set[str]] = {}
    for f in flows:
        by_check.setdefault(f["check"], set()).add(str(f["observed"]))
    assert by_check["same-namespace"] == {"allowed"}
    assert by_check["other-namespace"] == {"blocked"}
    assert by_check["app-port"] == {"allowed"}
    assert by_check["metadata"] == {"blocked"}
    assert by_check["dns"] == {"allowed"}
    # Across nodes as well as on one node.
    pairs = {(f["from"]["node"], f["to"]["node"]) for f in flows if f["check"] == "app-port"}
    assert ("lab-node-1", "lab-node-1") in pairs and ("lab-node-1", "lab-node-2") in pairs
    # Which policy decided each expectation.
    other = next(f for f in flows if f["check"] == "other-namespace")
    assert any(p.endswith("/netiso-default-deny-ingress") or
               p.endswith("/netiso-allow-same-namespace") for p in other["decidedBy"])
    meta = next(f for f in flows if f["check"] == "metadata")
    assert any(p.endswith("/netiso-deny-metadata-egress") for p in meta["decidedBy"])
    # JUnit: one testcase per flow (plus one per skipped check), no failure.
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(flows) + 1
    assert root.get("failures") == "0" and root.get("errors") == "0"

    table = netiso(lab, "verify", "--canary-only")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.strip().splitlines()[1:-1]
    assert len(rows) == 8 and all(r.startswith("✓  c") for r in rows)
    assert table.stdout.strip().splitlines()[-1].startswith("verify passed: 8 flows, 8 ✓")


def test_deleted_same_namespace_policy_fails_exactly_those_flows(lab: LabClient,
                                                                 namespace: str) -> None:
    apply_bundle(lab, namespace)
    lab.networking.delete_namespaced_network_policy("netiso-allow-same-namespace", namespace)
    out = netiso(lab, "-o", "json", "verify", "--in-namespace", namespace)
    assert out.returncode == 3, out.stderr
    doc = validated(out.stdout)
    assert doc["verdict"] == "failed"
    failing = {f["id"] for f in doc["flows"] if not f["ok"]}
    same_ns = {f["id"] for f in doc["flows"] if f["check"] == "same-namespace"}
    assert failing == same_ns and same_ns
    for f in doc["flows"]:
        if f["id"] in failing:
            assert f["expected"] == "blocked" and f["observed"] == "blocked"
            assert f["intended"] == "allowed"
            assert "missing or drifted" in f["reason"]
    last = out.stderr.strip().splitlines()[-1]
    assert last == f"netiso: error: {len(failing)} flow(s) do not match: " + ", ".join(
        sorted(failing, key=lambda i: int(i[1:])))


def test_foreign_allow_all_is_an_expected_allowed(lab: LabClient, namespace: str) -> None:
    apply_bundle(lab, namespace)
    lab.networking.create_namespaced_network_policy(namespace, {
        "metadata": {"name": "team-allow-all"},
        "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}})
    out = netiso(lab, "-o", "json", "verify", "--in-namespace", namespace)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = validated(out.stdout)
    other = [f for f in doc["flows"] if f["check"] == "other-namespace"]
    assert other
    for f in other:
        assert f["expected"] == "allowed" == f["intended"] == f["observed"]
        assert f"{namespace}/team-allow-all" in f["decidedBy"]


def test_in_namespace_probe_pods_never_become_endpoints(lab: LabClient, namespace: str) -> None:
    apply_bundle(lab, namespace)
    lab.core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web-server"}, "ports": [{"port": 8000}]}})
    seen_ready: set[str] = set()
    seen_probe_pods: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pod in lab.core.list_namespaced_pod(namespace, label_selector=RUN_LABEL).items:
                if pod.status.pod_ip:
                    seen_probe_pods.add(pod.status.pod_ip)
            ep = lab.core.read_namespaced_endpoints("web", namespace) \
                if lab.core.list_namespaced_endpoints(namespace).items else None
            for subset in (ep.subsets or []) if ep else []:
                seen_ready.update(a.ip for a in subset.addresses or [])
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        out = netiso(lab, "-o", "json", "verify", "--in-namespace", namespace)
    finally:
        stop.set()
        t.join()
    assert out.returncode == 0, out.stdout + out.stderr
    doc = validated(out.stdout)
    assert seen_probe_pods, "the watcher never saw a probe pod (checked while it ran)"
    assert not seen_ready & seen_probe_pods, "a probe pod was a ready endpoint of the Service"
    assert any("app=web-server" in n and "never become Ready" in n for n in doc["notes"])


def test_unpullable_image_exits_1_with_the_pods_reason(lab: LabClient) -> None:
    out = netiso(lab, "verify", "--probe-image", "registry.invalid/netiso/nope:1",
                 "--timeout", "60")
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("netiso: error: probe pod netiso-verify-")
    assert "cannot run: ErrImagePull" in last or "cannot run: ImagePullBackOff" in last
    assert "registry.invalid/netiso/nope:1" in last
    assert "--probe-image" in last
    assert "Traceback" not in out.stderr


# --- cleanup on every way out -------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_cleans_up(lab: LabClient, sig: signal.Signals) -> None:
    proc = subprocess.Popen([*NETISO, "--kubeconfig", str(lab.kubeconfig), "verify"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not lab.core.list_pod_for_all_namespaces(label_selector=RUN_LABEL).items:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "netiso: interrupted"
    assert not lab.core.list_pod_for_all_namespaces(label_selector=RUN_LABEL).items


def test_killed_run_leftovers_are_removed_by_the_next_verify(lab: LabClient) -> None:
    proc = subprocess.Popen([*NETISO, "--kubeconfig", str(lab.kubeconfig), "verify",
                             "--timeout", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not lab.core.list_pod_for_all_namespaces(label_selector=RUN_LABEL).items:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    killed = [n for n in leftovers(lab) if n.startswith("namespace ")]
    assert killed
    time.sleep(11)  # past the killed run's deadline (--timeout 10)
    out = netiso(lab, "-o", "json", "verify", "--canary-only")
    assert out.returncode == 0, out.stderr
    removed = validated(out.stdout)["leftoversRemoved"]
    assert set(killed) <= set(removed)


def test_keep_leaves_the_run_and_uninstall_removes_it(lab: LabClient) -> None:
    out = netiso(lab, "-o", "json", "verify", "--canary-only", "--keep")
    assert out.returncode == 0, out.stderr
    doc = validated(out.stdout)
    assert doc["kept"] is True
    kept = f"netiso-verify-{doc['runId']}"
    assert any(n == f"namespace {kept}" for n in leftovers(lab))
    gone = netiso(lab, "-o", "json", "uninstall")
    assert gone.returncode == 0, gone.stderr
    deleted = {(d["kind"], d["name"]) for d in json.loads(gone.stdout)["deleted"]}
    assert ("Namespace", kept) in deleted


def test_uninstall_removes_probe_jobs_left_in_a_real_namespace(lab: LabClient,
                                                               namespace: str) -> None:
    apply_bundle(lab, namespace)
    out = netiso(lab, "-o", "json", "verify", "--in-namespace", namespace, "--keep")
    assert out.returncode == 0, out.stdout + out.stderr
    batch = __import__("kubernetes").client.BatchV1Api(lab.api)
    left = {j.metadata.name for j in
            batch.list_namespaced_job(namespace, label_selector=RUN_LABEL).items}
    assert left
    gone = netiso(lab, "-o", "json", "uninstall")
    assert gone.returncode == 0, gone.stderr
    deleted = {(d["kind"], d["namespace"], d["name"]) for d in json.loads(gone.stdout)["deleted"]}
    assert {("Job", namespace, name) for name in left} <= deleted
