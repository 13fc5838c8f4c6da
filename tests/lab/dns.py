"""Cluster DNS for the lab: the kube-system/lab-dns pod, the kube-dns Service, and its names.

Who does what:
- `ensure_dns(api)` (called by the orchestrator once the node agent runs) creates the pod
  `kube-system/lab-dns` (labels k8s-app=kube-dns, image netiso.lab/dnsmasq -> Debian's dnsmasq, see
  images.py) and the Service `kube-system/kube-dns` with ClusterIP 10.96.0.10, then waits until the
  pod is Running. Both are plain API objects, so NetworkPolicies select them like the real thing.
- The node agent keeps dnsmasq's hosts directory current (`HostsWriter`): Service names
  (`<svc>.<ns>.svc.cluster.local` -> ClusterIP; headless Services -> ready pod IPs), pod names
  (`a-b-c-d.<ns>.pod.cluster.local`) and `kubernetes.default.svc.cluster.local`. dnsmasq watches
  the directory with inotify, so a new Service resolves within a fraction of a second; names under
  cluster.local it does not know are NXDOMAIN (never forwarded: the lab has no upstream).
- 10.96.0.10:53 reaches the pod through a DNAT in each node netns (network.set_dns_target), kept by
  the agent whenever the DNS pod's IP changes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.lab import images
from tests.lab.kubeapi import JSON, ApiError, Kube

DNS_POD = "lab-dns"
DNS_SERVICE = "kube-dns"
DNS_LABELS = {"k8s-app": "kube-dns"}
DOMAIN = "cluster.local"


def dns_pod() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": DNS_POD, "namespace": "kube-system", "labels": dict(DNS_LABELS)},
        "spec": {
            "containers": [
                {
                    "name": "dnsmasq",
                    "image": images.DNS_IMAGE,
                    "ports": [
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                    ],
                }
            ],
            "dnsPolicy": "Default",
            "terminationGracePeriodSeconds": 2,
            "tolerations": [{"operator": "Exists"}],
        },
    }


def dns_service(cluster_ip: str = "10.96.0.10") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": DNS_SERVICE,
            "namespace": "kube-system",
            "labels": {**DNS_LABELS, "kubernetes.io/name": "KubeDNS"},
        },
        "spec": {
            "clusterIP": cluster_ip,
            "selector": dict(DNS_LABELS),
            "ports": [
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"},
            ],
        },
    }


def ensure_dns(api: Kube | str, timeout: float = 60) -> str:
    """Create the DNS pod and Service if missing; wait until the pod runs; return its IP.

    `api` is a kubeconfig path or a tests.lab.kubeapi.Kube.
    """
    kube = Kube(api) if isinstance(api, str) else api
    for path, body in (
        ("/api/v1/namespaces/kube-system/services", dns_service()),
        ("/api/v1/namespaces/kube-system/pods", dns_pod()),
    ):
        # GET first: for an existing Service the apiserver answers a second POST with 422
        # ("provided IP is already allocated", the ClusterIP is checked before the name), not 409.
        try:
            kube.get(f"{path}/{body['metadata']['name']}")
            continue
        except ApiError as exc:
            if exc.status != 404:
                raise
        try:
            kube.create(path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + timeout
    status: JSON = {}
    while time.monotonic() < deadline:
        pod = kube.get(f"/api/v1/namespaces/kube-system/pods/{DNS_POD}")
        status = pod.get("status", {})
        if status.get("phase") == "Running" and status.get("podIP"):
            return str(status["podIP"])
        time.sleep(0.2)
    raise TimeoutError(f"kube-system/{DNS_POD} not Running after {timeout:.0f}s: {status}")


def _selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def render_hosts(services: dict[tuple[str, str], JSON], pods: dict[str, JSON]) -> str:
    """The hosts file dnsmasq serves. Pure: unit-tested."""
    lines: list[str] = []
    for (ns, name), svc in sorted(services.items()):
        spec = svc.get("spec", {})
        cluster_ip = spec.get("clusterIP")
        fqdn = f"{name}.{ns}.svc.{DOMAIN}"
        if cluster_ip and cluster_ip != "None":
            lines.append(f"{cluster_ip} {fqdn}")
            continue
        selector = spec.get("selector") or {}
        for pod in sorted(pods.values(), key=lambda p: p["ip"]):
            if pod["ns"] == ns and pod["ready"] and _selector_matches(selector, pod["labels"]):
                lines.append(f"{pod['ip']} {fqdn}")
                if pod.get("hostname") and pod.get("subdomain") == name:
                    lines.append(f"{pod['ip']} {pod['hostname']}.{fqdn}")
    for pod in sorted(pods.values(), key=lambda p: (p["ns"], p["ip"])):
        lines.append(f"{pod['ip']} {pod['ip'].replace('.', '-')}.{pod['ns']}.pod.{DOMAIN}")
    return "\n".join(lines) + "\n"


class HostsWriter:
    """Keeps `<hostsdir>/cluster.hosts` in step with the Services and pods the agent sees."""

    def __init__(self, hosts_dir: Path) -> None:
        self.dir = hosts_dir
        self.services: dict[tuple[str, str], JSON] = {}
        self.pods: dict[str, JSON] = {}
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.written = ""

    def reset_services(self, items: list[JSON]) -> None:
        with self.lock:
            self.services = {
                (s["metadata"]["namespace"], s["metadata"]["name"]): _slim_service(s) for s in items
            }
        self.dirty.set()

    def observe_service(self, kind: str, svc: JSON) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        with self.lock:
            if kind == "DELETED":
                self.services.pop(key, None)
            else:
                self.services[key] = _slim_service(svc)
        self.dirty.set()

    def observe_pod(self, kind: str, pod: JSON) -> None:
        meta, status, spec = pod.get("metadata", {}), pod.get("status", {}), pod.get("spec", {})
        uid = meta.get("uid", "")
        ip = status.get("podIP")
        alive = (
            kind != "DELETED"
            and ip
            and not spec.get("hostNetwork")
            and status.get("phase") in ("Running", "Pending")
            and not meta.get("deletionTimestamp")
        )
        with self.lock:
            before = self.pods.get(uid)
            if not alive:
                self.pods.pop(uid, None)
            else:
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                )
                self.pods[uid] = {
                    "ns": meta.get("namespace", ""),
                    "ip": ip,
                    "labels": meta.get("labels") or {},
                    "ready": ready,
                    "hostname": spec.get("hostname"),
                    "subdomain": spec.get("subdomain"),
                }
            changed = before != self.pods.get(uid)
        if changed:
            self.dirty.set()

    def write(self) -> None:
        with self.lock:
            text = render_hosts(self.services, self.pods)
        if text == self.written:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir.parent / ".cluster.hosts.tmp"
        tmp.write_text(text)
        # rename() into the watched directory is one inotify event with complete content.
        os.replace(tmp, self.dir / "cluster.hosts")
        self.written = text

    def loop(self) -> None:
        while True:
            self.dirty.wait()
            time.sleep(0.05)  # coalesce bursts (a namespace with many pods arriving at once)
            self.dirty.clear()
            try:
                self.write()
            except OSError:
                time.sleep(1)
                self.dirty.set()


def _slim_service(svc: JSON) -> JSON:
    spec: dict[str, Any] = svc.get("spec", {})
    return {"spec": {"clusterIP": spec.get("clusterIP"), "selector": spec.get("selector") or {}}}


def bootstrap_objects() -> list[JSON]:
    """The Service and Pod manifests, for an orchestrator that prefers to apply them itself."""
    return [dns_service(), dns_pod()]
