"""NetworkPolicy enforcement on/off: kube-router's firewall controller inside each node netns.

kube-router runs with only ``--run-firewall`` (no BGP router, no service proxy) under
``ip netns exec netiso-node-N``, so the iptables chains and ipsets it programs live in that node's
namespace and never in the host's. It finds "its" pods by ``status.hostIP`` equal to the node's
InternalIP, so the node agent's truthful pod status is what makes enforcement line up.

``on`` returns only when every node's filter table has kube-router's top-level chains hooked in
(FORWARD -> KUBE-ROUTER-FORWARD) and each newly started kube-router has logged its first full
policy sync — before that, policies are accepted but not (all) enforced, which is exactly the
state a test of "enforcement off" wants to be able to tell apart.

``off`` stops kube-router and removes its rules itself: v2.1.0's ``--cleanup-config`` builds an
empty policy controller whose cleanup iterates no iptables handler, so it would leave every chain
in place. The sweep drops every chain with a kube-router prefix (and each rule jumping to one)
from the filter table via iptables-save/restore, then destroys kube-router's ipsets; rules other
lab parts put in the node namespace are kept verbatim.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from tests.lab import build, controlplane
from tests.lab.kubeapi import Kube

KUBE_ROUTER_CHAIN = re.compile(r"KUBE-(ROUTER|NWPLCY|POD-FW|SRC|DST)-[A-Za-z0-9_-]*")
_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "KUBE-ROUTER-", "inet6:KUBE-")
_TOP_CHAINS = ("KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT")
# kube-router logs this at the end of every full policy sync (network_policy_controller.go).
SYNC_LINE = b"sync iptables took"

RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: netiso-lab:kube-router
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: netiso-lab:kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: netiso-lab:kube-router
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:kube-router
"""


@dataclass(frozen=True)
class EnforcedNode:
    """What the switch needs to know about a node: its Node name and its netns."""

    name: str
    netns: str


def process_name(node: EnforcedNode) -> str:
    return f"kube-router-{node.name}"


# iptables-save/restore and ipset answer in well under a second; a minute means a wedged xtables
# lock or kernel, and an error naming the command beats a test run that never ends.
COMMAND_TIMEOUT = 60.0


def _netns(netns: str | None, *argv: str, check: bool = True, stdin: str | None = None) -> str:
    """Run ``argv`` in ``netns``; None is this process's own netns (an engine double's pod, which
    runs in its node netns already and may not setns)."""
    where = f"netns {netns}" if netns is not None else "its own netns"
    prefix = ["ip", "netns", "exec", netns] if netns is not None else []
    try:
        proc = subprocess.run([*prefix, *argv], input=stdin,
                              capture_output=True, text=True, check=False,
                              timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise controlplane.LabError(
            f"`{' '.join(argv)}` in {where} did not finish in {COMMAND_TIMEOUT:.0f} s"
        ) from exc
    if check and proc.returncode != 0:
        raise controlplane.LabError(
            f"`{' '.join(argv)}` in {where} failed: {proc.stderr.strip()}"
        )
    return proc.stdout


def chains(netns: str | None) -> list[str]:
    """kube-router chains present in the filter table of ``netns``."""
    out = _netns(netns, "iptables-save", "-t", "filter", check=False)
    return sorted({m.group(1) for m in re.finditer(r"^:(\S+)", out, re.M)
                   if KUBE_ROUTER_CHAIN.fullmatch(m.group(1))})


def ipsets(netns: str | None) -> list[str]:
    out = _netns(netns, "ipset", "list", "-n", check=False)
    return sorted(n for n in out.split() if n.startswith(_IPSET_PREFIXES))


def hooked(netns: str | None) -> bool:
    out = _netns(netns, "iptables-save", "-t", "filter", check=False)
    return all(re.search(rf"^-A {base} .*-j {chain}\b", out, re.M)
               for base, chain in (("FORWARD", "KUBE-ROUTER-FORWARD"),
                                   ("INPUT", "KUBE-ROUTER-INPUT"),
                                   ("OUTPUT", "KUBE-ROUTER-OUTPUT")))


def _apply_rbac() -> None:
    kubectl = build.binary("kubectl")
    try:
        proc = subprocess.run(
            [str(kubectl), "--kubeconfig", str(controlplane.paths().admin_kubeconfig),
             "apply", "--server-side", "--field-manager=netiso-lab", "--request-timeout=30s",
             "-f", "-"],
            input=RBAC, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise controlplane.LabError(
            f"applying kube-router RBAC did not finish in {COMMAND_TIMEOUT:.0f} s"
        ) from exc
    if proc.returncode != 0:
        raise controlplane.LabError(f"applying kube-router RBAC failed: {proc.stderr.strip()}")


def ensure_rbac(kube: Kube) -> None:
    """RBAC through the API (server-side apply): what ``on`` applies with kubectl, for callers
    that hold a client already (the engine doubles' switches in engines.py)."""
    for obj in yaml.safe_load_all(RBAC):
        kind = obj["kind"].lower() + "s"
        kube.apply(f"/apis/rbac.authorization.k8s.io/v1/{kind}/{obj['metadata']['name']}", obj,
                   field_manager="netiso-lab")


def _argv(node: EnforcedNode) -> list[str]:
    return ["ip", "netns", "exec", node.netns,
            *kube_router_argv(str(build.binary("kube-router")),
                              str(controlplane.paths().kubeconfig("kube-router")), node.name)]


def kube_router_argv(binary: str, kubeconfig: str, node_name: str) -> list[str]:
    """kube-router as the lab runs it: firewall only, for ``node_name``, in the caller's netns
    (the lab's switch wraps it in ``ip netns exec``; an engine double already runs there)."""
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node_name}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        "--enable-cni=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={controlplane.SERVICE_CIDR}",
        # The default 5 min full resync is a safety net only; policy/pod events drive syncs.
        "--iptables-sync-period=1m",
        # Both servers would listen on every address of the node netns (pods can reach it);
        # readiness is judged from the chains instead.
        "--metrics-port=0",
        "--health-port=0",
        "--v=1",
    ]


