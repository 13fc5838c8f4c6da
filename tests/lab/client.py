"""What a lab test holds: ``LabClient``, yielded by the ``lab`` fixture (tests/cluster/conftest.py).

It bundles the admin kubeconfig, typed API clients, non-admin identities minted on demand
(ServiceAccount tokens from the TokenRequest API, or client certificates signed by the lab CA),
pod helpers (wait until Running, run a busybox pod, exec in a pod's namespaces) and the
enforcement switch. Probes are real processes inside pod network namespaces: ``can_connect`` is a
TCP connect by busybox ``nc`` from the pod, not a check of iptables rules.

Debian's busybox ``nc`` has no ``-z``: ``can_connect`` therefore expects a server that closes the
connection itself, such as ``tcp_server_command`` (``nc -ll -p PORT -e echo ok``), and reports
whether the connect succeeded within the timeout.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.lab import build, controlplane, enforcement, lab, network, pki

BUSYBOX_IMAGE = "busybox:1.36"


def tcp_server_command(port: int, reply: str = "ok") -> list[str]:
    """A busybox TCP server answering every connection with ``reply`` and closing it."""
    return ["nc", "-ll", "-p", str(port), "-e", "echo", reply]


@dataclass
class LabClient:
    kubeconfig: Path
    spec: lab.LabSpec
    _api: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ API access

    @property
    def api(self) -> Any:
        """An admin ``kubernetes.client.ApiClient``."""
        if self._api is None:
            self._api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig))
        return self._api

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api)

    @property
    def networking(self) -> Any:
        return k8s.NetworkingV1Api(self.api)

    @property
    def rbac(self) -> Any:
        return k8s.RbacAuthorizationV1Api(self.api)

    def client_for(self, kubeconfig: Path) -> Any:
        """An ``ApiClient`` acting as whoever ``kubeconfig`` names."""
        return k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig))

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the lab's own kubectl (same version as the apiserver)."""
        argv = [str(build.binary("kubectl")), "--kubeconfig", str(kubeconfig or self.kubeconfig),
                *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, check=check,
                              timeout=timeout)

    # ------------------------------------------------------------------ identities

    def _kubeconfig_dir(self) -> Path:
        d = controlplane.state_dir() / "kubeconfigs"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d

    def service_account_kubeconfig(self, namespace: str, name: str, *,
                                   expiration_seconds: int = 3600, create: bool = True) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (TokenRequest token).

        The ServiceAccount is created when missing (``create=True``); it has no permissions beyond
        what RBAC objects the test creates grant it.
        """
        if create:
            try:
                self.core.create_namespaced_service_account(
                    namespace, {"metadata": {"name": name}})
            except k8s.ApiException as exc:
                if exc.status != 409:
                    raise
        request = {"spec": {"expirationSeconds": expiration_seconds}}
        token = self.core.create_namespaced_service_account_token(name, namespace, request)
        text = pki.kubeconfig(self._server(), self._ca(), user=f"sa-{namespace}-{name}",
                              token=token.status.token)
        path = self._kubeconfig_dir() / f"sa-{namespace}-{name}.kubeconfig"
        pki.write_kubeconfig(path, text)
        return path

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig with a lab-CA-signed client certificate for ``user`` in ``groups``."""
        cert, key = pki.client_certificate(pki.Pki(controlplane.paths().pki), user, tuple(groups))
        text = pki.kubeconfig(self._server(), self._ca(), user=user, cert_pem=cert, key_pem=key)
        safe = user.replace(":", "_")
        path = self._kubeconfig_dir() / f"user-{safe}-{uuid.uuid4().hex[:6]}.kubeconfig"
        pki.write_kubeconfig(path, text)
        return path

    def _server(self) -> str:
        return f"https://{controlplane.API_IP}:{controlplane.API_PORT}"

    def _ca(self) -> bytes:
        return pki.Pki(controlplane.paths().pki).ca_cert.read_bytes()

    # ------------------------------------------------------------------ pods

    def run_busybox(self, namespace: str, name: str, command: Sequence[str], *,
                    labels: dict[str, str] | None = None, node: str | None = None,
                    ports: Sequence[int] = ()) -> Any:
        """Create a busybox pod running ``command``; returns the created V1Pod (not yet Running)."""
        container: dict[str, Any] = {"name": "main", "image": BUSYBOX_IMAGE,
                                     "command": list(command)}
        if ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        spec: dict[str, Any] = {"containers": [container], "restartPolicy": "Never",
                                "terminationGracePeriodSeconds": 1}
        if node is not None:
            spec["nodeName"] = node
        body = {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        return self.core.create_namespaced_pod(namespace, body)

    def wait_for_pod_running(self, namespace: str, name: str, *, timeout: float = 60) -> Any:
        """Wait until the pod is Running with an IP and its containers ready; return the V1Pod."""
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            pod = self.core.read_namespaced_pod(name, namespace)
            statuses = pod.status.container_statuses or []
            if (pod.status.phase == "Running" and pod.status.pod_ip
                    and statuses and all(s.ready for s in statuses)):
                return pod
            if pod.status.phase in ("Succeeded", "Failed"):
                raise AssertionError(f"pod {namespace}/{name} ended: {pod.status.phase}")
            time.sleep(0.25)
        phase = pod.status.phase if pod is not None else "absent"
        raise AssertionError(f"pod {namespace}/{name} not Running after {timeout} s ({phase})")

    def wait_for_pods_running(self, namespace: str, names: Sequence[str], *,
                              timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        return [self.wait_for_pod_running(namespace, n,
                                          timeout=max(1.0, deadline - time.monotonic()))
                for n in names]

    def pod_ip(self, namespace: str, name: str) -> str:
        return str(self.core.read_namespaced_pod(name, namespace).status.pod_ip)

    def pod_netns(self, namespace: str, name: str) -> str:
        """The pod's netns: its own, or its node's for a hostNetwork pod (the agent's
        annotation says which)."""
        return self._netns_and_uid(namespace, name)[0]

    def _netns_and_uid(self, namespace: str, name: str) -> tuple[str, str]:
        pod = self.core.read_namespaced_pod(name, namespace)
        uid = str(pod.metadata.uid)
        annotated = (pod.metadata.annotations or {}).get("lab.netiso.io/netns")
        return str(annotated or network.pod_netns_name(uid)), uid

    def exec_in_pod(self, namespace: str, pod: str, argv: Sequence[str], *,
                    timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the pod (its network, mount and UTS namespaces), like kubectl exec.

        Busybox applets come first on PATH (``["nc", ...]``, ``["wget", ...]`` work as in the
        image). Never raises on a non-zero exit: inspect ``returncode``/``stdout``/``stderr``.
        """
        netns, uid = self._netns_and_uid(namespace, pod)
        return network.exec_in_pod(netns, list(argv), timeout=timeout, uid=uid)

    def can_connect(self, namespace: str, pod: str, ip: str, port: int, *,
                    timeout: int = 2) -> bool:
        """True when a TCP connection from ``pod`` to ``ip:port`` is accepted within ``timeout``."""
        result = self.exec_in_pod(namespace, pod, ["nc", "-w", str(timeout), ip, str(port)],
                                  timeout=timeout + 10)
        return result.returncode == 0

    def http_get(self, namespace: str, pod: str, url: str, *,
                 timeout: int = 2) -> subprocess.CompletedProcess[str]:
        return self.exec_in_pod(namespace, pod, ["wget", "-q", "-O", "-", "-T", str(timeout), url],
                                timeout=timeout + 10)

    def resolve(self, namespace: str, pod: str, name: str) -> subprocess.CompletedProcess[str]:
        """``nslookup name`` inside the pod, through the pod's own resolv.conf."""
        return self.exec_in_pod(namespace, pod, ["nslookup", name], timeout=20)

    # ------------------------------------------------------------------ enforcement

    @property
    def enforcement_state(self) -> str:
        return enforcement.state(self.spec.enforced_nodes())

    def set_enforcement(self, enabled: bool) -> None:
        with lab.exclusive():
            # The lab as it is now, not as the session found it: a test may have switched the
            # flavour since, and lab.set_enforcement saves the spec it is given.
            lab.set_enforcement(enabled, spec=lab.load_spec() or self.spec,
                                log=lambda _text: None)

    def replace_nodes_felix_state(self) -> None:
        """Felix's chains, rules and ipsets out of each node netns, as replacing (or rebooting)
        the nodes clears them: felix never removes them itself, and Calico's uninstall guide
        has the nodes replaced or rebooted after the Installation is deleted."""
        def netns(name: str, *argv: str, stdin: str | None = None) -> str:
            return subprocess.run(["ip", "netns", "exec", name, *argv], input=stdin, text=True,
                                  capture_output=True, check=True, timeout=60).stdout

        for node in self.spec.nodes:
            saved = netns(node.netns, "iptables-save")
            kept = "\n".join(line for line in saved.splitlines() if "cali" not in line) + "\n"
            netns(node.netns, "iptables-restore", stdin=kept)
            for name in netns(node.netns, "ipset", "list", "-n").split():
                if name.startswith("cali"):
                    netns(node.netns, "ipset", "destroy", name)
            left = netns(node.netns, "iptables-save")
            assert "cali" not in left, f"{node.name}: felix's rules left: {left}"

    @contextlib.contextmanager
    def enforcement(self, enabled: bool) -> Iterator[None]:
        """Run a block with enforcement on/off, restoring the previous state afterwards."""
        before = self.enforcement_state == "on"
        self.set_enforcement(enabled)
        try:
            yield
        finally:
            if before != enabled:
                self.set_enforcement(before)
