"""Probe pods: Jobs that listen or dial, and what they report back. Talks to the cluster.

Design decisions:

* **Pods owned by Jobs.** The EKS VPC CNI's network-policy agent ignores bare pods, and a Job
  gives a killed run's probes an end of their own: ``activeDeadlineSeconds`` stops them at the
  run's deadline and ``ttlSecondsAfterFinished`` lets the cluster delete them afterwards.
* **No exec, no port-forward.** A client runs its connection attempts in parallel and writes one
  line per flow (``<id> <exit code> <output>``) to its termination message, which the API
  server returns with the pod's status; the log is the fallback (FallbackToLogsOnError, and a
  log read when the message is empty). The shell script only records what happened;
  :func:`classify` decides allowed / blocked / probe-error in Python, where it is tested.
* **Pod Security "restricted".** Non-root (uid 65534), no privilege escalation, every capability
  dropped, RuntimeDefault seccomp, no ServiceAccount token; the canary namespaces enforce the
  restricted profile, so the API server itself proves the probes comply.
* **Never an endpoint.** Every probe pod carries a readiness gate whose condition nobody sets:
  it never becomes Ready, so no Service sends it real traffic even when a server probe wears the
  app's labels (``--in-namespace``). Clients carry only verify's own labels.
* **Waiting says why.** Waits poll one LIST of the run's pods (by label, cluster-wide): no watch
  verb in the role, nothing to reconnect. A pod that cannot start fails the wait at once with
  its own reason (ErrImagePull and its message, Unschedulable and the scheduler's message), not
  with a generic timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netiso.errors import OperationFailed
from netiso.kube import JOB, NAMESPACE, POD, Kube, KubeError, NotFound, Request, field_managers
from netiso.verify.scenarios import (
    DEADLINE_ANNOTATION,
    JOB_LABEL,
    NAMESPACE_PREFIX,
    PROBE_LABEL,
    RUN_LABEL,
    Outcome,
    Probe,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
DEFAULT_IMAGE = "busybox:1.36"
READINESS_GATE = "netiso.io/probe-never-ready"
CONNECT_TIMEOUT = 2  # seconds, per connection attempt
POLL_INTERVAL = 0.25
#: Container states a pod does not recover from within a verify run.
FATAL_WAITING = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
    "RunContainerError",
})


class ProbeFailed(OperationFailed):
    """A probe pod could not run (image pull, scheduling, timeout): exit 1, with its reason."""


# --- what a client runs ----------------------------------------------------------------------

#: One background job per line of $NETISO_PROBES ("<id> tcp <host> <port> <want>" or
#: "<id> dns <name> - -"); each prints "<id> <exit code> <attempts> <output, one line>". A line
#: whose <want> is "allowed" or "blocked" is tried again, $NETISO_SETTLE seconds apart and up to
#: $NETISO_TRIES times, while the connection disagrees with it: enforcement lags policy writes,
#: and retrying inside the pod costs a second, where a new probe pod costs several. The whole
#: block is captured before it is written, so the termination message is written once.
CLIENT_SCRIPT = r"""
probe() {
  n=0
  while :; do
    n=$((n+1))
    if [ "$2" = dns ]; then out=$(nslookup "$3" 2>&1); rc=$?
    else out=$(nc -w "$NETISO_TIMEOUT" "$3" "$4" </dev/null 2>&1); rc=$?; fi
    case "$5" in
      allowed) [ "$rc" -eq 0 ] && break ;;
      blocked) [ "$rc" -ne 0 ] && break ;;
      *) break ;;
    esac
    [ "$n" -ge "$NETISO_TRIES" ] && break
    sleep "$NETISO_SETTLE"
  done
  echo "$1 $rc $n $(echo "$out" | tr '\n' ' ' | cut -c1-120)"
}
r=$(echo "$NETISO_PROBES" | { while read -r id kind host port want; do
  [ -n "$id" ] && probe "$id" "$kind" "$host" "$port" "$want" &
done; wait; })
echo "$r"
echo "$r" > /dev/termination-log || exit 1
"""


def server_script(ports: Sequence[int]) -> str:
    """Listen on every port, answer "ok" and close, forever (the Job's deadline ends it)."""
    listeners = " ".join(f"nc -ll -p {p} -e echo ok &" for p in ports)
    return f"{listeners} wait"


def client_lines(attempts: Sequence[Sequence[str]]) -> str:
    return "\n".join(" ".join(a) for a in attempts)


@dataclass(frozen=True)
class Observation:
    outcome: Outcome
    detail: str


def classify(kind: str, rc: int, text: str) -> Observation:
    """Turn one attempt's exit code and output into an outcome. Pure.

    A refused connection counts as blocked: the server probe listens on every port it is
    dialled on (it was Running before any client started), so a refusal comes from a policy
    that rejects (kube-router, Cilium) rather than from a closed port. A timeout is a policy
    that drops (Calico, the VPC CNI agent). Anything else (a missing applet, a bad address) is
    a probe error, never "blocked".
    """
    low = text.lower()
    if kind == "dns":
        if rc == 0:
            return Observation(Outcome.ALLOWED, "resolved")
        if "nxdomain" in low or "can't find" in low or "servfail" in low or "refused" in low:
            return Observation(Outcome.ALLOWED, "the DNS server answered: " + text.strip()[:80])
        if "timed out" in low or "no servers could be reached" in low or "timeout" in low:
            return Observation(Outcome.BLOCKED, "no answer from the DNS server (timed out)")
        return Observation(Outcome.ERROR, f"nslookup exit {rc}: {text.strip()[:100]}")
    if rc == 0:
        return Observation(Outcome.ALLOWED, "connected")
    if "refused" in low:
        return Observation(Outcome.BLOCKED, "connection refused (rejected)")
    if "timed out" in low or "timeout" in low:
        return Observation(Outcome.BLOCKED, "timed out (dropped)")
    if "no route to host" in low or "unreachable" in low:
        return Observation(Outcome.BLOCKED, "no route to host (rejected)")
    if rc == 1 and not text.strip():
        # busybox nc exits 1 silently when -w expires before the connection completes.
        return Observation(Outcome.BLOCKED, f"no connection within {CONNECT_TIMEOUT}s (dropped)")
    return Observation(Outcome.ERROR, f"nc exit {rc}: {text.strip()[:100]}")


def parse_results(text: str) -> dict[str, tuple[int, int, str]]:
    """``<id> <rc> <attempts> <output>`` lines into {id: (rc, attempts, output)}; other lines
    are ignored."""
    out: dict[str, tuple[int, int, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split(" ", 3)
        if len(parts) >= 3 and parts[1].lstrip("-").isdigit() and parts[2].isdigit():
            out[parts[0]] = (int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else "")
    return out


# --- manifests -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeSettings:
    run_id: str
    image: str = DEFAULT_IMAGE
    pull_secrets: tuple[str, ...] = ()
    deadline: datetime | None = None
    timeout: float = 120.0

    def remaining(self) -> float:
        """Seconds left of the run's budget (``--timeout`` covers the whole run)."""
        if self.deadline is None:
            return self.timeout
        return max(1.0, (self.deadline - datetime.now(UTC)).total_seconds())

    @property
    def deadline_text(self) -> str:
        when = self.deadline or datetime.now(UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def job_name(settings: ProbeSettings, probe: Probe, phase: str = "") -> str:
    return f"nv-{settings.run_id}-{probe.name}" + (f"-{phase}" if phase else "")


def job_manifest(settings: ProbeSettings, probe: Probe, name: str, script: str, *,
                 env: Mapping[str, str] | None = None, ports: Sequence[int] = ()
                 ) -> dict[str, Any]:
    """A one-pod Job for ``probe``, pinned to its node, compliant with Pod Security
    "restricted"."""
    labels = {RUN_LABEL: settings.run_id, PROBE_LABEL: probe.name, JOB_LABEL: name}
    privileged_port = any(p < 1024 for p in ports)
    pod_sc: dict[str, Any] = {
        "runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if privileged_port:
        # A "safe" sysctl (allowed by every Pod Security level): lets the non-root server
        # listen on an app port below 1024 without any capability.
        pod_sc["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    container: dict[str, Any] = {
        "name": "probe",
        "image": settings.image,
        "command": ["sh", "-c", script],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"},
                      "limits": {"memory": "32Mi"}},
    }
    if ports:
        container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 1,
        "nodeSelector": {"kubernetes.io/hostname": probe.node.hostname},
        # Every node must be reachable, tainted ones included (a dedicated pool's node enforces
        # policies as much as any other).
        "tolerations": [{"operator": "Exists"}],
        "securityContext": pod_sc,
        "readinessGates": [{"conditionType": READINESS_GATE}],
        "containers": [container],
    }
    if settings.pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in settings.pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name, "namespace": probe.namespace,
            "labels": {MANAGED_BY: "netiso", **labels},
            "annotations": {DEADLINE_ANNOTATION: settings.deadline_text},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(30, int(settings.timeout) + 30),
            "ttlSecondsAfterFinished": 120,
            "template": {
                "metadata": {"labels": {**labels, **probe.labels}},
                "spec": spec,
            },
        },
    }


def namespace_manifest(name: str, settings: ProbeSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                MANAGED_BY: "netiso",
                RUN_LABEL: settings.run_id,
                # The API server refuses any probe pod that is not "restricted"-compliant.
                "pod-security.kubernetes.io/enforce": "restricted",
                # `netiso apply` must not put the bundle here behind verify's back.
                "netiso.io/exclude": "true",
            },
            "annotations": {DEADLINE_ANNOTATION: settings.deadline_text},
        },
    }


