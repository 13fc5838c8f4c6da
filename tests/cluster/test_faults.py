"""The API server dies in the middle of `netiso apply` across many namespaces.

The lab is shared by concurrent test sessions, so killing *its* kube-apiserver would fail other
people's tests. This test starts a second, private kube-apiserver process of the lab (same
binary, certificates and etcd, bound to 127.0.0.1 on a free port, with the endpoint reconciler
off so it does not rewrite the `kubernetes` Service) and points netiso at it. SIGKILL on that
process is, for netiso, exactly the API server going away; the cluster state lives in etcd and
is checked through the lab's own API server.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netiso.bundle import render_bundle
from netiso.config import load_values
from netiso.ops.order import safety_rank
from tests.lab import controlplane, pki
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
PRIVATE = "kube-apiserver-fault-test"
NAMESPACES = 120
BUNDLE_SIZE = 4  # the default bundle: default-deny, same-namespace, app ports, metadata egress


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _argv(port: int) -> list[str]:
    argv = controlplane._apiserver_argv(pki.Pki(controlplane.paths().pki))
    replaced = {"--bind-address": "127.0.0.1", "--secure-port": str(port)}
    out = [f"{a.split('=', 1)[0]}={replaced[a.split('=', 1)[0]]}"
           if a.split("=", 1)[0] in replaced else a for a in argv]
    return [*out, "--endpoint-reconciler-type=none"]


def _ready(port: int) -> bool:
    pk = pki.Pki(controlplane.paths().pki)
    ctx = ssl.create_default_context(cafile=str(pk.ca_cert))
    ctx.load_cert_chain(str(pk.cert("admin")), str(pk.key("admin")))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _start(port: int) -> None:
    controlplane.start_process(PRIVATE, _argv(port))
    deadline = time.monotonic() + 90
    while not _ready(port):
        if controlplane.running(PRIVATE) is None:
            log = controlplane.paths().log(PRIVATE)
            raise AssertionError(f"private apiserver exited; see {log}")
        if time.monotonic() > deadline:
            raise AssertionError("private apiserver not ready after 90 s")
        time.sleep(0.3)


def _kill() -> None:
    pid = controlplane.running(PRIVATE)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    controlplane.stop_process(PRIVATE)  # reaps it and removes the pid file


@pytest.fixture
def private_apiserver(lab: LabClient, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = _free_port()
    _start(port)
    cfg = yaml.safe_load(lab.kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "private.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    kubeconfig.chmod(0o600)
    try:
        yield port, kubeconfig
    finally:
        controlplane.stop_process(PRIVATE)


@pytest.fixture
def many_namespaces(lab: LabClient) -> Iterator[tuple[str, list[str]]]:
    run = uuid.uuid4().hex[:6]
    names = [f"t-fault-{run}-{i:03d}" for i in range(NAMESPACES)]
    for name in names:
        lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-fault": run}}})
    try:
        yield f"netiso-fault={run}", names
    finally:
        for name in names:
            lab.core.delete_namespace(name, propagation_policy="Background")


def _managed(lab: LabClient, names: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {n: set() for n in names}
    for pol in lab.networking.list_network_policy_for_all_namespaces(
            label_selector="app.kubernetes.io/managed-by=netiso").items:
        if pol.metadata.namespace in names:
            out[pol.metadata.namespace].add(pol.metadata.name)
    return out


def test_apiserver_killed_mid_apply_then_rerun_converges(
        lab: LabClient, private_apiserver: tuple[int, Path],
        many_namespaces: tuple[str, list[str]]) -> None:
    port, kubeconfig = private_apiserver
    selector, names = many_namespaces
    name_set = set(names)
    # Foreign objects that must come through untouched.
    for ns in names[::10]:
        lab.networking.create_namespaced_network_policy(ns, {
            "metadata": {"name": "team-policy"}, "spec": {"podSelector": {}}})
    foreign_rv = {p.metadata.namespace: p.metadata.resource_version
                  for p in lab.networking.list_network_policy_for_all_namespaces().items
                  if p.metadata.namespace in name_set and p.metadata.name == "team-policy"}

    proc = subprocess.Popen(
        [*NETISO, "--kubeconfig", str(kubeconfig), "-o", "json", "apply", "--selector", selector,
         "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    total = NAMESPACES * BUNDLE_SIZE
    deadline = time.monotonic() + 120
    while True:
        count = sum(len(v) for v in _managed(lab, name_set).values())
        if count >= total // 5:
            break
        assert proc.poll() is None, "apply ended before the kill"
        assert time.monotonic() < deadline, "apply made no progress"
        time.sleep(0.05)
    _kill()
    stdout, stderr = proc.communicate(timeout=120)

    print(stderr.strip().splitlines()[-1])  # shown with `pytest -s`: the README sample
    assert proc.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("netiso: error: ")
    assert "not applied: " in last
    assert f"https://127.0.0.1:{port}" in last
    assert "Traceback" not in stderr
    doc = json.loads(stdout)
    states = {ns["namespace"]: ns["state"] for ns in doc["namespaces"]}
    applied = {n for n, s in states.items() if s == "applied"}
    assert applied, "some namespaces were applied before the kill"
    assert len(applied) < NAMESPACES
    summary = doc["summary"]
    # Never started is "not applied"; a write whose connection dropped is "unknown" (the server
    # may have acted, and could not be asked again), never "failed".
    assert summary["notApplied"] == sum(1 for s in states.values() if s == "not-attempted")
    assert summary["notApplied"] > 0
    assert (summary["failed"], summary["partial"]) == (0, 0)
    assert summary["applied"] + summary["unknown"] + summary["notApplied"] == NAMESPACES
    assert "cannot reach the API server" in doc["readBackError"]
    for ns in doc["namespaces"]:
        if ns["state"] == "unknown":
            assert [o["readBack"] for o in ns["objects"] if o["action"] == "unknown"] == [
                "could not read back"], ns
    # What the report calls applied really has the full bundle.
    live = _managed(lab, name_set)
    for ns in applied:
        assert len(live[ns]) == BUNDLE_SIZE, ns
    # Allows are written before the default deny: no namespace is left closed without them.
    ranks = {str(o["metadata"]["name"]): safety_rank(o) for o in render_bundle(
        load_values(None, namespaces=[names[0]]), [names[0]])}
    assert [ns for ns, have in live.items() if _closed_without_allows(have, ranks)] == []
    assert f"applied {len(applied)} of {NAMESPACES} namespaces" in last

    _start(port)
    rerun = subprocess.run(
        [*NETISO, "--kubeconfig", str(kubeconfig), "-o", "json", "apply", "--selector", selector],
        capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["applied"] == NAMESPACES
    assert summary["created"] == total - sum(len(v) for v in live.values())

    # No duplicates and nothing extra: per namespace, the netiso-labelled objects are exactly
    # the bundle's names, each once (a second copy would need another name, e.g. one made up
    # by a retry), and the only other object is the foreign one placed there.
    bundle_names = sorted(o["metadata"]["name"] for o in render_bundle(
        load_values(None, namespaces=[names[0]]), [names[0]]))
    assert len(bundle_names) == BUNDLE_SIZE
    everything = lab.networking.list_network_policy_for_all_namespaces().items
    labelled: dict[str, list[str]] = {n: [] for n in names}
    others: dict[str, list[str]] = {n: [] for n in names}
    for pol in everything:
        ns = pol.metadata.namespace
        if ns not in name_set:
            continue
        if (pol.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "netiso":
            labelled[ns].append(pol.metadata.name)
        else:
            others[ns].append(pol.metadata.name)
    for ns in names:
        assert sorted(labelled[ns]) == bundle_names, ns
        assert others[ns] == (["team-policy"] if ns in foreign_rv else []), ns
    assert {p.metadata.namespace: p.metadata.resource_version for p in everything
            if p.metadata.namespace in name_set and p.metadata.name == "team-policy"} \
        == foreign_rv


# --- the lab's own API server killed in the middle of `netiso uninstall` ----------------------

# What each bundle policy closes (ops.order): a namespace may hold an object only while it
# also holds every object that closes less, e.g. never the default deny without its allows.
def _closed_without_allows(present: set[str], bundle: dict[str, int]) -> bool:
    ranks = {bundle[n] for n in present}
    return any(bundle[n] < max(ranks) and n not in present for n in bundle) if ranks else False


def _snapshot(lab: LabClient, names: set[str]) -> dict[str, set[str]]:
    return _managed(lab, names)


def _kill_lab_apiserver() -> None:
    pid = controlplane.running("kube-apiserver")
    assert pid is not None, "the lab's kube-apiserver is not running"
    os.killpg(pid, signal.SIGKILL)
    controlplane.stop_process("kube-apiserver")  # reaps it and removes the pid file


def _lab_up() -> None:
    up = subprocess.run([sys.executable, "-m", "tests.lab", "up"], capture_output=True,
                        text=True, timeout=600, check=False)
    assert up.returncode == 0, up.stderr


def test_lab_apiserver_killed_mid_uninstall_never_leaves_a_deny_without_its_allows(
        lab: LabClient, many_namespaces: tuple[str, list[str]]) -> None:
    """Uninstall deletes, per namespace, the default deny first and the allows after it. The
    lab's kube-apiserver gets SIGKILL in the middle of 120 namespaces: at no point seen from the
    outside, and not in what is left, does a namespace hold a deny without its allows. Deletions
    in flight are reported "unknown" (the server may have acted), never "failed"; the lab is
    brought back and a rerun converges."""
    selector, names = many_namespaces
    name_set = set(names)
    applied = subprocess.run(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "apply", "--selector", selector],
        capture_output=True, text=True, timeout=300, check=False)
    assert applied.returncode == 0, applied.stderr
    bundle = {str(o["metadata"]["name"]): safety_rank(o) for o in render_bundle(
        load_values(None, namespaces=[names[0]]), [names[0]])}
    assert len(bundle) == BUNDLE_SIZE
    total = NAMESPACES * BUNDLE_SIZE
    assert sum(len(v) for v in _snapshot(lab, name_set).values()) == total

    proc = subprocess.Popen(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "-o", "json", "uninstall",
         "--selector", selector],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad: list[tuple[str, set[str]]] = []
    killed = False
    try:
        deadline = time.monotonic() + 120
        while True:
            seen = _snapshot(lab, name_set)
            bad += [(ns, have) for ns, have in seen.items()
                    if _closed_without_allows(have, bundle)]
            if sum(len(v) for v in seen.values()) <= total * 3 // 4:
                break
            assert proc.poll() is None, "uninstall ended before the kill"
            assert time.monotonic() < deadline, "uninstall made no progress"
            time.sleep(0.02)
        _kill_lab_apiserver()
        killed = True
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if killed:
            _lab_up()

    print(stderr.strip().splitlines()[-1])  # shown with `pytest -s`: the README sample
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    doc = json.loads(stdout)
    s = doc["summary"]
    assert doc["failed"] == [], doc["failed"]  # a lost connection is not a failure
    assert s["notAttempted"] > 0
    assert all(t["readBack"] == "could not read back" for t in doc["unknown"])
    assert doc["readBackError"] and "cannot reach the API server" in doc["readBackError"]
    assert stderr.strip().splitlines()[-1].startswith("netiso: error: deleted ")

    left = _snapshot(lab, name_set)
    assert bad == []
    assert [ns for ns, have in left.items() if _closed_without_allows(have, bundle)] == []
    deleted = {(t["namespace"], t["name"]) for t in doc["deleted"]}
    for ns, name in deleted:
        assert name not in left[ns], (ns, name)
    assert 0 < sum(len(v) for v in left.values()) < total

    rerun = subprocess.run(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "-o", "json", "uninstall",
         "--selector", selector], capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["summary"]["deleted"] == sum(len(v) for v in left.values())
    assert sum(len(v) for v in _snapshot(lab, name_set).values()) == 0
