"""The lab's kubelet stand-in: registers Nodes, keeps Leases, binds pods and runs them.

`python -m tests.lab.node_agent --kubeconfig K --state-dir S --node name:netns:ip:podcidr ...
--flavor generic|eks|gke|aks`

Design decisions:
- One cluster-wide pod watch (raw JSON, see kubeapi.py) feeds both the scheduler part (pods with
  no nodeName) and the pod workers (pods bound to our nodes). Namespaces are never watched, so a
  benchmark with hundreds of empty namespaces costs the agent nothing.
- A pod is run by its own worker thread with an event queue, like kubelet's pod workers: watch
  updates, container exits (one waiter thread per process, blocking in wait()) and timers
  (back-off, grace period) are serialised per pod, and pods never wait on each other.
- Containers are child processes inside the pod netns (see network.pod_exec_argv for the private
  /dev, /tmp and UTS namespace each gets). Status is computed from what really happened (exit
  codes, signals, the termination-message file) and sent as one strategic-merge patch when it
  changes. Readiness = running: probes are not executed (documented gap).
- Restart back-off follows kubelet: first restart immediately, then 10 s doubling to 300 s,
  reset after 10 minutes of running; image "pulls" back off the same way.
- Deletion: SIGTERM to each container's process group, SIGKILL after the pod's
  deletionGracePeriodSeconds, netns removed, then the pod object is deleted with grace 0 and a UID
  precondition (what kubelet does once a pod's containers are gone).
- Agent restart: pods already bound to our nodes whose processes we no longer own are treated as
  after a node reboot: leftover processes are killed, each running container counts as exited
  with 137, and the restart policy decides; the pod keeps its IP. Orphan pod netns are removed.
- The kube-dns Service has a minimal kube-proxy stand-in: when the kube-system pod labelled
  k8s-app=kube-dns runs, every node netns DNATs 10.96.0.10:53 to it (network.set_dns_target). The
  agent also keeps dnsmasq's hosts directory (dns.py) filled with Service and pod names.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab import dns, images, kubelet_server, network, probes, volumes
from tests.lab.kubeapi import JSON, ApiError, Kube
from tests.lab.network import NodeSpec

log = logging.getLogger("node-agent")

NETNS_ANNOTATION = "lab.netiso.io/netns"
LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_HEARTBEAT = 30.0
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0
MESSAGE_LIMIT = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- flavours (pure)


def node_look(
    flavor: str, node: NodeSpec, index: int, version: str
) -> tuple[str, dict[str, str], str]:
    """(providerID, provider labels, kubeletVersion) that make a node look like a managed one."""
    suffix = hashlib.sha1(node.name.encode()).hexdigest()[:8]
    if flavor == "eks":
        return (
            f"aws:///us-west-2a/i-0abc{suffix}{index:05d}",
            {
                "eks.amazonaws.com/nodegroup": "netiso-lab-ng",
                "eks.amazonaws.com/capacityType": "ON_DEMAND",
                "topology.kubernetes.io/region": "us-west-2",
                "topology.kubernetes.io/zone": "us-west-2a",
                "node.kubernetes.io/instance-type": "m5.large",
            },
            f"{version}-eks-113cf36",
        )
    if flavor == "gke":
        return (
            f"gce://netiso-lab/us-central1-a/gke-lab-default-pool-{suffix}-{index:04d}",
            {
                "cloud.google.com/gke-nodepool": "default-pool",
                "cloud.google.com/gke-os-distribution": "cos",
                "topology.kubernetes.io/region": "us-central1",
                "topology.kubernetes.io/zone": "us-central1-a",
                "node.kubernetes.io/instance-type": "e2-standard-2",
            },
            f"{version}-gke.100",
        )
    if flavor == "aks":
        return (
            "azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
            "mc_netiso-lab_lab_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/"
            f"aks-nodepool1-{suffix}-vmss/virtualMachines/{index}",
            {
                "kubernetes.azure.com/cluster": "MC_netiso-lab_lab_westeurope",
                "kubernetes.azure.com/agentpool": "nodepool1",
                "agentpool": "nodepool1",
                "topology.kubernetes.io/region": "westeurope",
                "topology.kubernetes.io/zone": "0",
                "node.kubernetes.io/instance-type": "Standard_D2s_v3",
            },
            version,
        )
    if flavor == "generic":
        return "", {}, version
    raise ValueError(f"unknown flavor {flavor!r} (generic, eks, gke, aks)")


def node_object(
    flavor: str, node: NodeSpec, index: int, version: str, since: str | None = None
) -> JSON:
    provider_id, labels, kubelet_version = node_look(flavor, node, index, version)
    spec: JSON = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]}
    if provider_id:
        spec["providerID"] = provider_id
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **labels,
            },
        },
        "spec": spec,
        "status": node_status(node, kubelet_version, since),
    }


def node_status(node: NodeSpec, kubelet_version: str, since: str | None = None) -> JSON:
    """Node status; `since` is when the conditions last changed (the agent's start)."""
    now = now_iso()
    since = since or now
    resources = {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}

    def cond(kind: str, status: str, reason: str, message: str) -> JSON:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    return {
        # No Hostname address: the API server dials the first of Hostname, InternalDNS,
        # InternalIP... it finds for `kubectl logs`, and lab node names resolve nowhere.
        "addresses": [{"type": "InternalIP", "address": node.ip}],
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond("Ready", "True", "KubeletReady", "netiso lab node agent is posting ready status"),
        ],
        "nodeInfo": {
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": kubelet_version,
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "netiso lab (Debian network namespaces)",
            "kernelVersion": os.uname().release,
            "containerRuntimeVersion": "netiso-lab://1.0",
            "machineID": hashlib.md5(node.name.encode()).hexdigest(),
            "systemUUID": hashlib.md5(node.name.encode()).hexdigest(),
            "bootID": hashlib.md5(node.ip.encode()).hexdigest(),
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


# ---------------------------------------------------------------- scheduling (pure)


def _match_expression(labels: dict[str, str], expr: JSON) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def tolerates(pod: JSON, taint: JSON) -> bool:
    """The scheduler's toleration match for one taint (PreferNoSchedule never blocks)."""
    if taint.get("effect") == "PreferNoSchedule":
        return True
    for tol in pod.get("spec", {}).get("tolerations") or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        op = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if op == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_taints(node: JSON) -> list[JSON]:
    """A Node's taints, with a cordoned node's implicit unschedulable taint."""
    spec = node.get("spec") or {}
    taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
    if spec.get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return taints


def untolerated(pod: JSON, taints: list[JSON]) -> list[JSON]:
    return [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
            and not tolerates(pod, t)]


def node_fits(
    pod: JSON, node_name: str, labels: dict[str, str], taints: list[JSON] | None = None
) -> bool:
    """nodeSelector, required node affinity (matchExpressions on labels, matchFields on
    metadata.name, as DaemonSet pods use) and taints against tolerations."""
    spec = pod.get("spec", {})
    if untolerated(pod, taints or []):
        return False
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        fields = {"metadata.name": node_name}
        ok = False
        for term in terms:
            exprs = term.get("matchExpressions") or []
            field_exprs = term.get("matchFields") or []
            if all(_match_expression(labels, e) for e in exprs) and all(
                _match_expression(fields, e) for e in field_exprs
            ):
                ok = True
                break
        if not ok:
            return False
    return True


def unschedulable_reasons(
    pod: JSON, labels: dict[str, dict[str, str]], taints: dict[str, list[JSON]]
) -> str:
    """The scheduler's summary: how many nodes failed on which account."""
    tainted = affinity = 0
    for name, node_labels in labels.items():
        bad = untolerated(pod, taints.get(name, []))
        if bad:
            tainted += 1
        elif not node_fits(pod, name, node_labels):
            affinity += 1
    parts = []
    if tainted:
        parts.append(f"{tainted} node(s) had untolerated taint(s)")
    if affinity:
        parts.append(f"{affinity} node(s) didn't match Pod's node affinity/selector")
    return ", ".join(parts) + "."


# ---------------------------------------------------------------- pod status helpers (pure)


def exit_code_of(returncode: int) -> int:
    """Popen's negative "killed by signal N" becomes the runtime's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def restart_wanted(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def backoff_delay(restarts_done: int) -> float:
    """kubelet's crash-loop back-off: 0 for the first restart, then 10 s doubling up to 300 s."""
    if restarts_done <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_START * (2 ** (restarts_done - 1))))