# --- pods' own reasons ---------------------------------------------------------------------

def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """The pod's own reason it cannot run (None while it may still start). Pure."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            return f"Unschedulable: {cond.get('message') or 'no node fits'}"
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in FATAL_WAITING:
        msg = str(waiting.get("message") or "").strip()
        return f"{waiting['reason']}" + (f": {msg}" if msg else "")
    return None


def describe_pending(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        return f"{status.get('phase', 'Pending')}, {waiting['reason']}"
    return str(status.get("phase") or "Pending")


def termination_message(pod: Mapping[str, Any]) -> str:
    term = (_container_status(pod).get("state") or {}).get("terminated") or {}
    return str(term.get("message") or "")


def exit_code(pod: Mapping[str, Any]) -> int | None:
    term = (_container_status(pod).get("state") or {}).get("terminated") or {}
    code = term.get("exitCode")
    return int(code) if code is not None else None


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


# --- the cluster side ------------------------------------------------------------------------

class ProbeRunner:
    """Creates probe Jobs and waits for their pods, for one run."""

    def __init__(self, kube: Kube, settings: ProbeSettings,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.kube = kube
        self.settings = settings
        self.log = log
        self.jobs: dict[str, tuple[str, str]] = {}  # job name -> (namespace, probe name)
        self._pool = ThreadPoolExecutor(max_workers=8)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def create_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Create objects in parallel (the API server, not the client, sets the pace)."""
        for obj in objects:
            if obj.get("kind") == "Job":
                meta = obj["metadata"]
                self.jobs[meta["name"]] = (meta["namespace"], meta["labels"][PROBE_LABEL])
        list(self._pool.map(self.kube.create, objects))

    def start(self, jobs: Sequence[Mapping[str, Any]]) -> None:
        self.create_all(jobs)

    def _list(self) -> dict[str, Mapping[str, Any]]:
        """The run's pods by Job name (the newest pod of each Job)."""
        pods = self.kube.list_pods(None, f"{RUN_LABEL}={self.settings.run_id}")
        by_job: dict[str, Mapping[str, Any]] = {}
        for pod in pods:
            job = ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL)
            if job:
                by_job[str(job)] = pod
        return by_job

    def wait(self, names: Sequence[str], done: Callable[[Mapping[str, Any]], bool], what: str,
             timeout: float | None = None) -> dict[str, Mapping[str, Any]]:
        """Poll until ``done`` holds for every Job's pod; a pod that cannot run fails at once."""
        limit = self.settings.remaining() if timeout is None else timeout
        deadline = time.monotonic() + limit
        pods: dict[str, Mapping[str, Any]] = {}
        while True:
            pods = self._list()
            waiting: list[str] = []
            for name in names:
                pod = pods.get(name)
                if pod is not None:
                    problem = pod_problem(pod)
                    if problem:
                        node = (pod.get("spec") or {}).get("nodeName") or "no node"
                        raise ProbeFailed(
                            f"probe pod {pod_key(pod)} ({node}) cannot run: {problem}",
                            hint=self._hint(problem))
                if pod is None or not done(pod):
                    waiting.append(name)
            if not waiting:
                return {n: pods[n] for n in names}
            if time.monotonic() >= deadline:
                states = []
                for name in waiting[:5]:
                    pod = pods.get(name)
                    states.append(f"{pod_key(pod)}: {describe_pending(pod)}" if pod else
                                  f"Job {self.jobs.get(name, ('?', ''))[0]}/{name}: no pod "
                                  "created (admission refused it? see the Job's events)")
                raise ProbeFailed(
                    f"timed out after {limit:.0f}s (the rest of --timeout) waiting for "
                    f"{len(waiting)} probe pod(s) {what}: {'; '.join(states)}",
                    hint="raise --timeout, or check the nodes and the image")
            time.sleep(POLL_INTERVAL)

    @staticmethod
    def _hint(problem: str) -> str:
        if "Image" in problem:
            return ("use --probe-image with an image this cluster can pull (busybox-like: sh, "
                    "nc, nslookup) and --image-pull-secret for a private registry")
        if problem.startswith("Unschedulable"):
            return "skip that node with --nodes N, or free capacity on it"
        return "see `kubectl describe pod` for the probe pod"

    def wait_running(self, names: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        def running(pod: Mapping[str, Any]) -> bool:
            status = pod.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                raise ProbeFailed(
                    f"server probe {pod_key(pod)} exited (phase {status.get('phase')}, exit "
                    f"code {exit_code(pod)}): {termination_message(pod)[:200]}",
                    hint="the probe image needs busybox's sh and nc")
            state = _container_status(pod).get("state") or {}
            return bool(status.get("phase") == "Running" and status.get("podIP")
                        and "running" in state)
        return self.wait(names, running, "to be running")

    def wait_finished(self, names: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        def finished(pod: Mapping[str, Any]) -> bool:
            return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        return self.wait(names, finished, "to finish")

    def output(self, pod: Mapping[str, Any]) -> str:
        """The client's results: its termination message, else its log."""
        text = termination_message(pod)
        if text.strip():
            return text
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        try:
            resp = self.kube.request("GET", POD.path(ns, name) + "/log",
                                     Request("get", POD, ns, name),
                                     query=[("limitBytes", "16384")], stream=True)
        except NotFound:
            return ""
        try:
            return bytes(resp.read()).decode("utf-8", "replace")
        finally:
            resp.release_conn()

    # --- cleanup -----------------------------------------------------------------------

    def delete_jobs(self, namespace: str) -> None:
        for job in self.kube.list_objects(JOB, namespace,
                                          label_selector=f"{RUN_LABEL}={self.settings.run_id}"):
            meta = job["metadata"]
            self.kube.delete(JOB, meta["name"], namespace, uid=meta.get("uid"))

    def delete_pods_now(self) -> None:
        """Delete the run's pods without a grace period: probes hold no state, and waiting for
        the namespace controller (and each pod's grace) made cleanup the slowest step."""
        selector = f"{RUN_LABEL}={self.settings.run_id}"
        pods = self.kube.list_pods(None, selector)

        def delete(pod: Mapping[str, Any]) -> None:
            meta = pod["metadata"]
            ns, name = str(meta["namespace"]), str(meta["name"])
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta.get("uid")}}
            try:
                self.kube.request("DELETE", POD.path(ns, name), Request("delete", POD, ns, name),
                                  body=body)
            except NotFound:
                pass
            except KubeError as exc:
                if exc.status != 409:  # 409: a new pod took the name; not ours to delete
                    raise

        list(self._pool.map(delete, pods))

    def wait_gone(self, namespaces: Sequence[str], timeout: float = 60.0) -> list[str]:
        """Wait until no pod of the run is left (nothing of it runs any more); returns what is
        still there. Deleted namespaces are not waited for: the namespace controller removes
        them in its own time (seconds, with its back-off), and nothing in them runs by then."""
        deadline = time.monotonic() + timeout
        selector = f"{RUN_LABEL}={self.settings.run_id}"
        del namespaces
        while True:
            left = [f"pod {pod_key(p)}" for p in self.kube.list_pods(None, selector)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(POLL_INTERVAL * 2)


def _expired(obj: Mapping[str, Any], now: datetime) -> bool:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(DEADLINE_ANNOTATION)
    if not text:
        return True
    try:
        when = datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return True
    return when <= now


def remove_leftovers(kube: Kube, now: datetime | None = None
                     ) -> tuple[list[str], list[str]]:
    """Delete what killed runs left (namespaces and Jobs past their deadline, written by
    netiso); returns (removed, still running: another verify's, left alone)."""
    now = now or datetime.now(UTC)
    removed: list[str] = []
    active: list[str] = []
    for ns_obj in kube.list_namespaces(RUN_LABEL):
        meta = ns_obj["metadata"]
        name = str(meta["name"])
        if not name.startswith(NAMESPACE_PREFIX) or "netiso" not in field_managers(ns_obj) \
                or (meta.get("labels") or {}).get(MANAGED_BY) != "netiso":
            continue
        if meta.get("deletionTimestamp"):
            continue  # already being deleted (an earlier run's cleanup)
        if not _expired(ns_obj, now):
            active.append(f"namespace {name}")
            continue
        if kube.delete(NAMESPACE, name, uid=meta.get("uid")):
            removed.append(f"namespace {name}")
    for job in kube.list_objects(JOB, None, label_selector=RUN_LABEL):
        meta = job["metadata"]
        ns = str(meta["namespace"])
        if ns.startswith(NAMESPACE_PREFIX) or "netiso" not in field_managers(job) \
                or meta.get("deletionTimestamp"):
            continue  # its namespace takes it along / not ours / already being deleted
        if not _expired(job, now):
            active.append(f"Job {ns}/{meta['name']}")
            continue
        if kube.delete(JOB, meta["name"], ns, uid=meta.get("uid")):
            removed.append(f"Job {ns}/{meta['name']}")
    return removed, active
