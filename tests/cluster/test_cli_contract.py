"""The CLI's contract against the lab: RBAC as shipped, JSON schemas, Ctrl-C, progress.

* `netiso render --rbac | kubectl apply -f -` (the lab's own kubectl) on a cluster without
  netiso-system, then apply/status/uninstall as the ServiceAccount it creates, each `-o json`
  validated against its schema in the package.
* Real SIGINTs to real apply and uninstall runs over many namespaces: exit 130, and the report
  printed says exactly what the cluster holds.
* The progress bar on a real pseudo-terminal, plain lines without one, NO_COLOR honoured.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.client import LabClient
from tests.schemas import validate

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
BUNDLE = {"netiso-allow-app-web-server", "netiso-allow-same-namespace",
          "netiso-default-deny-ingress", "netiso-deny-metadata-egress"}


def netiso(*args: str, kubeconfig: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=300, check=False, env=env)


def bundle_in(lab: LabClient, namespace: str) -> set[str]:
    items = lab.networking.list_namespaced_network_policy(namespace).items
    return {p.metadata.name for p in items} & BUNDLE


@pytest.fixture
def many(lab: LabClient) -> Iterator[tuple[str, list[str]]]:
    """40 fresh namespaces sharing one label: (selector, names)."""
    tag = uuid.uuid4().hex[:6]
    names = [f"t-many-{tag}-{i:02d}" for i in range(40)]
    for name in names:
        lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-many": tag}}})
    try:
        yield f"netiso-many={tag}", names
    finally:
        for name in names:
            with contextlib.suppress(Exception):  # best effort: the lab dies with the session
                lab.core.delete_namespace(name, propagation_policy="Background")


# --- RBAC as shipped ------------------------------------------------------------------------


def test_render_rbac_applies_with_kubectl_and_is_enough_for_apply_status_uninstall(
        lab: LabClient, namespace: str) -> None:
    rendered = subprocess.run([*NETISO, "render", "--rbac"], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    assert lab.kubectl("get", "namespace", "netiso-system", check=False).returncode != 0
    applied = lab.kubectl("apply", "-f", "-", input=rendered, check=False)
    assert applied.returncode == 0, applied.stderr
    assert "namespace/netiso-system created" in applied.stdout
    try:
        sa = lab.service_account_kubeconfig("netiso-system", "netiso", create=False)
        who = lab.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, kubeconfig=sa,
                          check=False)
        assert who.stdout.strip() == "no"  # least privilege: verify's rights are not in it

        run = netiso("-o", "json", "apply", "-n", namespace, kubeconfig=sa)
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        validate("apply", doc)
        assert doc["summary"]["created"] == 4
        assert bundle_in(lab, namespace) == BUNDLE

        dry = netiso("apply", "-n", namespace, "--dry-run", "-o", "json", kubeconfig=sa)
        assert dry.returncode == 0, dry.stderr
        validate("apply", json.loads(dry.stdout))

        status = netiso("status", "-n", namespace, "-ojson", kubeconfig=sa)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        validate("status", doc)
        assert doc["inSync"] is True

        gone = netiso("uninstall", "-n", namespace, "-o", "json", kubeconfig=sa)
        assert gone.returncode == 0, gone.stderr
        doc = json.loads(gone.stdout)
        validate("uninstall", doc)
        assert doc["summary"]["deleted"] == 4
        assert bundle_in(lab, namespace) == set()
        # The leftovers of verify need the verify role: said, not silently skipped.
        assert {u["resource"] for u in doc["unchecked"]} == {"services", "configmaps", "jobs"}
        assert "bind the role of `netiso render --rbac --for verify`" in gone.stderr
    finally:
        lab.kubectl("delete", "-f", "-", "--timeout=90s", input=rendered, check=False,
                    timeout=120)


@pytest.mark.parametrize("role", ["verify", "enable"])
def test_the_other_roles_apply_cleanly(lab: LabClient, role: str) -> None:
    rendered = subprocess.run([*NETISO, "render", "--rbac", "--for", role], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    applied = lab.kubectl("apply", "-f", "-", input=rendered, check=False)
    try:
        assert applied.returncode == 0, applied.stderr
        assert f"clusterrole.rbac.authorization.k8s.io/netiso-{role} created" in applied.stdout
    finally:
        lab.kubectl("delete", "-f", "-", "--timeout=90s", input=rendered, check=False,
                    timeout=120)


# --- Ctrl-C ---------------------------------------------------------------------------------


def interrupt_after(argv: list[str], marker: re.Pattern[str]) -> tuple[int, str, str]:
    """Start netiso, send SIGINT once a stderr line matches ``marker`` (so the signal lands
    mid-run, whatever the machine's speed), return (exit code, stdout, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if marker.search(line):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        proc.wait()
        pytest.fail("the run ended before the marker:\n" + "".join(seen))
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, "".join(seen) + err


def test_ctrl_c_during_apply_reports_what_was_done_and_exits_130(
        lab: LabClient, many: tuple[str, list[str]]) -> None:
    selector, names = many
    code, out, err = interrupt_after(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "-v", "-o", "json", "apply", "-l",
         selector, "--concurrency", "2"],
        re.compile(r"namespace t-many-\S+: applied"))
    assert code == 130, err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("netiso: error: applied "), last
    assert "interrupted (Ctrl-C)" in last
    assert "rerun `netiso apply` to finish" in last
    doc = json.loads(out)  # the same report as a failure
    validate("apply", doc)
    states = {ns["namespace"]: ns["state"] for ns in doc["namespaces"]}
    assert set(states) == set(names)
    applied = {n for n, s in states.items() if s == "applied"}
    assert applied and len(applied) < len(names), states
    # In-flight namespaces finished: nothing half-done, and the report is what the cluster has.
    assert set(states.values()) <= {"applied", "not-attempted"}, states
    for name in names:
        assert bundle_in(lab, name) == (BUNDLE if name in applied else set()), name
    assert f"applied {len(applied)} of {len(names)} namespaces" in last