def tail_of(path: Path, lines: int = FALLBACK_LINES, limit: int = FALLBACK_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    text = b"\n".join(data.splitlines()[-lines:]).decode(errors="replace")
    return text[-limit:]


def pod_phase(policy: str, containers: list[tuple[bool, bool, int | None]]) -> str:
    """Phase from (started_ever, running, last_exit_code_if_terminated) per regular container."""
    if not containers or not all(started for started, _, _ in containers):
        return "Pending"
    if any(running for _, running, _ in containers):
        return "Running"
    codes = [code for _, _, code in containers]
    if policy == "Always":
        return "Running"
    if policy == "OnFailure":
        return "Succeeded" if all(c == 0 for c in codes) else "Running"
    if all(c == 0 for c in codes):
        return "Succeeded"
    return "Failed"


# ---------------------------------------------------------------- IPAM


class IPAllocator:
    """Hands out pod IPs from a node's CIDR, cycling forward so a just-freed IP is not reused at
    once (a fresh pod inheriting a dead pod's IP confuses conntrack and policy tests)."""

    def __init__(self, cidr: str, gateway: str) -> None:
        net = ipaddress.IPv4Network(cidr)
        self.pool = [str(h) for h in net.hosts() if str(h) != gateway]
        self.used: set[str] = set()
        self.cursor = 0
        self.lock = threading.Lock()

    def reserve(self, ip: str) -> bool:
        with self.lock:
            if ip in self.used or ip not in self.pool:
                return False
            self.used.add(ip)
            return True

    def allocate(self) -> str:
        with self.lock:
            for i in range(len(self.pool)):
                ip = self.pool[(self.cursor + i) % len(self.pool)]
                if ip not in self.used:
                    self.cursor = (self.cursor + i + 1) % len(self.pool)
                    self.used.add(ip)
                    return ip
        raise RuntimeError("pod CIDR exhausted")

    def release(self, ip: str | None) -> None:
        with self.lock:
            self.used.discard(ip or "")


# ---------------------------------------------------------------- containers


@dataclass
class Container:
    name: str
    spec: JSON
    init: bool
    image: images.Image | None = None
    image_error: str = ""
    image_attempts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    runs: int = 0
    started_at: str = ""
    started_mono: float = 0.0
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    next_start: float = 0.0
    start_failures: int = 0
    # Probe state of the current run (probes.py): started = startup probe passed (or none),
    # ready = readiness passed (or none); kill_at = SIGKILL deadline after a failed liveness.
    started: bool = False
    ready: bool = False
    # The container init finished (mounts done, the process exec'd): only then is it running.
    launched: bool = False
    env: dict[str, str] = field(default_factory=dict)
    kill_at: float | None = None
    prober: probes.Prober | None = None
    done: bool = False  # init container completed / regular container will not run again
    last_exit: int | None = None
    dir: Path = Path()

    @property
    def running(self) -> bool:
        """A process exists (maybe still in its init)."""
        return self.proc is not None

    @property
    def up(self) -> bool:
        """Running as status reports it: the init has exec'd the container's own process."""
        return self.proc is not None and self.launched

    @property
    def ever_up(self) -> bool:
        return self.runs > 1 or (self.runs == 1 and (self.launched or self.proc is None))

    def status(self, uid: str) -> JSON:
        def full(state: JSON) -> JSON:
            return {k: state.get(k) for k in ("waiting", "running", "terminated")}

        ref = self.image.reference if self.image else self.spec.get("image", "")
        out: JSON = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"netiso-lab://{ref}" if self.image else "",
            "ready": self.up and self.ready and not self.init,
            "restartCount": self.restarts,
            "started": self.up and self.started,
            "state": full(self.state),
            "lastState": full(self.last_state) if self.last_state else {},
        }
        if self.runs:
            out["containerID"] = f"netiso-lab://{uid[:8]}-{self.name}-{self.runs}"
        return out


