"""Container probes for the lab's node agent: startup, readiness and liveness, as kubelet runs them.

Design decisions:
- One prober thread per container run. It owns the probe schedule and the success/failure
  thresholds and tells the pod worker only about transitions (started, ready/unready, unhealthy),
  through the worker's event queue; the worker stays the only writer of the pod's state.
- httpGet and tcpSocket probes connect from inside the pod's network namespace: the prober
  thread moves itself there with setns(2) (network namespaces are per thread), so a probe is a
  plain socket, no subprocess. Kubelet probes from the node; in the lab the root namespace has no
  route to pods by design, and a probe from the pod's own namespace is not subject to
  NetworkPolicy, which matches kube-router's and Calico's rule that kubelet probes always pass.
- exec probes run the command in the container's own namespaces (network.exec_in_pod with its
  pid), with the container's environment and capability set, bounded by timeoutSeconds.
- Kubelet's rules: readiness and liveness start only once the startup probe has succeeded;
  initialDelaySeconds counts from the container's start; a probe fails after failureThreshold
  consecutive failures (default 3) and passes after successThreshold consecutive successes
  (default 1; liveness and startup must use 1); periodSeconds defaults to 10, timeoutSeconds to 1.
  gRPC probes are not implemented: such a probe fails with a message saying so.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.lab import images, network

JSON = dict[str, Any]
# (kind, ok, message): kind is "started", "ready", "unhealthy" (startup or liveness failed).
Report = Callable[[str, bool, str], None]


@dataclass(frozen=True)
class Target:
    """Where a container's probes go: its netns, pod IP, pid (for exec), env and named ports."""

    netns: str
    pod_ip: str
    pid: int
    env: dict[str, str]
    ports: dict[str, int]
    # The container's image: an exec probe names the image's own paths (`/bin/calico-node
    # -felix-ready`), which the image map resolves to the program standing in for them.
    image: images.Image | None = None


def settings(probe: JSON) -> tuple[float, float, float, int, int]:
    """(initialDelay, period, timeout, successThreshold, failureThreshold) with kubelet defaults."""
    return (
        float(probe.get("initialDelaySeconds") or 0),
        float(probe.get("periodSeconds") or 10),
        float(probe.get("timeoutSeconds") or 1),
        int(probe.get("successThreshold") or 1),
        int(probe.get("failureThreshold") or 3),
    )


def port_of(value: object, ports: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    if text in ports:
        return ports[text]
    raise ValueError(f"port {text!r} is not a named port of the container")


def run_once(probe: JSON, target: Target) -> tuple[bool, str]:
    """One probe attempt: (passed, failure message). Must run in the pod's netns for sockets."""
    _, _, timeout, _, _ = settings(probe)
    try:
        if "exec" in probe:
            argv = [str(a) for a in (probe["exec"] or {}).get("command") or []]
            if target.image is not None and argv:
                argv = target.image.argv(argv, None)
            done = network.exec_in_pod(
                target.netns, argv, timeout=timeout, env=target.env, pid=target.pid
            )
            if done.returncode == 0:
                return True, ""
            out = (done.stdout + done.stderr).strip()[-512:]
            return False, f"command {argv} exited with {done.returncode}: {out}"
        if "httpGet" in probe:
            get = probe["httpGet"] or {}
            host = get.get("host") or target.pod_ip
            port = port_of(get.get("port"), target.ports)
            conn: http.client.HTTPConnection
            if (get.get("scheme") or "HTTP").upper() == "HTTPS":
                # kubelet does not verify the serving certificate of a probe.
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                headers = {h["name"]: h.get("value", "") for h in get.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/netiso-lab")
                conn.request("GET", get.get("path") or "/", headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
            if 200 <= status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {status}"
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"] or {}
            host = sock.get("host") or target.pod_ip
            with socket.create_connection((host, port_of(sock.get("port"), target.ports)),
                                          timeout=timeout):
                return True, ""
        if "grpc" in probe:
            return False, "gRPC probes are not implemented by the netiso lab"
        return False, "probe has no handler (exec, httpGet, tcpSocket)"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, str(exc) or type(exc).__name__


class Prober(threading.Thread):
    """Runs one container run's probes until `alive()` is false; reports transitions."""

    def __init__(self, name: str, spec: JSON, target: Target, report: Report,
                 alive: Callable[[], bool]) -> None:
        super().__init__(name=f"probe-{name}", daemon=True)
        self.spec = spec
        self.target = target
        self.report = report
        self.alive = alive
        self.stop = threading.Event()

    def wait(self, seconds: float) -> bool:
        """Sleep (in small steps, to notice the container's end); False once it is gone."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.stop.is_set() or not self.alive():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.stop.wait(min(left, 0.2))

    def run(self) -> None:
        try:
            network.enter_netns(self.target.netns)
        except OSError as exc:
            self.report("unhealthy", False, f"prober cannot enter {self.target.netns}: {exc}")
            return
        started_at = time.monotonic()
        startup = self.spec.get("startupProbe")
        if startup:
            ok, message = self._until_threshold(startup, started_at)
            if not ok:
                if message:
                    self.report("unhealthy", False, f"Startup probe failed: {message}")
                return
        self.report("started", True, "")
        self._steady(time.monotonic() if startup else started_at)

    def _until_threshold(self, probe: JSON, since: float) -> tuple[bool, str]:
        """Startup: run until one success (True) or failureThreshold failures in a row."""
        delay, period, _, _, failures_allowed = settings(probe)
        if not self.wait(since + delay - time.monotonic()):
            return False, ""
        failures = 0
        while True:
            ok, message = run_once(probe, self.target)
            if ok:
                return True, ""
            failures += 1
            if failures >= failures_allowed:
                return False, message
            if not self.wait(period):
                return False, ""

    def _steady(self, since: float) -> None:
        """Readiness and liveness, each on its own schedule."""
        readiness = self.spec.get("readinessProbe")
        liveness = self.spec.get("livenessProbe")
        probes = [(kind, p) for kind, p in (("readiness", readiness), ("liveness", liveness)) if p]
        if not readiness:
            self.report("ready", True, "")
        if not probes:
            return
        due = {kind: since + settings(p)[0] for kind, p in probes}
        streak = {kind: 0 for kind, _ in probes}  # >0 successes in a row, <0 failures in a row
        ready: bool | None = None
        while True:
            kind = min(due, key=lambda k: due[k])
            if not self.wait(due[kind] - time.monotonic()):
                return
            probe = dict(probes)[kind]
            _, period, _, successes_needed, failures_allowed = settings(probe)
            ok, message = run_once(probe, self.target)
            streak[kind] = max(1, streak[kind] + 1) if ok else min(-1, streak[kind] - 1)
            due[kind] = time.monotonic() + period
            if kind == "readiness":
                if ok and streak[kind] >= successes_needed and ready is not True:
                    ready = True
                    self.report("ready", True, "")
                elif not ok and ready is not False and (
                    ready is None or -streak[kind] >= failures_allowed
                ):
                    ready = False
                    self.report("ready", False, f"Readiness probe failed: {message}")
            elif not ok and -streak[kind] >= failures_allowed:
                self.report("unhealthy", False, f"Liveness probe failed: {message}")
                return
