"""Orchestrate the whole lab: build, network, control plane, node agent, DNS, enforcement.

``up`` is idempotent and incremental: every step first looks at what is already running (pid
files checked against /proc, readiness endpoints, Node conditions) and only starts what is
missing, so a second ``up`` on a healthy lab costs a few API calls. ``down`` never trusts state it
may have lost in a crash: it kills by pid file, then by scanning /proc for processes carrying the
lab's environment marker (never by command line: other tools run the same binaries and modules),
then lets the network remove namespaces, links, chains, ipsets and routes by their reserved names.

The lab's shape (flavour, nodes) and origin (the checkout and git revision whose code runs it) are
written to ``<state>/lab.json`` by ``up`` so that ``status``, ``enforce`` and the pytest fixture
act on the lab that is actually running, not on defaults, and so that CI can refuse a lab another
checkout started.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tests.lab import aws_node, build, controlplane, dns, enforcement, engines, kubeapi, network

FLAVORS = ("generic", "eks", "gke", "aks")
NODE_AGENT = "node-agent"
REPO_ROOT = Path(__file__).resolve().parents[2]

Log = Callable[[str], None]


def _stderr(text: str) -> None:
    print(f"lab: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Origin:
    """Which checkout's code runs the lab: its root and, if git answers, its HEAD revision."""

    repo: str
    revision: str | None = None


def current_origin() -> Origin:
    try:
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False, timeout=5)
        revision = proc.stdout.strip() if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        revision = None
    return Origin(str(REPO_ROOT), revision or None)


@dataclass
class LabSpec:
    flavor: str = "generic"
    nodes: list[network.NodeSpec] = field(default_factory=network.default_nodes)
    enforce: bool = True
    # None only for a lab.json written before origins were recorded.
    origin: Origin | None = None

    def enforced_nodes(self) -> list[enforcement.EnforcedNode]:
        return [enforcement.EnforcedNode(n.name, n.netns) for n in self.nodes]

    def to_json(self) -> str:
        data: dict[str, object] = {"flavor": self.flavor, "enforce": self.enforce,
                                   "nodes": [asdict(n) for n in self.nodes]}
        if self.origin is not None:
            data["origin"] = asdict(self.origin)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabSpec:
        data = json.loads(text)
        origin = data.get("origin")
        return cls(flavor=data["flavor"], enforce=bool(data.get("enforce", True)),
                   nodes=[network.NodeSpec(**n) for n in data["nodes"]],
                   origin=Origin(**origin) if isinstance(origin, dict) else None)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def foreign_origin(spec: LabSpec | None, here: Origin) -> str | None:
    """Why a running lab described by ``spec`` is not this checkout's, or None when it is.

    Only the checkout counts: a lab this checkout started at an older revision is still its own
    (developers keep a lab across commits). An unknown origin is foreign: nothing says whose
    code the node agent runs.
    """
    if spec is None:
        return None
    if spec.origin is None:
        return "the running lab's lab.json records no origin (started by an older lab version)"
    if spec.origin.repo != here.repo:
        return (f"the running lab was started from another checkout ({spec.origin.repo}, "
                f"revision {spec.origin.revision or 'unknown'}); this one is {here.repo}")
    return None


def _agent_origin() -> Origin | None:
    """The checkout a running node agent was started from, read from its environment.

    For a lab.json written before origins were recorded: _agent_env puts the starting checkout
    first on the agent's PYTHONPATH. The revision is unknown (HEAD may have moved since).
    """
    pid = controlplane.running(NODE_AGENT)
    if pid is None:
        return None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"PYTHONPATH="):
            first = item.split(b"=", 1)[1].decode(errors="replace").split(os.pathsep)[0]
            return Origin(first) if first else None
    return None


def _with_origin(spec: LabSpec | None) -> LabSpec | None:
    """``spec`` with its origin filled in from the running agent when lab.json lacks one."""
    if spec is None or spec.origin is not None:
        return spec
    return replace(spec, origin=_agent_origin())


def check_reuse(spec: LabSpec | None = None) -> None:
    """In CI, refuse to reuse a running lab that another checkout started (its node agent and
    network code are that checkout's, so a green run would prove nothing about this one).
    Locally, reuse stays allowed: several worktrees may share one lab on purpose."""
    if not in_ci():
        return
    if controlplane.running(NODE_AGENT) is None:
        return
    reason = foreign_origin(_with_origin(spec if spec is not None else load_spec()),
                            current_origin())
    if reason is not None:
        raise controlplane.LabError(
            f"CI refuses to reuse this lab: {reason}. Take it down first "
            "(`python -m tests.lab down` from that checkout) or run on a clean machine"
        )


