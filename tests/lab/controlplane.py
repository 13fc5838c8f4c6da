"""The lab's control plane: etcd, kube-apiserver and kube-controller-manager as plain processes.

Every process is started detached (own session, so its process group survives the ``up`` that
started it and can be signalled as a whole), with its pid in ``<state>/pids/<name>.pid`` and its
output in ``<state>/logs/<name>.log``, and an environment marker naming it
(``NETISO_LAB_PROCESS=<name>``). A pid file alone is never trusted before a kill: the pid must still
belong to a process carrying that marker (pids get recycled after a crash or a reboot), and the
/proc scan of ``down`` trusts the marker alone, never a command line.

Choices that shape the lab (each visible to netiso, so each mirrors a real cluster):

* etcd listens on 127.0.0.1 only, on non-default ports (23790/23800) so a developer's own etcd is
  never touched; ``--unsafe-no-fsync`` because its data is disposable and fsync dominates start.
* kube-apiserver binds 10.250.0.1:6443 (the root end of the lab fabric) so pods and kube-router in
  node namespaces reach it like a real cluster's endpoint, and nothing listens on an uplink.
  Authorization is Node,RBAC; admission is the default chain plus NodeRestriction (no plugin in
  the default chain needs a component the lab lacks).
* kube-apiserver reaches the cluster network (pods behind aggregated APIs, kubelets) the way its
  egress selector provides for, through a CONNECT proxy on a Unix socket that lives in a fabric
  host (network.py, egress_proxy.py): the root namespace keeps no route to pods. The aggregation
  layer has its own front-proxy CA (pki.py), so Calico's API server can serve projectcalico.org/v3.
* kube-controller-manager runs every default controller without leader election (one replica,
  and election would add 15 s to a cold start); nodes get fixed podCIDRs from the node agent, so
  ``--allocate-node-cidrs=false``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab import build, network, pki

API_IP = "10.250.0.1"
API_PORT = 6443
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
KCM_PORT = 10357
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")


class LabError(RuntimeError):
    """A lab component failed; the message names it and points at its log."""


def state_dir() -> Path:
    return Path(os.environ.get("NETISO_LAB_DIR", "/var/tmp/netiso-lab"))


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def egress_selector(self) -> Path:
        return self.root / "egress-selector.yaml"

    def kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"


def paths() -> Paths:
    return Paths(state_dir())


# --------------------------------------------------------------------------- processes


def start_process(name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached; record its pid; return it. The log file is appended to."""
    p = paths()
    p.logs.mkdir(parents=True, exist_ok=True)
    p.pids.mkdir(parents=True, exist_ok=True)
    # The marker lets network.down()/leftovers() find this process even without our pid files.
    env = network.marked_env(name, env)
    with open(p.log(name), "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    # Popen can return before the kernel shows the child's new environment: CPython spawns with
    # vfork, and for a moment /proc/<pid>/environ still reads the parent's (or nothing). Until
    # the marker shows, `running(name)` would call the new process "not ours" and a readiness
    # wait would report it as exited; so return only once it is visible (or the child is gone).
    deadline = time.monotonic() + 5.0
    while lab_role(proc.pid) != name and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    p.pidfile(name).write_text(f"{proc.pid}\n")
    if proc.poll() is not None:
        return proc.pid
    # The Popen object is dropped on purpose: the process outlives this Python process. Python
    # would warn about a still-running child at exit; returncode=0 silences that bookkeeping.
    proc.returncode = 0
    return proc.pid


def read_pid(name: str) -> int | None:
    try:
        return int(paths().pidfile(name).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def lab_role(pid: int) -> str | None:
    """The role a live lab process was started with (its NETISO_LAB_PROCESS value), or None.

    The environment marker is the only thing that makes a process the lab's: every process the lab
    starts carries it (start_process, the metadata server, pod containers, exec_in_pod), and it
    survives `ip netns exec` and every exec after it. A command line is not enough: anyone may run
    a `tests.lab.*` module or one of the cached binaries for their own purposes.
    """
    if _is_zombie(pid):
        return None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = network.PROCESS_MARKER.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode(errors="replace")
    return None


def is_lab_process(pid: int) -> bool:
    """True when ``pid`` is alive and carries the lab's marker (not a recycled pid)."""
    return lab_role(pid) is not None


def _ancestors() -> set[int]:
    pid, seen = os.getpid(), {os.getpid()}
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        seen.add(pid)
    return seen


def running(name: str) -> int | None:
    """The pid of component ``name`` if it is alive and really ours.

    Its marker must name the component: start_process marks each process with its own name, so
    a pid file pointing at a recycled pid (even one of another lab process) is not believed.
    """
    pid = read_pid(name)
    if pid is not None and lab_role(pid) == name:
        return pid
    return None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    # Processes started by this very Python process would linger as zombies otherwise.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill_pids(pids: Sequence[int], *, grace: float = 5.0) -> None:
    """SIGTERM each pid's process group, then SIGKILL whatever is left after ``grace``."""
    live = [pid for pid in pids if is_lab_process(pid)]
    for pid in live:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        for pid in live:
            _reap(pid)
        live = [pid for pid in live if is_lab_process(pid)]
        if live:
            time.sleep(0.1)
    for pid in live:
        _signal_group(pid, signal.SIGKILL)
    for pid in live:
        for _ in range(50):
            _reap(pid)
            if _is_zombie(pid):
                break
            time.sleep(0.05)


def stop_process(name: str, *, grace: float = 5.0) -> None:
    pid = running(name)
    if pid is not None:
        kill_pids([pid], grace=grace)
    paths().pidfile(name).unlink(missing_ok=True)


def scan_lab_processes() -> list[int]:
    """Every live process carrying the lab's marker (how `down` finds them after a crash)."""
    # Never ourselves or an ancestor: `down` may run under a process that carries the marker.
    protected = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in protected and is_lab_process(
            int(entry.name)
        ):
            found.append(int(entry.name))
    return sorted(found)


# --------------------------------------------------------------------------- readiness


def _tls_context(pk: pki.Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pk.ca_cert))
    ctx.load_cert_chain(str(pk.cert("admin")), str(pk.key("admin")))
    return ctx


def api_get(path: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``path`` from the lab apiserver as admin; raises OSError when it is unreachable."""
    return api_call("GET", path, timeout=timeout)


def api_call(method: str, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """One bodiless admin request to the lab apiserver (readiness checks, deletes)."""
    pk = pki.Pki(paths().pki)
    conn = http.client.HTTPSConnection(API_IP, API_PORT, context=_tls_context(pk), timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def _wait(what: str, check: Callable[[], tuple[bool, str]], timeout: float, log_name: str) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            ok, last = check()
            if ok:
                return
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            last = str(exc)
        if running(log_name) is None:
            raise LabError(
                f"{what} exited during start; see {paths().log(log_name)}:\n{_log_tail(log_name)}"
            )
        time.sleep(0.2)
    raise LabError(f"{what} not ready after {timeout:.0f} s ({last}); see {paths().log(log_name)}")


def _log_tail(name: str, lines: int = 15) -> str:
    try:
        return "\n".join(paths().log(name).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _etcd_healthy() -> tuple[bool, str]:
    conn = http.client.HTTPConnection("127.0.0.1", ETCD_CLIENT_PORT, timeout=2)
    try:
        conn.request("GET", "/health")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return '"health":"true"' in body, body


def _apiserver_ready() -> tuple[bool, str]:
    status, body = api_get("/readyz")
    return status == 200, body[-300:]


def _kcm_healthy() -> tuple[bool, str]:
    ctx = ssl.create_default_context()
    # Its serving cert is self-signed at start; only liveness on loopback is being asked here.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", KCM_PORT, context=ctx, timeout=2)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return resp.status == 200, resp.read().decode()
    finally:
        conn.close()


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- components


def _write_kubeconfigs(pk: pki.Pki) -> None:
    p = paths()
    server = f"https://{API_IP}:{API_PORT}"
    ca = pk.ca_cert.read_bytes()
    for component, user in (
        ("admin", "netiso-lab-admin"),
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-router", "system:kube-router"),
    ):
        target = p.admin_kubeconfig if component == "admin" else p.kubeconfig(component)
        if target.is_file():
            continue
        text = pki.kubeconfig(server, ca, user=user,
                              cert_pem=pk.cert(component).read_bytes(),
                              key_pem=pk.key(component).read_bytes())
        pki.write_kubeconfig(target, text)


def _etcd_argv() -> list[str]:
    p = paths()
    client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return [
        str(build.binary("etcd")),
        "--name=netiso-lab",
        f"--data-dir={p.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=netiso-lab={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def egress_selector_config(socket_path: Path) -> str:
    """kube-apiserver's EgressSelectorConfiguration: `cluster` traffic through the lab's CONNECT
    proxy (tests/lab/egress_proxy.py), the rest direct."""
    return (
        "apiVersion: apiserver.k8s.io/v1beta1\n"
        "kind: EgressSelectorConfiguration\n"
        "egressSelections:\n"
        "- name: cluster\n"
        "  connection:\n"
        "    proxyProtocol: HTTPConnect\n"
        "    transport:\n"
        "      uds:\n"
        f"        udsName: {socket_path}\n"
    )


def _apiserver_argv(pk: pki.Pki) -> list[str]:
    return [
        str(build.binary("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--bind-address={API_IP}",
        f"--advertise-address={API_IP}",
        f"--secure-port={API_PORT}",
        f"--tls-cert-file={pk.cert('apiserver')}",
        f"--tls-private-key-file={pk.key('apiserver')}",
        f"--client-ca-file={pk.ca_cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pk.sa_pub}",
        f"--service-account-signing-key-file={pk.sa_key}",
        "--allow-privileged=true",
        # The aggregation layer, set up as kubeadm does, for Calico's API server
        # (projectcalico.org/v3): the front-proxy identity it presents, the CA and name the
        # aggregated server trusts the user headers from, and routing to the Service's endpoint
        # (a pod IP, dialled through the egress selector) rather than its ClusterIP, since the
        # lab has no kube-proxy for arbitrary Services.
        f"--requestheader-client-ca-file={pk.front_proxy_ca_cert}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pk.cert(pki.FRONT_PROXY_CLIENT)}",
        f"--proxy-client-key-file={pk.key(pki.FRONT_PROXY_CLIENT)}",
        "--enable-aggregator-routing=true",
        f"--egress-selector-config-file={paths().egress_selector}",
        "--profiling=false",
        "--event-ttl=30m",
        # The lab's apiserver is restarted often; draining for the default 0 s is what we want,
        # and a shorter watch-cache warm-up is irrelevant at this size.
        "--shutdown-delay-duration=0s",
        "--v=1",
    ]


def _kcm_argv(pk: pki.Pki) -> list[str]:
    kubeconfig = paths().kubeconfig("kube-controller-manager")
    return [
        str(build.binary("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={KCM_PORT}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pk.sa_key}",
        f"--root-ca-file={pk.ca_cert}",
        f"--cluster-cidr={CLUSTER_CIDR}",
        "--allocate-node-cidrs=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--v=1",
    ]


def up(*, timeout: float = 90.0) -> None:
    """Start (or keep) etcd, kube-apiserver and kube-controller-manager; wait until ready.

    The fabric address 10.250.0.1 must already exist (network.up) for the apiserver to bind.
    """
    p = paths()
    p.root.mkdir(parents=True, exist_ok=True)
    pk = pki.ensure(p.pki)
    _write_kubeconfigs(pk)
    p.egress_selector.write_text(egress_selector_config(network.egress_socket()))

    if running("etcd") is None:
        if not port_free("127.0.0.1", ETCD_CLIENT_PORT):
            raise LabError(f"127.0.0.1:{ETCD_CLIENT_PORT} is taken by a process that is not "
                           "the lab's etcd; run `python -m tests.lab down` or free the port")
        start_process("etcd", _etcd_argv())
    _wait("etcd", _etcd_healthy, timeout, "etcd")

    if running("kube-apiserver") is None:
        start_process("kube-apiserver", _apiserver_argv(pk))
    _wait("kube-apiserver", _apiserver_ready, timeout, "kube-apiserver")

    if running("kube-controller-manager") is None:
        start_process("kube-controller-manager", _kcm_argv(pk))
    _wait("kube-controller-manager", _kcm_healthy, timeout, "kube-controller-manager")


def down() -> None:
    for name in reversed(CONTROL_PLANE):
        stop_process(name)


def status() -> dict[str, str]:
    """One short state word (plus detail) per control-plane component."""
    out: dict[str, str] = {}
    checks = {"etcd": _etcd_healthy, "kube-apiserver": _apiserver_ready,
              "kube-controller-manager": _kcm_healthy}
    for name in CONTROL_PLANE:
        pid = running(name)
        if pid is None:
            out[name] = "stopped"
            continue
        try:
            ok, _ = checks[name]()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            ok = False
        out[name] = f"{'ready' if ok else 'not ready'} (pid {pid})"
    return out
