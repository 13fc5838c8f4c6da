"""Benchmark: a full `netiso verify` on the 2-node lab, beside the same flows probed one at a time.

Not a test: it prints figures and the ratio against its anchor, in the same run, on a running
lab (``python -m tests.lab up``):

    .venv/bin/python bench/bench_verify.py              # median of 5 of each
    .venv/bin/python bench/bench_verify.py --runs 3

What is measured, and why this way:

* **netiso**: ``netiso verify`` end to end as a child process (process start, node choice,
  canary namespace and probe Jobs, canary before/after the deny, the bundle applied to the
  canary namespaces, every bundle flow, cleanup until no probe pod is left), and the same with
  ``--canary-only``. Goals: under 20 s and under 8 s.
* **anchor, one at a time** (the way ``kubectl exec`` based suites work): the same namespaces,
  the same servers (one per node) and long-running client pods (one per node and namespace),
  the same canary (4 flows before the deny, 4 after), the same bundle and the same 24 bundle
  flows, each flow one exec into a client pod (``nc -w 2`` / ``nslookup``, the lab's
  ``exec_in_pod``, which joins the pod's namespaces like ``kubectl exec``), strictly one after
  another; then the namespaces are deleted and the pods waited for. Expectations are not
  computed there (the anchor is only the probing).
* Runs alternate (netiso, anchor, netiso, ...) so a load change on the shared machine hits both.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def run_netiso(kubeconfig: Path, *extra: str) -> float:
    start = time.monotonic()
    out = subprocess.run([*NETISO, "--kubeconfig", str(kubeconfig), "-q", "verify", *extra],
                         capture_output=True, text=True, check=False, timeout=600)
    took = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit(f"netiso verify {' '.join(extra)} failed (exit {out.returncode}):\n"
                         f"{out.stdout}{out.stderr}")
    return took


def run_anchor(lab: object) -> float:
    from tests.lab.client import LabClient

    assert isinstance(lab, LabClient)
    from netiso.bundle import render_bundle
    from netiso.config import load_values

    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"bench-verify-{tag}", f"bench-verify-{tag}-peer"
    nodes = [n.name for n in lab.spec.nodes]
    start = time.monotonic()
    for ns in (ns_a, ns_b):
        lab.core.create_namespace({"metadata": {"name": ns}})
    for ns in (ns_a, ns_b):
        while not lab.core.list_namespaced_service_account(
                ns, field_selector="metadata.name=default").items:
            time.sleep(0.1)
    script = "nc -ll -p 8000 -e echo ok & nc -ll -p 8081 -e echo ok & wait"
    servers = [f"srv-{i + 1}" for i in range(len(nodes))]
    for name, node in zip(servers, nodes, strict=True):
        lab.run_busybox(ns_a, name, ["sh", "-c", script], labels={"app": "web-server"},
                        node=node, ports=(8000, 8081))
    clients = {ns: [f"cli-{i + 1}" for i in range(len(nodes))] for ns in (ns_a, ns_b)}
    for ns, names in clients.items():
        for name, node in zip(names, nodes, strict=True):
            lab.run_busybox(ns, name, ["sleep", "3600"], node=node)
    lab.wait_for_pods_running(ns_a, servers + clients[ns_a])
    lab.wait_for_pods_running(ns_b, clients[ns_b])
    ips = [lab.pod_ip(ns_a, s) for s in servers]
    n = len(nodes)
    pairs = [(i, j) for i in range(n) for j in ((i, (i + 1) % n) if n > 1 else (i,))]

    def tcp(ns: str, client: str, ip: str, port: int) -> None:
        lab.exec_in_pod(ns, client, ["nc", "-w", "2", ip, str(port)], timeout=15)

    for _phase in ("before", "after"):
        for i, j in pairs:
            tcp(ns_a, clients[ns_a][i], ips[j], 8081)
        if _phase == "before":
            lab.networking.create_namespaced_network_policy(ns_a, {
                "metadata": {"name": "deny"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    lab.networking.delete_namespaced_network_policy("deny", ns_a)
    for obj in render_bundle(load_values(None), [ns_a, ns_b]):
        lab.networking.create_namespaced_network_policy(obj["metadata"]["namespace"], obj)
    for i, j in pairs:  # same-namespace, other-namespace, app-port, in-cluster egress
        tcp(ns_a, clients[ns_a][i], ips[j], 8081)
        tcp(ns_b, clients[ns_b][i], ips[j], 8081)
        tcp(ns_b, clients[ns_b][i], ips[j], 8000)
        tcp(ns_a, clients[ns_a][i], ips[j], 8000)
    for ns, names in clients.items():  # metadata, DNS
        for c in names:
            tcp(ns, c, "169.254.169.254", 80)
            lab.exec_in_pod(ns, c, ["nslookup", "kubernetes.default.svc.cluster.local"],
                            timeout=15)
    for ns in (ns_a, ns_b):
        lab.core.delete_namespace(ns)
    for ns in (ns_a, ns_b):
        while lab.core.list_namespaced_pod(ns).items:
            time.sleep(0.2)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    from tests.lab import controlplane
    from tests.lab import lab as lab_mod
    from tests.lab.client import LabClient

    spec = lab_mod.load_spec()
    if spec is None:
        raise SystemExit("no lab running: start one with `python -m tests.lab up`")
    kubeconfig = controlplane.paths().admin_kubeconfig
    lab = LabClient(kubeconfig=kubeconfig, spec=spec)
    full: list[float] = []
    canary: list[float] = []
    anchor: list[float] = []
    for i in range(args.runs):
        full.append(run_netiso(kubeconfig))
        canary.append(run_netiso(kubeconfig, "--canary-only"))
        anchor.append(run_anchor(lab))
        print(f"run {i + 1}: verify {full[-1]:.1f} s, --canary-only {canary[-1]:.1f} s, "
              f"one at a time {anchor[-1]:.1f} s", file=sys.stderr)
    m_full, m_canary, m_anchor = (statistics.median(x) for x in (full, canary, anchor))
    print(f"nodes: {len(spec.nodes)}; runs: {args.runs} (median; min-max)")
    print(f"netiso verify (full, 32 flows):   {m_full:5.1f} s  ({min(full):.1f}-{max(full):.1f})"
          f"  goal < 20 s: {'met' if m_full < 20 else 'NOT met'}")
    print(f"netiso verify --canary-only:      {m_canary:5.1f} s  "
          f"({min(canary):.1f}-{max(canary):.1f})  goal < 8 s: "
          f"{'met' if m_canary < 8 else 'NOT met'}")
    print(f"same flows one at a time (exec):  {m_anchor:5.1f} s  "
          f"({min(anchor):.1f}-{max(anchor):.1f})")
    print(f"ratio: one at a time / netiso = {m_anchor / m_full:.2f}x")


if __name__ == "__main__":
    main()