def host_unavailable_reason() -> str | None:
    """Why this machine cannot host the lab, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the lab needs Linux network namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, iptables, ipset)"
    for tool in ("ip", "iptables", "ipset", "busybox", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing; run `bash tests/lab/setup.sh`"
    return hidden_from_containers()


# Mounted afresh inside every container (network.py's container setup), so a host path under
# them is not what a container sees there.
CONTAINER_PRIVATE = (Path("/tmp"), Path("/run"), Path("/dev"))


def hidden_from_containers(paths: dict[str, Path] | None = None) -> str | None:
    """Why a path containers must run programs from is invisible to them, or None."""
    if paths is None:
        paths = {"NETISO_LAB_CACHE (the lab's binaries)": build.cache_dir(),
                 "the checkout (the engine doubles run its tests.lab)": build.REPO_DIR}
    for what, path in paths.items():
        resolved = path.resolve()
        for private in CONTAINER_PRIVATE:
            if resolved == private or private in resolved.parents:
                return (f"{what} is {path}, under {private}, which every lab container mounts "
                        f"privately: its pods could not run the programs there; use a path "
                        f"outside {', '.join(map(str, CONTAINER_PRIVATE))}")
    return None


LOCK_FILE = Path("/var/tmp/netiso-lab.lock")
# A cold `up` builds the binaries under the lock (about 15 min on a loaded 2-core machine); a
# waiter must outlast that, but not wait forever for a holder that hangs.
LOCK_TIMEOUT = 1200.0


@contextlib.contextmanager
def exclusive(timeout: float | None = None, *, log: Log | None = None) -> Iterator[None]:
    """Serialise lab-changing operations (up, down, enforce) across processes on this machine.

    Several people and pytest sessions share one lab: two concurrent `up`s would both start etcd
    and one would die on the port. Lab operations take this lock; readers (status) do not. The
    holder writes its pid and command line into the lock file, so a waiter that gives up after
    ``timeout`` seconds (default LOCK_TIMEOUT, or NETISO_LAB_LOCK_TIMEOUT) can name it.
    """
    if timeout is None:
        timeout = float(os.environ.get("NETISO_LAB_LOCK_TIMEOUT", LOCK_TIMEOUT))
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise controlplane.LabError(
                        f"the lab lock {LOCK_FILE} is still held after {timeout:.0f} s by "
                        f"{_lock_holder(fd)}; wait for it or stop that process"
                    ) from None
                if not announced and log is not None:
                    log(f"waiting for the lab lock, held by {_lock_holder(fd)}")
                    announced = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_line().encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder_line() -> str:
    try:
        argv = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        argv = "?"
    return f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}: {argv[:200]}\n"


def _lock_holder(fd: int) -> str:
    """What the current holder wrote into the lock file (best effort: it may be mid-write)."""
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "an unknown process (it wrote nothing into the lock file)"


def spec_file() -> Path:
    return controlplane.state_dir() / "lab.json"


def load_spec() -> LabSpec | None:
    """The shape of the running (or last started) lab; None when no lab state exists."""
    try:
        return LabSpec.from_json(spec_file().read_text())
    except (OSError, ValueError, KeyError):
        return None


def _save_spec(spec: LabSpec) -> None:
    spec_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = spec_file().with_suffix(".tmp")
    tmp.write_text(spec.to_json())
    os.replace(tmp, spec_file())


def make_spec(flavor: str = "generic", node_count: int = 2,
              enforce: bool | None = None) -> LabSpec:
    """The lab's shape. The lab's own enforcement defaults to on for generic only. On the clouds
    enforcement comes from the cloud's setting: an EKS cluster with the VPC CNI enforces nothing
    until Calico (the real operator's felix in the lab, issue #15) or the VPC CNI's policy agent
    is on, and GKE and AKS enforce only once their network policy setting is; in the lab those
    settings bring up the engine doubles (engines.py, issues #10-#12)."""
    if enforce is None:
        enforce = flavor == "generic"
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavour {flavor!r}; choose one of {', '.join(FLAVORS)}")
    if node_count not in (1, 2):
        raise ValueError("the lab has 1 or 2 nodes")
    return LabSpec(flavor=flavor, nodes=network.default_nodes()[:node_count], enforce=enforce)


# --------------------------------------------------------------------------- node agent


def _agent_argv(spec: LabSpec) -> list[str]:
    p = controlplane.paths()
    argv = [sys.executable, "-m", "tests.lab.node_agent",
            "--kubeconfig", str(p.admin_kubeconfig), "--state-dir", str(p.root),
            "--flavor", spec.flavor]
    for node in spec.nodes:
        argv += ["--node", str(node)]
    return argv


def _agent_env() -> dict[str, str]:
    env = dict(os.environ)
    # The agent must import tests.lab from this checkout whatever the caller's cwd/venv setup.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _nodes_ready(names: list[str]) -> tuple[bool, str]:
    status, body = controlplane.api_get("/api/v1/nodes")
    if status != 200:
        return False, f"HTTP {status}"
    ready = set()
    for item in json.loads(body).get("items", []):
        for cond in item.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready.add(item["metadata"]["name"])
    missing = [n for n in names if n not in ready]
    return not missing, f"not Ready: {', '.join(missing)}" if missing else "all Ready"


def _start_agent(spec: LabSpec, log: Log) -> None:
    if controlplane.running(NODE_AGENT) is not None:
        return
    log("starting the node agent")
    controlplane.start_process(NODE_AGENT, _agent_argv(spec), env=_agent_env())


def _wait_until(what: str, check: Callable[[], tuple[bool, str]], timeout: float,
                proc: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    detail = ""
    while True:
        try:
            ok, detail = check()
        except (OSError, http.client.HTTPException) as exc:
            ok, detail = False, str(exc)
        if ok:
            return
        if proc is not None and controlplane.running(proc) is None:
            raise controlplane.LabError(
                f"{proc} exited while waiting for {what}; see {controlplane.paths().log(proc)}"
            )
        if time.monotonic() > deadline:
            raise controlplane.LabError(f"{what}: timed out after {timeout:.0f} s ({detail})")
        time.sleep(0.25)


def _dns_running() -> bool:
    status, _ = controlplane.api_get(f"/api/v1/namespaces/kube-system/services/{dns.DNS_SERVICE}")
    if status != 200:
        return False
    status, body = controlplane.api_get(f"/api/v1/namespaces/kube-system/pods/{dns.DNS_POD}")
    return status == 200 and json.loads(body).get("status", {}).get("phase") == "Running"


def _default_sa_exists() -> tuple[bool, str]:
    status, _ = controlplane.api_get("/api/v1/namespaces/default/serviceaccounts/default")
    return status == 200, f"HTTP {status}"


# --------------------------------------------------------------------------- public API


def up(spec: LabSpec | None = None, *, log: Log = _stderr) -> dict[str, float]:
    """Bring the lab up (or complete a partial one). Returns seconds per phase."""
    hidden = hidden_from_containers()
    if hidden is not None:
        raise controlplane.LabError(hidden)
    spec = spec or load_spec() or make_spec()
    running_spec = load_spec()
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def phase(name: str) -> None:
        nonlocal t0
        now = time.monotonic()
        timings[name] = now - t0
        t0 = now

    built = build.build(list(build.CORE), log=log)
    if built:
        log(f"built {', '.join(built)}")
    phase("build")

    here = current_origin()
    agent_running = controlplane.running(NODE_AGENT) is not None
    if agent_running:
        running_spec = _with_origin(running_spec)
        check_reuse(running_spec)
        foreign = foreign_origin(running_spec, here)
        if foreign is not None:
            log(f"note: {foreign}; reusing it (CI would refuse)")
    if (running_spec is not None and agent_running
            and (running_spec.flavor, running_spec.nodes) != (spec.flavor, spec.nodes)):
        # A running agent was started for another shape. Its Nodes are deleted, not patched:
        # spec.providerID is immutable once set, so an eks node cannot become a gke node.
        log(f"re-registering nodes: flavour {running_spec.flavor} -> {spec.flavor}")
        controlplane.stop_process(NODE_AGENT)
        agent_running = False
        for node in running_spec.nodes:
            with contextlib.suppress(OSError, http.client.HTTPException):
                controlplane.api_call("DELETE", f"/api/v1/nodes/{node.name}")
    # The origin is whoever's code the node agent runs: kept while that agent keeps running.
    if agent_running:
        spec.origin = (running_spec.origin if running_spec is not None else None) or _agent_origin()
    else:
        spec.origin = here
    _save_spec(spec)

    log("network: fabric, nodes, metadata host, safety rules")
    network.up(spec.nodes)
    phase("network")

    log("control plane: etcd, kube-apiserver, kube-controller-manager")
    controlplane.up()
    phase("control plane")

    _start_agent(spec, log)
    _wait_until("nodes Ready", lambda: _nodes_ready([n.name for n in spec.nodes]), 60,
                proc=NODE_AGENT)
    _wait_until("default ServiceAccount", _default_sa_exists, 60)
    phase("nodes")

    if not _dns_running():
        log("cluster DNS: kube-system/lab-dns behind Service kube-dns (10.96.0.10)")
        try:
            dns.ensure_dns(str(controlplane.paths().admin_kubeconfig))
        except (TimeoutError, kubeapi.ApiError) as exc:
            raise controlplane.LabError(f"cluster DNS did not start: {exc}") from exc
    phase("dns")

    try:
        kube = kubeapi.Kube(str(controlplane.paths().admin_kubeconfig))
        if spec.flavor == "eks":
            aws_node.ensure(kube)
        else:
            aws_node.remove(kube)
    except kubeapi.ApiError as exc:
        raise controlplane.LabError(f"kube-system/aws-node: {exc}") from exc
    engines.remove_foreign(kube, spec.flavor)

    set_enforcement(spec.enforce, spec=spec, log=log)
    phase("enforcement")
    return timings


def set_enforcement(enabled: bool, *, spec: LabSpec | None = None, log: Log = _stderr) -> None:
    """Turn NetworkPolicy enforcement on or off on every node of the running lab."""
    spec = spec or load_spec()
    if spec is None:
        raise controlplane.LabError("no lab is running (no lab.json); run `python -m tests.lab up`")
    if enabled:
        log("enforcement: starting kube-router (firewall only) in each node netns")
        enforcement.on(spec.enforced_nodes())
    else:
        log("enforcement: stopping kube-router and removing its chains and ipsets")
        enforcement.off(spec.enforced_nodes())
    spec.enforce = enabled
    _save_spec(spec)


def down(*, log: Log = _stderr) -> list[str]:
    """Stop and remove everything the lab created. Idempotent. Returns leftovers (empty = clean)."""
    spec = load_spec()
    names = [NODE_AGENT, *reversed(controlplane.CONTROL_PLANE)]
    if spec is not None:
        names = [enforcement.process_name(n) for n in spec.enforced_nodes()] + names
    for name in names:
        controlplane.stop_process(name, grace=3.0)
    strays = controlplane.scan_lab_processes()
    if strays:
        log(f"killing {len(strays)} stray lab process(es): {strays}")
        controlplane.kill_pids(strays, grace=2.0)
    network.down()
    root = controlplane.state_dir()
    if root.is_dir():
        # Logs stay for post-mortems (they are appended to on the next up); the rest must go:
        # a stale etcd would resurrect pods bound to namespaces that no longer exist.
        for entry in root.iterdir():
            if entry.name == "logs":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    # Processes count too: network.leftovers() lists every one carrying the lab's marker.
    return network.leftovers()


def status() -> list[tuple[str, str]]:
    """(component, state) pairs, one per component, for humans and for the fixture."""
    spec = load_spec()
    rows: list[tuple[str, str]] = []
    present = network.list_netns()
    rows.append(("network", f"up ({len(present)} netns)" if network.FABRIC_NS in present
                 else "down"))
    rows += list(controlplane.status().items())
    pid = controlplane.running(NODE_AGENT)
    if pid is None:
        rows.append((NODE_AGENT, "stopped"))
    else:
        try:
            detail = _nodes_ready([n.name for n in spec.nodes] if spec else [])[1]
        except (OSError, http.client.HTTPException) as exc:
            detail = str(exc)
        rows.append((NODE_AGENT, f"running (pid {pid}); {detail}"))
    if spec is None:
        rows.append(("enforcement", "unknown (no lab.json)"))
        rows.append(("flavor", "unknown"))
    else:
        rows.append(("enforcement", enforcement.state(spec.enforced_nodes())))
        # kube-router chains with no lab kube-router running: an engine double's (engines.py).
        doubled = [n.name for n in spec.enforced_nodes()
                   if controlplane.running(enforcement.process_name(n)) is None
                   and enforcement.chains(n.netns)]
        if doubled:
            rows.append(("engine doubles", f"kube-router chains on {', '.join(doubled)} "
                         "(a cloud engine's double, not the lab's enforcement)"))
        rows.append(("flavor", spec.flavor))
        origin = spec.origin or _agent_origin()
        rows.append(("origin", f"{origin.repo} @ {(origin.revision or 'unknown')[:12]}"
                     if origin else "unknown (not recorded)"))
    return rows


def is_up() -> bool:
    """True when a complete lab is running (the fixture reuses it instead of starting one)."""
    spec = load_spec()
    if spec is None or controlplane.running(NODE_AGENT) is None:
        return False
    if any(controlplane.running(n) is None for n in controlplane.CONTROL_PLANE):
        return False
    try:
        return _nodes_ready([n.name for n in spec.nodes])[0]
    except OSError:
        return False