def _log_size(node: EnforcedNode) -> int:
    try:
        return controlplane.paths().log(process_name(node)).stat().st_size
    except OSError:
        return 0


def _synced_since(node: EnforcedNode, offset: int) -> bool:
    # The first SYNC_LINE after a start means every existing policy and pod is programmed, not
    # just the top-level chains hooked in.
    try:
        with open(controlplane.paths().log(process_name(node)), "rb") as log:
            log.seek(offset)
            return SYNC_LINE in log.read()
    except OSError:
        return False


def on(nodes: Sequence[EnforcedNode], *, timeout: float = 180.0) -> None:
    """Start kube-router in every node netns (if not running); wait for its first full sync.

    Readiness is the chains hooked into FORWARD/INPUT/OUTPUT plus one completed full sync: with
    hundreds of policies in the cluster (benchmarks) a sync takes seconds, and a test flipping
    enforcement on must not probe before existing policies are enforced.
    """
    _apply_rbac()
    started: dict[str, int] = {}
    for node in nodes:
        if controlplane.running(process_name(node)) is None:
            started[node.name] = _log_size(node)
            controlplane.start_process(process_name(node), _argv(node))
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        pending = [n for n in pending
                   if not (hooked(n.netns)
                           and (n.name not in started or _synced_since(n, started[n.name])))]
        for node in pending:
            if controlplane.running(process_name(node)) is None:
                log = controlplane.paths().log(process_name(node))
                raise controlplane.LabError(f"kube-router on {node.name} exited; see {log}")
        if pending and time.monotonic() > deadline:
            names = ", ".join(n.name for n in pending)
            raise controlplane.LabError(f"kube-router not synced on {names} after {timeout} s")
        if pending:
            time.sleep(0.2)


def without_kube_router(saved: str) -> str:
    """``iptables-save`` text minus kube-router's chains and every rule that mentions one."""
    kept = []
    for line in saved.splitlines():
        if line.startswith(":") and KUBE_ROUTER_CHAIN.fullmatch(line[1:].split()[0]):
            continue
        if line.startswith("-A") and KUBE_ROUTER_CHAIN.search(line):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _sweep_filter_table(netns: str | None) -> None:
    saved = _netns(netns, "iptables-save", "-t", "filter", check=False)
    if KUBE_ROUTER_CHAIN.search(saved):
        _netns(netns, "iptables-restore", "-T", "filter", stdin=without_kube_router(saved))


def cleanup(netns: str | None) -> None:
    """Remove every kube-router chain, rule and ipset from ``netns`` (None: this process's)."""
    _sweep_filter_table(netns)
    for name in ipsets(netns):
        _netns(netns, "ipset", "destroy", name, check=False)


def off(nodes: Sequence[EnforcedNode]) -> None:
    """Stop kube-router everywhere and leave no KUBE-ROUTER chains or ipsets behind."""
    for node in nodes:
        # kube-router v2.1.0 leaves its rules on SIGTERM anyway (the sweep below removes them),
        # so waiting out its shutdown only slows every test that flips the switch.
        controlplane.stop_process(process_name(node), grace=1.0)
    for node in nodes:
        cleanup(node.netns)
        left = chains(node.netns) + ipsets(node.netns)
        if left:
            raise controlplane.LabError(f"kube-router leftovers in {node.netns}: {left}")


def state(nodes: Sequence[EnforcedNode]) -> str:
    """``on`` (every node enforcing), ``off`` (none), or ``partial``."""
    flags = [controlplane.running(process_name(n)) is not None and hooked(n.netns)
             for n in nodes]
    if flags and all(flags):
        return "on"
    if not any(flags) and not any(chains(n.netns) for n in nodes):
        return "off"
    return "partial"