def test_ctrl_c_during_uninstall_reports_what_was_done_and_exits_130(
        lab: LabClient, many: tuple[str, list[str]]) -> None:
    selector, names = many
    first = netiso("apply", "-l", selector, kubeconfig=lab.kubeconfig)
    assert first.returncode == 0, first.stderr
    code, out, err = interrupt_after(
        [*NETISO, "--kubeconfig", str(lab.kubeconfig), "-v", "-o", "json", "uninstall", "-l",
         selector],
        re.compile(r"NetworkPolicy t-many-\S+: deleted"))
    assert code == 130, err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("netiso: error: deleted "), last
    assert "interrupted (Ctrl-C)" in last
    doc = json.loads(out)
    validate("uninstall", doc)
    deleted = {(t["namespace"], t["name"]) for t in doc["deleted"]}
    left = {(t["namespace"], t["name"]) for t in doc["notAttempted"]}
    assert deleted and left, doc["summary"]
    assert doc["failed"] == []
    assert deleted | left == {(n, p) for n in names for p in BUNDLE}
    for name in names:
        live = bundle_in(lab, name)
        assert {(name, p) for p in live} == {t for t in left if t[0] == name}, name
    # A rerun finishes the job.
    rerun = netiso("uninstall", "-l", selector, kubeconfig=lab.kubeconfig)
    assert rerun.returncode == 0, rerun.stderr
    assert all(bundle_in(lab, n) == set() for n in names)


# --- progress -------------------------------------------------------------------------------


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a real pseudo-terminal: (exit code, stdout, what the terminal got)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        assert ready, "no output from the terminal for 120 s"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = proc.stdout.read() if proc.stdout else b""
    proc.wait(timeout=60)
    os.close(leader)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;|9[0-7])[0-9;]*m")


def test_progress_bar_on_a_terminal_plain_lines_otherwise(
        lab: LabClient, many: tuple[str, list[str]]) -> None:
    selector, names = many
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(COLUMNS="100", TERM="xterm-256color")
    argv = [*NETISO, "--kubeconfig", str(lab.kubeconfig), "apply", "-l", selector]
    code, out, term = on_a_terminal(argv, env)
    assert code == 0, term
    assert "applying" in term and f"/{len(names)}" in term  # the bar: description, M/N
    assert "━" in term
    assert COLOUR.search(term), "a terminal without NO_COLOR gets colour"
    assert "40 namespaces: 160 created" in out  # the result still on stdout, whole

    # NO_COLOR: the bar is still drawn, without colour.
    code, _, term = on_a_terminal([*argv, "--dry-run"], {**env, "NO_COLOR": "1"})
    assert code == 0, term
    assert "dry run" in term and f"/{len(names)}" in term
    assert not COLOUR.search(term), repr(term[:400])

    # -q or -o json on a terminal: no bar (plain lines, here none: nothing failed).
    code, out, term = on_a_terminal([*argv, "-q"], env)
    assert code == 0, term
    assert "━" not in term
    code, out, term = on_a_terminal([*argv, "-o", "json"], env)
    assert code == 0, term
    assert "━" not in term
    validate("apply", json.loads(out))

    # No terminal: timestamped plain lines, no bar, no escape codes.
    plain = netiso("apply", "-l", selector, kubeconfig=lab.kubeconfig)
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stderr and "━" not in plain.stderr
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d info context ", plain.stderr, re.M)


def test_plain_progress_counts_a_long_run(lab: LabClient, many: tuple[str, list[str]]) -> None:
    selector, _ = many
    # 40 namespaces x 2 runs: uninstall's 160 objects are a long run in plain mode (>= 50).
    assert netiso("apply", "-l", selector, kubeconfig=lab.kubeconfig).returncode == 0
    gone = netiso("uninstall", "-l", selector, kubeconfig=lab.kubeconfig)
    assert gone.returncode == 0, gone.stderr
    counts = re.findall(r" info deleting: (\d+)/160$", gone.stderr, re.M)
    assert counts, gone.stderr
    assert [int(c) for c in counts] == sorted(int(c) for c in counts)
    assert all(0 < int(c) < 160 for c in counts)