class PodWorker(threading.Thread):
    """Runs one pod: sandbox, containers, restarts, status, teardown. All state is thread-local to
    this worker; other threads only put events on its queue."""

    def __init__(self, agent: Agent, pod: JSON, node: NodeSpec, adopted: bool) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.node = node
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.adopted = adopted
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.policy: str = pod["spec"].get("restartPolicy") or "Always"
        self.host_network = bool(pod["spec"].get("hostNetwork"))
        self.ip: str | None = None
        self.netns: str | None = None
        self.sandbox_ready = False
        self.sandbox_gone = False
        self.start_time = pod.get("status", {}).get("startTime") or now_iso()
        self.dir = agent.state_dir / "pods" / f"{self.ns}_{self.pod_name}_{self.uid}"
        self.init_containers = [
            Container(c["name"], c, True) for c in pod["spec"].get("initContainers") or []
        ]
        self.containers = [
            Container(c["name"], c, False) for c in pod["spec"].get("containers") or []
        ]
        self.kill_deadline: float | None = None
        self.terminating = False
        self.finished = False
        self.last_status: JSON | None = None
        self.cond_times: dict[str, tuple[str, str]] = {}
        self.sandbox_error = ""
        self.sandbox_retry = 0.0
        self.step_failures = 0
        self.retry_at = 0.0
        self.volume_dirs: dict[str, Path] = {}

    # -- entry points for other threads
    def update(self, pod: JSON) -> None:
        self.events.put(("update", pod))

    def gone(self) -> None:
        self.events.put(("gone", None))

    # -- loop
    def run(self) -> None:
        # A worker never dies while its pod exists: an unexpected exception is logged and the
        # step retried with back-off (a dead worker left its pod Pending forever, issue #16).
        try:
            self._guarded(self._sync)
            while not self.finished:
                wait = self._next_wakeup()
                try:
                    kind, payload = self.events.get(timeout=wait)
                except queue.Empty:
                    kind, payload = "tick", None
                self._guarded(self._handle, kind, payload)
                while not self.events.empty():
                    kind, payload = self.events.get_nowait()
                    self._guarded(self._handle, kind, payload)
                self._guarded(self._sync)
        finally:
            self.agent.worker_done(self)

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            self.step_failures += 1
            delay = max(1.0, backoff_delay(self.step_failures - 1))
            log.exception(
                "pod worker %s/%s: %s failed; retrying in %.0f s",
                self.ns,
                self.pod_name,
                getattr(step, "__name__", "step"),
                delay,
            )
            self.retry_at = time.monotonic() + delay
        else:
            if step == self._sync:
                self.step_failures = 0

    def _next_wakeup(self) -> float | None:
        deadlines = [
            c.next_start for c in self._all() if not c.running and not c.done and c.next_start
        ]
        if self.kill_deadline is not None:
            deadlines.append(self.kill_deadline)
        if self.sandbox_retry:
            deadlines.append(self.sandbox_retry)
        if self.retry_at:
            deadlines.append(self.retry_at)
        deadlines += [c.kill_at for c in self._all() if c.running and c.kill_at is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic()) + 0.005

    def _all(self) -> list[Container]:
        return self.init_containers + self.containers

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "update":
            self.pod = payload
        elif kind == "exit":
            cname, proc = payload
            for c in self._all():
                if c.name == cname and c.proc is proc:
                    self._on_exit(c)
        elif kind == "launched":
            cname, proc = payload
            for c in self._all():
                if c.name == cname and c.proc is proc and not c.launched:
                    self._on_launched(c)
        elif kind == "probe":
            cname, proc, what, ok, message = payload
            for c in self._all():
                if c.name == cname and c.proc is proc:
                    self._on_probe(c, what, ok, message)
        elif kind == "gone":
            # The object is gone (force delete): stop everything now, nobody reads status.
            self.finished = True
            self._kill_all(signal.SIGKILL)
            self._teardown()

    # -- reconcile
    def _sync(self) -> None:
        self.retry_at = 0.0
        if self.finished:
            return
        meta = self.pod["metadata"]
        if meta.get("deletionTimestamp"):
            self._terminate()
            return
        if not self.sandbox_ready and not self.sandbox_gone and not self._setup_sandbox():
            self._report()
            return
        now = time.monotonic()
        for c in self._all():
            if c.running and c.kill_at is not None and now >= c.kill_at:
                assert c.proc is not None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.kill_at = None
        pending_init = [c for c in self.init_containers if not c.done]
        if any(self._failed_for_good(c) for c in self.init_containers):
            pass  # a failed init container with restartPolicy Never fails the pod: start nothing
        elif pending_init:
            c = pending_init[0]
            if not c.running and now >= c.next_start:
                self._start(c)
        else:
            for c in self.containers:
                if not c.running and not c.done and now >= c.next_start:
                    self._start(c)
        self._report()
        if self._phase() in ("Succeeded", "Failed") and not self.sandbox_gone:
            # kubelet tears the sandbox down once a pod is terminal; the IP is released, the
            # status keeps showing it.
            self._teardown()

    def _failed_for_good(self, c: Container) -> bool:
        return c.init and c.last_exit not in (None, 0) and self.policy == "Never"

    def _setup_sandbox(self) -> bool:
        if self.sandbox_retry and time.monotonic() < self.sandbox_retry:
            return False
        spec = self.pod["spec"]
        try:
            if self.host_network:
                self.ip = self.node.ip
                self.netns = self.node.netns
            else:
                old_ip = self.pod.get("status", {}).get("podIP")
                alloc = self.agent.ipam[self.node.name]
                if old_ip and alloc.reserve(old_ip):
                    self.ip = old_ip
                else:
                    self.ip = alloc.allocate()
                hostname = spec.get("hostname") or self.pod_name
                resolv = network.resolv_conf(
                    self.ns, spec.get("dnsPolicy"), spec.get("dnsConfig"), self.host_network
                )
                hosts = network.hosts_file(self.ip, hostname, self.ns, spec.get("subdomain"))
                # EKS: the VPC CNI's veth names, which Calico's `eni` interface prefix matches.
                veth = (
                    network.eni_veth_name(self.ns, self.pod_name)
                    if self.agent.flavor == "eks"
                    else None
                )
                self.netns = network.create_pod_netns(
                    self.node, self.uid, self.ip, resolv=resolv, hosts=hosts, veth=veth
                )
            self.agent.annotate(self.pod, self.netns)
        except Exception as exc:
            log.warning("sandbox for %s/%s failed: %s", self.ns, self.pod_name, exc)
            self.sandbox_error = str(exc)
            self.sandbox_retry = time.monotonic() + 2
            if self.ip and not self.host_network:
                self.agent.ipam[self.node.name].release(self.ip)
                self.ip = None
            return False
        self.sandbox_error = ""
        self.sandbox_retry = 0.0
        self.sandbox_ready = True
        self.dir.mkdir(parents=True, exist_ok=True)
        return True

    def _env(self, c: Container) -> dict[str, str]:
        """The container's environment, by kubelet's rules; a missing ConfigMap/Secret (or key)
        that is not optional raises volumes.ConfigError (CreateContainerConfigError)."""
        assert c.image is not None
        env = {
            "PATH": c.image.path,
            "HOSTNAME": self.pod["spec"].get("hostname") or self.pod_name,
            "HOME": "/root",
            "KUBERNETES_SERVICE_HOST": network.KUBERNETES_SERVICE_IP,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": f"tcp://{network.KUBERNETES_SERVICE_IP}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{network.KUBERNETES_SERVICE_IP}:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": network.KUBERNETES_SERVICE_IP,
        }
        for src in c.spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind, ref in (
                ("configmaps", src.get("configMapRef")),
                ("secrets", src.get("secretRef")),
            ):
                if ref:
                    data = self._data(kind, ref.get("name", ""), bool(ref.get("optional")))
                    for k, v in (data or {}).items():
                        env[prefix + k] = v
        for item in c.spec.get("env") or []:
            name = item.get("name")
            if not name:
                continue
            if "value" in item:
                env[name] = _expand(str(item.get("value") or ""), env)
            elif item.get("valueFrom"):
                value = self._value_from(item["valueFrom"], c)
                if value is not None:
                    env[name] = value
        return network.marked_env(f"container:{self.uid}:{c.name}", env)

    def _data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        data = self.agent.read_data(self.ns, kind, name)
        if data is None and not optional:
            raise volumes.ConfigError(f'{kind.rstrip("s")} "{name}" not found')
        return data

    def _field(self, path: str) -> str | None:
        """A downward API fieldPath's value (env fieldRef and downwardAPI volumes)."""
        meta = self.pod["metadata"]
        values = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": self.node.name,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.podIP": self.ip or "",
            "status.podIPs": self.ip or "",
            "status.hostIP": self.node.ip,
            "status.hostIPs": self.node.ip,
            "metadata.labels": volumes.map_lines(meta.get("labels") or {}),
            "metadata.annotations": volumes.map_lines(meta.get("annotations") or {}),
        }
        if path in values:
            return str(values[path])
        for prefix, data in (
            ("metadata.labels['", meta.get("labels") or {}),
            ("metadata.annotations['", meta.get("annotations") or {}),
        ):
            if path.startswith(prefix) and path.endswith("']"):
                return str(data.get(path[len(prefix) : -2], ""))
        return None

    def _value_from(self, source: JSON, c: Container) -> str | None:
        if "fieldRef" in source:
            return self._field(source["fieldRef"].get("fieldPath", ""))
        if "resourceFieldRef" in source:
            return volumes.resource_value(
                source["resourceFieldRef"], self._all_specs(), c.name
            )
        for kind, key, label in (
            ("configmaps", "configMapKeyRef", "ConfigMap"),
            ("secrets", "secretKeyRef", "Secret"),
        ):
            if key in source:
                ref = source[key]
                optional = bool(ref.get("optional"))
                data = self._data(kind, ref.get("name", ""), optional)
                if data is None:
                    return None
                if ref.get("key", "") not in data:
                    if optional:
                        return None
                    raise volumes.ConfigError(
                        f"couldn't find key {ref.get('key', '')} in {label} "
                        f"{self.ns}/{ref.get('name', '')}"
                    )
                return data[ref.get("key", "")]
        return None

    def _all_specs(self) -> list[JSON]:
        return [c.spec for c in self._all()]

    # -- volumes
    def _volume_sources(self) -> volumes.Sources:
        def obj(kind: str) -> Callable[[str], JSON | None]:
            return lambda name: self.agent.read_object(self.ns, kind, name)

        return volumes.Sources(
            config_map=obj("configmaps"),
            secret=obj("secrets"),
            token=self._token,
            field=self._field,
            resource=lambda ref: volumes.resource_value(ref, self._all_specs(), None),
        )

    def _token(self, audience: str | None, expiration: int) -> str:
        """A TokenRequest token for the pod's ServiceAccount, bound to the pod (as kubelet's)."""
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": max(600, expiration),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.pod_name,
                               "uid": self.uid},
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            out = self.agent.kube.create(
                f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body
            )
        except ApiError as exc:
            raise volumes.ConfigError(f"serviceaccount {self.ns}/{sa}: token request: {exc}") \
                from exc
        return str(out["status"]["token"])

    def _materialize_volumes(self) -> None:
        """Fill every pod volume once (kubelet mounts all of them before any container)."""
        sources = self._volume_sources()
        node_root = self.agent.state_dir / "nodes" / self.node.name / "root"
        for vol in self.pod["spec"].get("volumes") or []:
            name = str(vol.get("name", ""))
            if name in self.volume_dirs:
                continue
            if "hostPath" in vol:
                path = volumes.host_path(node_root, vol)
            else:
                path = self.dir / "volumes" / name
                files = volumes.volume_files(vol, sources)
                if files is None and "emptyDir" not in vol:
                    kinds = sorted(k for k in vol if k != "name")
                    raise volumes.ConfigError(
                        f"volume {name!r}: {', '.join(kinds)} volumes are not supported by "
                        "the netiso lab"
                    )
                path.mkdir(parents=True, exist_ok=True)
                if files:
                    volumes.write_files(path, files)
            self.volume_dirs[name] = path

    def _mount_plan(self, c: Container) -> volumes.Plan:
        mounts: list[tuple[str, str, bool]] = []
        specs = {str(v.get("name")): v for v in self.pod["spec"].get("volumes") or []}
        for m in c.spec.get("volumeMounts") or []:
            name = str(m.get("name", ""))
            if name not in self.volume_dirs:
                raise volumes.ConfigError(f"volumeMount {name!r}: no such volume")
            src = self.volume_dirs[name]
            sub = m.get("subPath") or ""
            if sub:
                src = src / volumes.safe_relative(sub)
                if not src.exists():
                    src.mkdir(parents=True)  # kubelet creates a missing subPath as a directory
            # Kubelet mounts these kinds read-only whatever the volumeMount says.
            always_ro = any(k in specs.get(name, {}) for k in
                            ("configMap", "secret", "projected", "downwardAPI"))
            mounts.append((str(src), str(m.get("mountPath", "")),
                           bool(m.get("readOnly")) or always_ro))
        return volumes.mount_plan(mounts)

    def _start(self, c: Container) -> None:
        """Start a container; a failure nobody foresaw is CreateContainerError with back-off."""
        try:
            self._create_and_start(c)
        except volumes.ConfigError as exc:
            # Usually something about to appear (a fresh namespace's kube-root-ca.crt, a Secret
            # created right after the pod): retried soon, like kubelet's volume reconciler.
            c.start_failures += 1
            log.info("%s/%s[%s]: %s", self.ns, self.pod_name, c.name, exc)
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            c.next_start = time.monotonic() + min(2.0, 0.25 * 2**c.start_failures)
        except Exception as exc:
            c.start_failures += 1
            delay = backoff_delay(c.start_failures)
            log.exception(
                "starting %s/%s[%s] failed; retrying in %.0f s",
                self.ns,
                self.pod_name,
                c.name,
                delay,
            )
            c.state = {
                "waiting": {
                    "reason": "CreateContainerError",
                    "message": f"failed to create container {c.name}: {exc}",
                }
            }
            c.next_start = time.monotonic() + delay

    def _create_and_start(self, c: Container) -> None:
        if c.image is None:
            try:
                c.image = images.resolve(c.spec.get("image", ""), self.agent.state_dir)
                c.image_error = ""
            except images.ImageNotFound as exc:
                c.image_attempts += 1
                c.image_error = str(exc)
                reason = "ErrImagePull" if c.image_attempts == 1 else "ImagePullBackOff"
                message = (
                    str(exc)
                    if reason == "ErrImagePull"
                    else (
                        f'Back-off pulling image "{c.spec.get("image", "")}": ErrImagePull: {exc}'
                    )
                )
                c.state = {"waiting": {"reason": reason, "message": message}}
                c.next_start = time.monotonic() + backoff_delay(c.image_attempts)
                if c.image_attempts == 1:
                    # Show ErrImagePull first, then move to ImagePullBackOff shortly after, as
                    # kubelet does between its first pull and its first back-off.
                    c.next_start = time.monotonic() + 2
                return
        assert self.netns is not None
        env = self._env(c)
        # kubelet expands $(VAR) in command and args from the container's environment.
        command = [_expand(str(a), env) for a in c.spec.get("command") or []]
        args = [_expand(str(a), env) for a in c.spec.get("args") or []]
        try:
            argv = c.image.container_argv(command or None, args or None)
        except images.ImageNotFound as exc:
            # What a runtime says for a container it cannot create (e.g. no command at all).
            c.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
            c.next_start = time.monotonic() + BACKOFF_START
            return
        c.dir = self.dir / c.name
        c.dir.mkdir(parents=True, exist_ok=True)
        term_file = c.dir / "termination-log"
        term_file.write_bytes(b"")
        term_path = c.spec.get("terminationMessagePath") or "/dev/termination-log"
        termination = (
            (str(term_file), term_path) if network.termination_path_supported(term_path) else None
        )
        self._materialize_volumes()
        plan = self._mount_plan(c)
        rootfs = c.dir / "rootfs"
        if plan.new_root:
            rootfs.mkdir(exist_ok=True)
        log_path = c.dir / f"{c.runs}.log"
        full = network.pod_exec_argv(
            self.netns,
            argv,
            hostname=None
            if self.host_network
            else (self.pod["spec"].get("hostname") or self.pod_name)[:63],
            termination=termination,
            workdir=c.spec.get("workingDir"),
            mounts=plan.script,
            new_root=str(rootfs) if plan.new_root else None,
            caps=network.container_caps(c.spec.get("securityContext")),
        )
        # The init closes its end of this pipe just before it execs the container's process:
        # EOF says "launched" (or dead), and only then is the container reported running.
        launch_r, launch_w = os.pipe()
        full = network.with_launch_fd(full, launch_w)
        try:
            with open(log_path, "ab") as out:
                c.proc = subprocess.Popen(
                    full,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    cwd="/",
                    pass_fds=(launch_w,),
                )
        except BaseException:
            os.close(launch_r)
            raise
        finally:
            os.close(launch_w)
        if c.runs:
            c.restarts += 1
        c.runs += 1
        c.started_at = now_iso()
        c.started_mono = time.monotonic()
        c.state = {"waiting": {"reason": "ContainerCreating"}}
        c.launched = False
        c.next_start = 0.0
        c.start_failures = 0
        c.kill_at = None
        c.env = env
        c.started, c.ready, c.prober = False, False, None
        proc = c.proc
        threading.Thread(
            target=self._wait_launch, args=(c.name, proc, launch_r), name=f"launch-{c.name}",
            daemon=True,
        ).start()
        threading.Thread(
            target=self._wait_proc, args=(c.name, proc), name=f"wait-{c.name}", daemon=True
        ).start()
        log.info("started %s/%s[%s] pid %d: %s", self.ns, self.pod_name, c.name, proc.pid, argv)

    def _wait_launch(self, name: str, proc: subprocess.Popen[bytes], fd: int) -> None:
        try:
            while os.read(fd, 64):
                pass
        finally:
            os.close(fd)
        self.events.put(("launched", (name, proc)))

    def _on_launched(self, c: Container) -> None:
        assert c.proc is not None
        c.launched = True
        c.state = {"running": {"startedAt": c.started_at}}
        probed = not c.init and any(
            c.spec.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")
        )
        c.started = c.ready = not probed
        if probed:
            c.prober = self._start_prober(c, c.proc, c.env)

    def _start_prober(
        self, c: Container, proc: subprocess.Popen[bytes], env: dict[str, str]
    ) -> probes.Prober:
        assert self.netns is not None and self.ip is not None
        ports = {
            str(p["name"]): int(p["containerPort"])
            for p in c.spec.get("ports") or []
            if p.get("name") and p.get("containerPort")
        }
        target = probes.Target(self.netns, self.ip, proc.pid, env, ports, c.image)

        def report(what: str, ok: bool, message: str) -> None:
            self.events.put(("probe", (c.name, proc, what, ok, message)))

        prober = probes.Prober(
            f"{self.ns}/{self.pod_name}[{c.name}]",
            c.spec,
            target,
            report,
            lambda: proc.poll() is None and not self.terminating,
        )
        prober.start()
        return prober

    def _on_probe(self, c: Container, what: str, ok: bool, message: str) -> None:
        if what == "started":
            c.started = True
        elif what == "ready":
            c.ready = ok
        elif what == "unhealthy" and c.proc is not None and c.kill_at is None:
            # kubelet kills an unhealthy container (SIGTERM, SIGKILL after the grace period);
            # the restart policy and back-off then decide as for any exit.
            log.info("%s/%s[%s]: %s", self.ns, self.pod_name, c.name, message)
            grace = (c.spec.get("livenessProbe") or {}).get("terminationGracePeriodSeconds")
            if grace is None:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
            c.ready = False
            c.kill_at = time.monotonic() + max(0, int(grace))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGTERM)

    def _wait_proc(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.events.put(("exit", (name, proc)))

    def _on_exit(self, c: Container) -> None:
        assert c.proc is not None
        code = exit_code_of(c.proc.returncode if c.proc.returncode is not None else -9)
        pgid = c.proc.pid  # start_new_session=True made the container process a group leader
        c.proc = None
        c.ready = c.started = c.launched = False
        c.kill_at = None
        if c.prober is not None:
            c.prober.stop.set()
            c.prober = None
        c.last_exit = code
        # Anything the container left behind (backgrounded children) dies with its process, as it
        # would with its pid namespace.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        message = ""
        term_file = c.dir / "termination-log"
        with contextlib.suppress(OSError):
            message = term_file.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
        policy = c.spec.get("terminationMessagePolicy") or "File"
        if not message and policy == "FallbackToLogsOnError" and code != 0:
            message = tail_of(c.dir / f"{c.runs - 1}.log")
        term: JSON = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_iso(),
            "containerID": f"netiso-lab://{self.uid[:8]}-{c.name}-{c.runs}",
        }
        if code > 128:
            term["signal"] = code - 128
        if message:
            term["message"] = message
        ran = time.monotonic() - c.started_mono
        if self.terminating:
            c.state = {"terminated": term}
            c.done = True
            return
        if c.init:
            if code == 0:
                c.done = True
                c.state = {"terminated": term}
                return
            again = self.policy != "Never"
        else:
            again = restart_wanted(self.policy, code)
        if not again:
            c.state = {"terminated": term}
            c.done = True
            return
        delay = backoff_delay(c.restarts if ran <= BACKOFF_RESET_AFTER else 0)
        c.last_state = {"terminated": term}
        c.next_start = time.monotonic() + delay
        if delay > 0:
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(delay)}s restarting failed container={c.name} "
                    f"pod={self.pod_name}_{self.ns}({self.uid})",
                }
            }
        else:
            c.state = {"terminated": term}

    def _kill_all(self, sig: int) -> None:
        for c in self._all():
            if c.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, sig)

    def _terminate(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + max(0, int(grace))
        if not self.terminating:
            self.terminating = True
            self.kill_deadline = deadline
            self._kill_all(signal.SIGTERM)
            for c in self._all():
                c.next_start = 0.0
                if not c.running:
                    c.done = True
        elif self.kill_deadline is not None and deadline < self.kill_deadline:
            # A second delete with a shorter grace period (e.g. --grace-period=1) shortens it.
            self.kill_deadline = deadline
        if any(c.running for c in self._all()):
            if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline:
                self._kill_all(signal.SIGKILL)
                self.kill_deadline = None
            return
        self._teardown()
        self.agent.delete_pod(self.ns, self.pod_name, self.uid)
        self.finished = True

    def _teardown(self) -> None:
        if self.sandbox_gone:
            return
        self.sandbox_gone = True
        if self.netns and not self.host_network:
            network.delete_pod_netns(self.netns, self.node, self.ip)
            self.agent.ipam[self.node.name].release(self.ip)
        elif self.host_network:
            # hostNetwork containers share the node netns: kill only their process groups.
            self._kill_all(signal.SIGKILL)

    # -- status
    def _phase(self) -> str:
        if not self.sandbox_ready:
            return "Pending"
        if any(self._failed_for_good(c) for c in self.init_containers):
            return "Failed"
        if any(not c.done for c in self.init_containers):
            return "Pending"
        rows = [
            (c.ever_up, c.up, c.last_exit if c.done or not c.running else None)
            for c in self.containers
        ]
        return pod_phase(self.policy, rows)

    def _condition(self, kind: str, status: str, reason: str = "", message: str = "") -> JSON:
        prev = self.cond_times.get(kind)
        if prev is None or prev[0] != status:
            self.cond_times[kind] = (status, now_iso())
        out: JSON = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.cond_times[kind][1],
            "reason": reason or None,
            "message": message or None,
        }
        return out

    def _readiness_gates(self) -> str:
        """Why spec.readinessGates hold the pod unready ("" when they all pass): kubelet's rule,
        every gate's condition must exist in the pod's status with status True."""
        conds = {
            c.get("type"): c.get("status")
            for c in self.pod.get("status", {}).get("conditions") or []
        }
        for gate in self.pod["spec"].get("readinessGates") or []:
            kind = gate.get("conditionType", "")
            if kind not in conds:
                return f'corresponding condition of pod readiness gate "{kind}" does not exist.'
            if conds[kind] != "True":
                return f'the status of pod readiness gate "{kind}" is not "True", but {conds[kind]}'
        return ""

    def _report(self) -> None:
        phase = self._phase()
        inits_done = all(c.done and c.last_exit == 0 for c in self.init_containers)
        not_ready = [c.name for c in self.containers if not (c.up and c.ready)]
        containers_ready = phase == "Running" and not not_ready
        gates_message = self._readiness_gates()
        ready = containers_ready and not gates_message
        completed = phase in ("Succeeded", "Failed")
        if completed:
            ready_reason, ready_message = "PodCompleted", ""
        elif not containers_ready:
            ready_reason = "ContainersNotReady"
            ready_message = f"containers with unready status: [{' '.join(not_ready)}]"
        else:
            ready_reason, ready_message = "ReadinessGatesNotReady", gates_message
        conds = [
            self._condition(
                "PodReadyToStartContainers",
                "True" if self.sandbox_ready and not self.sandbox_gone else "False",
            ),
            self._condition(
                "Initialized",
                "True" if inits_done else "False",
                "" if inits_done else "ContainersNotInitialized",
            ),
            self._condition(
                "Ready",
                "True" if ready else "False",
                "" if ready else ready_reason,
                "" if ready else ready_message,
            ),
            self._condition(
                "ContainersReady",
                "True" if containers_ready else "False",
                "" if containers_ready else ("PodCompleted" if completed else "ContainersNotReady"),
                ""
                if containers_ready or completed
                else f"containers with unready status: [{' '.join(not_ready)}]",
            ),
            self._condition("PodScheduled", "True"),
        ]
        status: JSON = {
            "phase": phase,
            "conditions": conds,
            "hostIP": self.node.ip,
            "hostIPs": [{"ip": self.node.ip}],
            "startTime": self.start_time,
            "containerStatuses": [c.status(self.uid) for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status(self.uid) for c in self.init_containers]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.sandbox_error:
            status["message"] = f"sandbox: {self.sandbox_error}"
            status["reason"] = "SandboxFailed"
        if status == self.last_status:
            return
        try:
            self.agent.kube.patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status", {"status": status}
            )
            self.last_status = status
        except ApiError as exc:
            if exc.status == 404:
                self.gone()
            else:
                log.warning("status of %s/%s: %s", self.ns, self.pod_name, exc)
        self.agent.pod_status_changed(self, status)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion ($$ escapes); unknown references stay as written."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2 : end]
            out.append(env.get(name, value[i : end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def adopt(worker: PodWorker, pod: JSON) -> None:
    """Take over a pod found bound to our nodes at start-up, like kubelet after a node reboot:
    kill what still runs in its netns and carry its container history (restart counts, finished
    containers) over from the status the previous agent reported."""
    netns = network.pod_netns_name(worker.uid)
    if network.netns_exists(netns):
        network.kill_pids(network.netns_pids(netns))
    previous = {s.get("name"): s for s in pod.get("status", {}).get("containerStatuses") or []}
    for c in worker.containers:
        st = previous.get(c.name)
        if not st:
            continue
        c.restarts = int(st.get("restartCount", 0))
        state = st.get("state") or {}
        if "terminated" in state and state["terminated"] is not None:
            code = int(state["terminated"].get("exitCode", 0))
            c.runs = 1
            c.last_exit = code
            c.state = {"terminated": state["terminated"]}
            if not restart_wanted(worker.policy, code):
                c.done = True
        elif "running" in state and state["running"] is not None:
            c.runs = 1
            c.last_state = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "Error",
                    "message": "the lab node agent restarted; it cannot re-attach processes",
                    "startedAt": state["running"].get("startedAt"),
                    "finishedAt": now_iso(),
                }
            }
            c.last_exit = 137
            if not restart_wanted(worker.policy, 137):
                c.state = dict(c.last_state)
                c.last_state = {}
                c.done = True
        elif (st.get("lastState") or {}).get("terminated"):
            # Waiting in back-off: it ran before, so its next start is a restart.
            c.runs = 1
            c.last_state = {"terminated": st["lastState"]["terminated"]}
    for c in worker.init_containers:
        for st in pod.get("status", {}).get("initContainerStatuses") or []:
            term = (st.get("state") or {}).get("terminated")
            if st.get("name") == c.name and term and term.get("exitCode") == 0:
                c.done, c.last_exit, c.runs = True, 0, 1
                c.state = {"terminated": term}


# ---------------------------------------------------------------- the agent


class Agent:
    def __init__(
        self, kubeconfig: str, state_dir: Path, nodes: list[NodeSpec], flavor: str
    ) -> None:
        self.kube = Kube(kubeconfig)
        self.state_dir = state_dir
        self.nodes = {n.name: n for n in nodes}
        self.flavor = flavor
        self.ipam = {n.name: IPAllocator(n.pod_cidr, n.gateway) for n in nodes}
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.node_labels: dict[str, dict[str, str]] = {}
        self.rr = 0
        self.stop = threading.Event()
        self.version = "v0.0.0"
        self.dns = dns.HostsWriter(images.dns_hosts_dir(state_dir))
        self.dns_pod_ip: str | None = None
        self.first_sync = threading.Event()
        self.started = now_iso()
        self.binding: set[str] = set()
        self.schedule_pods = True
        self.binder = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bind")

    # -- nodes and leases
    def register_nodes(self) -> None:
        self.version = str(self.kube.get("/version").get("gitVersion", "v0.0.0"))
        for index, node in enumerate(self.nodes.values()):
            body = node_object(self.flavor, node, index, self.version, self.started)
            try:
                self.kube.create("/api/v1/nodes", body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                self.kube.patch(
                    f"/api/v1/nodes/{node.name}",
                    {"metadata": {"labels": body["metadata"]["labels"]}},
                )
            self.kube.patch(f"/api/v1/nodes/{node.name}/status", {"status": body["status"]})
            self.node_labels[node.name] = body["metadata"]["labels"]
            log.info(
                "registered node %s (%s, %s)",
                node.name,
                node.ip,
                body["status"]["nodeInfo"]["kubeletVersion"],
            )

    def heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stop.is_set():
            for node in self.nodes.values():
                try:
                    self._renew_lease(node)
                except Exception as exc:
                    log.warning("lease %s: %s", node.name, exc)
            if time.monotonic() - last_status >= STATUS_HEARTBEAT:
                last_status = time.monotonic()
                for index, node in enumerate(self.nodes.values()):
                    try:
                        body = node_object(self.flavor, node, index, self.version, self.started)
                        self.kube.patch(
                            f"/api/v1/nodes/{node.name}/status", {"status": body["status"]}
                        )
                    except Exception as exc:
                        log.warning("node status %s: %s", node.name, exc)
            if self.schedule_pods:
                self._retry_unscheduled()
            self.stop.wait(LEASE_RENEW)

    def _retry_unscheduled(self) -> None:
        """Pods left unbound (taints, selectors) get another try, as the scheduler re-queues
        them when nodes change: an untainted or relabelled node must take them."""
        try:
            pending = self.kube.get("/api/v1/pods", fieldSelector="spec.nodeName=")
        except Exception as exc:
            log.warning("listing unscheduled pods: %s", exc)
            return
        for pod in pending.get("items") or []:
            meta = pod.get("metadata", {})
            if meta.get("deletionTimestamp"):
                continue
            with self.lock:
                if meta.get("uid") in self.binding:
                    continue
                self.binding.add(meta.get("uid", ""))
            self.binder.submit(self._schedule_once, pod)

    def _renew_lease(self, node: NodeSpec) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        spec = {
            "holderIdentity": node.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            self.kube.patch(
                f"{path}/{node.name}", {"spec": spec}, content_type="application/merge-patch+json"
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            node_obj = self.kube.get(f"/api/v1/nodes/{node.name}")
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node.name,
                "uid": node_obj["metadata"]["uid"],
            }
            self.kube.create(
                path,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": node.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [owner],
                    },
                    "spec": {**spec, "acquireTime": micro_now()},
                },
            )

    # -- pods
    def pod_watch_loop(self) -> None:
        rv = ""
        while not self.stop.is_set():
            try:
                if not rv:
                    listing = self.kube.get("/api/v1/pods")
                    rv = listing["metadata"]["resourceVersion"]
                    self._resync([p for p in listing.get("items", [])])
                    self.first_sync.set()
                for event in self.kube.watch("/api/v1/pods", rv):
                    kind, obj = event.get("type"), event.get("object", {})
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = ""
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    self.on_pod(kind, obj)
            except ApiError as exc:
                log.warning("pod watch: %s", exc)
                if exc.status == 410:
                    rv = ""
                self.stop.wait(1)
            except Exception as exc:
                log.warning("pod watch broke (%s); re-listing", exc)
                rv = ""
                self.stop.wait(1)

    def _resync(self, pods: list[JSON]) -> None:
        seen = set()
        for pod in pods:
            seen.add(pod["metadata"]["uid"])
            self.on_pod("ADDED", pod, listing=True)
        with self.lock:
            stale = [w for uid, w in self.workers.items() if uid not in seen]
        for w in stale:
            w.gone()
        if not self.first_sync.is_set():
            # Only at start-up (after a crash): later relists would race with netns that other
            # tools create for their own tests, and stale workers already clean up their own.
            self._clean_orphans(seen)

    def _clean_orphans(self, uids: set[str]) -> None:
        """Remove pod netns wired to OUR nodes whose pod no longer exists."""
        known = {network.pod_netns_name(uid) for uid in uids}
        ours = set()
        for node in self.nodes.values():
            ours |= network.pod_netns_on_node(node)
        for ns in sorted(ours - known):
            log.info("removing orphan pod netns %s", ns)
            network.delete_pod_netns(ns)

    def on_pod(self, kind: str | None, pod: JSON, listing: bool = False) -> None:
        meta, spec = pod.get("metadata", {}), pod.get("spec", {})
        uid = meta.get("uid", "")
        node_name = spec.get("nodeName") or ""
        self.dns.observe_pod(kind or "", pod)
        if kind == "DELETED":
            with self.lock:
                worker = self.workers.get(uid)
            if worker:
                worker.gone()
            return
        if not node_name:
            if self.schedule_pods and not meta.get("deletionTimestamp"):
                with self.lock:
                    if uid in self.binding:
                        return
                    self.binding.add(uid)
                # Off the watch thread: a burst of new pods must not queue behind each binding.
                self.binder.submit(self._schedule_once, pod)
            return
        node = self.nodes.get(node_name)
        if node is None:
            return
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None:
                phase = pod.get("status", {}).get("phase")
                if phase in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
                    return
                worker = PodWorker(self, pod, node, adopted=listing)
                if listing:
                    # Processes of a previous agent cannot be re-attached (no exit codes for
                    # non-children): kill them; containers restart per restart policy.
                    adopt(worker, pod)
                self.workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def worker_done(self, worker: PodWorker) -> None:
        with self.lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def _schedule_once(self, pod: JSON) -> None:
        try:
            self.schedule(pod)
        except Exception:
            log.exception("scheduling %s/%s", pod["metadata"]["namespace"], pod["metadata"]["name"])
        finally:
            with self.lock:
                self.binding.discard(pod["metadata"]["uid"])

    def schedule(self, pod: JSON) -> None:
        spec, meta = pod["spec"], pod["metadata"]
        if (spec.get("schedulerName") or "default-scheduler") != "default-scheduler":
            return
        taints = self._node_taints()
        candidates = [
            n
            for n in self.nodes
            if node_fits(pod, n, self.node_labels.get(n, {}), taints.get(n, []))
        ]
        if not candidates:
            self._unschedulable(pod, taints)
            return
        with self.lock:
            target = candidates[self.rr % len(candidates)]
            self.rr += 1
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": target},
        }
        try:
            self.kube.create(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", body
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("binding %s/%s: %s", meta["namespace"], meta["name"], exc)

    def _node_taints(self) -> dict[str, list[JSON]]:
        """Current taints of our nodes (read per decision: `kubectl taint` must count at once)."""
        out: dict[str, list[JSON]] = {}
        for name in self.nodes:
            try:
                out[name] = node_taints(self.kube.get(f"/api/v1/nodes/{name}"))
            except ApiError as exc:
                log.warning("reading node %s: %s", name, exc)
                out[name] = []
        return out

    def _unschedulable(self, pod: JSON, taints: dict[str, list[JSON]]) -> None:
        meta = pod["metadata"]
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return  # already said so; patching again would only echo back as a new event
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/{len(self.nodes)} nodes are available: " + unschedulable_reasons(
                pod, {n: self.node_labels.get(n, {}) for n in self.nodes}, taints
            ),
            "lastTransitionTime": now_iso(),
        }
        with contextlib.suppress(ApiError):
            self.kube.patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"status": {"conditions": [cond], "phase": "Pending"}},
            )

    def annotate(self, pod: JSON, netns: str) -> None:
        meta = pod["metadata"]
        if (meta.get("annotations") or {}).get(NETNS_ANNOTATION) == netns:
            return
        self.kube.patch(
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            {"metadata": {"annotations": {NETNS_ANNOTATION: netns}}},
        )

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self.kube.delete(f"/api/v1/namespaces/{ns}/pods/{name}", body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("delete %s/%s: %s", ns, name, exc)

    def read_object(self, ns: str, kind: str, name: str) -> JSON | None:
        """A ConfigMap/Secret, None when it does not exist (other API errors raise)."""
        try:
            return self.kube.get(f"/api/v1/namespaces/{ns}/{kind}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def read_data(self, ns: str, kind: str, name: str) -> dict[str, str] | None:
        import base64

        obj = self.read_object(ns, kind, name)
        if obj is None:
            return None
        data = obj.get("data") or {}
        if kind == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return {k: str(v) for k, v in data.items()}

    def pod_status_changed(self, worker: PodWorker, status: JSON) -> None:
        labels = worker.pod["metadata"].get("labels") or {}
        if worker.ns == "kube-system" and labels.get("k8s-app") == "kube-dns":
            ip = worker.ip if status.get("phase") == "Running" and not worker.terminating else None
            if ip != self.dns_pod_ip:
                self.dns_pod_ip = ip
                network.set_dns_target(list(self.nodes.values()), ip)
                log.info("kube-dns DNAT -> %s", ip)

    # -- services, for DNS names
    def service_watch_loop(self) -> None:
        rv = ""
        while not self.stop.is_set():
            try:
                if not rv:
                    listing = self.kube.get("/api/v1/services")
                    rv = listing["metadata"]["resourceVersion"]
                    self.dns.reset_services(listing.get("items", []))
                for event in self.kube.watch("/api/v1/services", rv):
                    kind, obj = event.get("type"), event.get("object", {})
                    if kind == "ERROR":
                        rv = ""
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        self.dns.observe_service(kind or "", obj)
            except Exception as exc:
                log.warning("service watch broke (%s); re-listing", exc)
                rv = ""
                self.stop.wait(1)

    def log_file(
        self, ns: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, Callable[[], bool]] | None:
        """Where `kubectl logs` finds a container's output (see kubelet_server.py)."""
        with self.lock:
            worker = next(
                (w for w in self.workers.values() if w.ns == ns and w.pod_name == pod), None
            )
        if worker is None:
            return None
        for c in worker.init_containers + worker.containers:
            if c.name == container and c.runs:
                run = c.runs - (2 if previous else 1)
                if run < 0:
                    return None
                return c.dir / f"{run}.log", (lambda c=c: c.running)
        return None

    def run(self) -> None:
        self.register_nodes()
        for node in self.nodes.values():
            try:
                kubelet_server.serve(node, self.state_dir, self.log_file)
            except OSError as exc:
                log.warning("kubelet log endpoint on %s:%d: %s", node.ip, 10250, exc)
        for target in (
            self.heartbeat_loop,
            self.pod_watch_loop,
            self.service_watch_loop,
            self.dns.loop,
        ):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        self.stop.wait()

    def shutdown(self) -> None:
        """Stop watching; running pods keep running (like kubelet stopping, not draining)."""
        self.stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.node_agent", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--node", action="append", required=True, help="name:netns:ip:podcidr")
    parser.add_argument("--flavor", default="generic", choices=["generic", "eks", "gke", "aks"])
    parser.add_argument(
        "--no-schedule", action="store_true", help="do not bind pods (someone else schedules)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
        stream=sys.stderr,
    )
    try:
        nodes = [NodeSpec.parse(n) for n in args.node]
    except ValueError as exc:
        print(f"node-agent: {exc}", file=sys.stderr)
        return 2
    for node in nodes:
        if not network.netns_exists(node.netns):
            print(
                f"node-agent: netns {node.netns} does not exist (run the lab network up first)",
                file=sys.stderr,
            )
            return 2
    # Two agents on the same nodes would fight over every pod (the second one "adopts" the first
    # one's processes by killing them), so the state dir holds an exclusive lock.
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    lock = open(state / "node-agent.lock", "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"node-agent: another node agent holds {state / 'node-agent.lock'}", file=sys.stderr)
        return 1
    agent = Agent(args.kubeconfig, state, nodes, args.flavor)
    agent.schedule_pods = not args.no_schedule

    def stop(signum: int, frame: object) -> None:
        agent.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    except ApiError as exc:
        print(f"node-agent: API server refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
