"""The program a policy-engine double's image runs: kube-router firewall-only for the pod's node.

The lab's doubles of the clouds' managed policy engines (images.ENGINE_DOUBLE_IMAGES: GKE's
managed Calico, Azure NPM, AKS's Calico and Cilium, and the EKS network policy agent) are
hostNetwork DaemonSet pods; the node agent runs each such container as this program, in the node's
netns, with the container's own capabilities (NET_ADMIN from its ``privileged`` or
``capabilities.add``, as the real engines ask). It does for that one node what the lab's own
switch (enforcement.on) does, but as the pod's process, so enforcement lives and dies with the pod:

- the pod's node is the lab node whose IP this netns owns (a hostNetwork pod's podIP is its
  node's IP; ``<state>/lab.json`` maps IPs to node names);
- kube-router runs as a child with the lab's kube-router credentials, not the pod's
  ServiceAccount: the clouds' engines read their own APIs (the EKS agent reads PolicyEndpoints,
  Calico its CRDs) and their real ClusterRoles grant that, not what kube-router reads. Granting
  kube-router's reads to those ServiceAccounts would make the lab's RBAC unlike the cloud's, and
  netiso reads (and, for aws-node, patches) some of those roles;
- its output is the container's log; it starts with ``STARTED_LINE`` and the first full sync
  adds ``ENFORCING_LINE``, so a caller (engines.wait_enforcing, see ``synced``) knows policies are
  programmed, not just the chains hooked. Only a line after the last start counts: the node
  agent appends to a container's log file, and after an agent restart a pod's run numbers start
  again at the same file. It also creates ``SYNCED_FILE``, which the Calico doubles' readiness
  probe (`/bin/calico-node -felix-ready`, images.py) checks, so their pods are Ready only once
  enforcing, as calico-node is once felix is;
- on SIGTERM (the pod deleted, or replaced by a rolling update) kube-router is stopped (SIGKILL
  after a second: v2.1.0 leaves its rules on SIGTERM anyway) and every kube-router chain, rule and
  ipset is swept from the node's netns, as enforcement.off does, so deleting the DaemonSet removes
  enforcement. A kube-router that exits by itself is a crash: its exit code is the container's,
  and its rules stay until the restarted one re-syncs (a real engine's crash leaves its rules too).

The EKS agent (``aws-network-policy-agent``) enforces only when its own command line says
``--enable-network-policy=true`` (what the EKS add-on sets); otherwise it sleeps, inert, as before
issue #10.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tests.lab import enforcement

STARTED_LINE = "netiso-lab engine double: started"
# In the container's private /tmp: what the calico images' readiness probe checks (images.py).
SYNCED_FILE = "/tmp/.netiso-engine-double-synced"
ENFORCING_LINE = "netiso-lab engine double: first policy sync done"
AWS_AGENT = "aws-network-policy-agent"


def _flag(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def synced(log: str) -> bool:
    """Whether the double whose container log is ``log`` did its first sync since it started."""
    start = log.rfind(STARTED_LINE)
    return start >= 0 and ENFORCING_LINE in log[start:]


def own_node(state_dir: Path) -> str:
    """The lab node whose IP this netns holds."""
    nodes = json.loads((state_dir / "lab.json").read_text())["nodes"]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    local = {f.split("/", 1)[0] for line in out.splitlines()
             for i, f in enumerate(line.split()) if i > 0 and line.split()[i - 1] == "inet"}
    for node in nodes:
        if node["ip"] in local:
            return str(node["name"])
    raise SystemExit(f"netiso-lab engine double: no lab node owns an address here "
                     f"({sorted(local)}); the double runs only in a hostNetwork pod on a lab node")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="engine-double")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--kube-router", required=True)
    parser.add_argument("--sleep", required=True)
    # Everything after `--` is the container's own command line (images.Image.wrapper).
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    container = argv[split + 1:]
    if args.engine == AWS_AGENT and _flag(container, "--enable-network-policy") != "true":
        print(f"netiso-lab engine double: {args.engine} with --enable-network-policy="
              f"{_flag(container, '--enable-network-policy')}: inert", flush=True)
        # Replaces this process: a stopped pod just ends, there is nothing to sweep.
        os.execv(args.sleep, [args.sleep, "2147483647"])
    node = own_node(args.state_dir)
    kubeconfig = args.state_dir / "kube-router.kubeconfig"
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"{STARTED_LINE}: {args.engine} on {node}: kube-router firewall only "
          f"(container command: {' '.join(container) or '-'})", flush=True)
    child = subprocess.Popen(
        enforcement.kube_router_argv(args.kube_router, str(kubeconfig), node),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    out = child.stdout

    def relay() -> None:
        # A pipe, not the log itself: the first full sync is known here. If this process dies
        # (SIGKILL), kube-router's next write gets EPIPE and it dies too: no orphan enforcer.
        announced = False
        for line in iter(out.readline, b""):
            sys.stdout.buffer.write(line)
            if not announced and enforcement.SYNC_LINE in line:
                sys.stdout.buffer.write(f"{ENFORCING_LINE} on {node}\n".encode())
                Path(SYNCED_FILE).touch()
                announced = True
            sys.stdout.buffer.flush()

    threading.Thread(target=relay, daemon=True).start()
    while child.poll() is None and not stopping.is_set():
        stopping.wait(0.5)
    if child.returncode == -signal.SIGTERM:
        # The node agent signals the container's process group: kube-router may have gone on
        # the same SIGTERM before this process's handler ran.
        stopping.set()
    if not stopping.is_set():
        print(f"netiso-lab engine double: kube-router exited {child.returncode}", flush=True)
        return child.returncode or 1
    child.terminate()
    try:
        child.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    started = time.monotonic()
    enforcement.cleanup(None)
    left = enforcement.chains(None) + enforcement.ipsets(None)
    print(f"netiso-lab engine double: stopped; swept kube-router's chains and ipsets on {node} "
          f"in {time.monotonic() - started:.2f} s" + (f", LEFT {left}" if left else ""),
          flush=True)
    return 1 if left else 0
