"""One verify run: canary first, then the bundle checks, cleanup always. Talks to the cluster.

Design decisions:

* **Canary first, per node.** A server and a client per node in a throwaway namespace; connect,
  apply a deny, connect again. Ingress is enforced where the destination runs, so a node is
  "enforced" when every flow into its server is blocked after the deny. Any node that is not
  ends the run (exit 3): bundle checks on a dataplane that ignores policies are noise.
  Partial enforcement is named node by node.
* **Enforcement lags policy writes.** Each client knows what its flows should do (the engine's
  verdict with the clients as they will be created) and tries a disagreeing connection again in
  place, a second apart, a few times (both directions: a new deny lags as much as a new allow);
  a flow that still disagrees gets one more round in a new client pod after a settle period.
  Attempts are reported per flow. A real leak stays a leak; a slow agent is not reported as one.
* **The bundle goes where it would go.** Canary namespaces get the bundle rendered from the same
  values and provider as a real target, through server-side apply per object. With
  ``--in-namespace`` the servers and same-namespace clients run in a real namespace (its
  policies are the ones it has) and only "another namespace" is a throwaway one.
* **Cleanup always.** Every way out of :func:`verify` (success, failure, Ctrl-C, SIGTERM turned
  into KeyboardInterrupt by the command) deletes what the run created unless ``keep``, and waits
  until the namespaces and pods are gone. A run killed outright leaves namespaces and Jobs
  whose deadline annotation says when they became leftovers: the next run removes those, and
  their Jobs' own deadlines stop the pods meanwhile.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from netiso.bundle import render_bundle
from netiso.config import PolicyKey, Values
from netiso.errors import (
    NetisoError,
    OperationFailed,
    PreconditionFailed,
    UsageError,
    VerificationFailed,
)
from netiso.kube import NAMESPACE, NETWORK_POLICY, NODE, POD, SERVICEACCOUNT, Kube
from netiso.policy import Cluster, Engine, PolicyInputError
from netiso.profiles import EKS_POD_IDENTITY, Provider
from netiso.verify.checks import (
    BUNDLE_CHECKS,
    ENFORCEMENT,
    ENFORCEMENT_DESCRIPTION,
    Check,
    CheckResult,
    CheckStatus,
    Context,
    Expectation,
    FlowResult,
    declare,
    expectation,
    likely_cause,
)
from netiso.verify.probes import (
    CLIENT_SCRIPT,
    CONNECT_TIMEOUT,
    DEFAULT_IMAGE,
    MANAGED_BY,
    ProbeFailed,
    ProbeRunner,
    ProbeSettings,
    classify,
    client_lines,
    job_manifest,
    job_name,
    namespace_manifest,
    parse_results,
    remove_leftovers,
    server_script,
)
from netiso.verify.scenarios import (
    DEFAULT_NODE_LIMIT,
    NAMESPACE_PREFIX,
    PROBE_LABEL,
    RUN_LABEL,
    FlowSpec,
    Layout,
    NodeInfo,
    Outcome,
    Probe,
    Target,
    choose_other_port,
    metadata_addresses,
    pick_nodes,
)

CANARY_POLICY = "netiso-verify-canary-deny"
DNS_NAME = "kubernetes.default.svc.cluster.local"
SETTLE_SECONDS = 2.0
RETRIES = 1          # rounds of new client pods for flows that still disagree
IN_POD_SETTLE = 1    # seconds between tries inside a client pod
CANARY_TRIES = 6     # tries inside a canary client after the deny (about 6 s of lag allowed)
BUNDLE_TRIES = 4


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_ENFORCED = "not-enforced"
    PROBE_ERROR = "probe-error"


@dataclass
class Options:
    values: Values
    provider: str = "generic"
    nodes: int | None = DEFAULT_NODE_LIMIT
    canary_only: bool = False
    in_namespace: str | None = None
    keep: bool = False
    skip: frozenset[str] = frozenset()
    image: str = DEFAULT_IMAGE
    pull_secrets: tuple[str, ...] = ()
    timeout: float = 120.0
    settle: float = SETTLE_SECONDS


@dataclass
class NodeVerdict:
    node: NodeInfo
    enforced: bool | None  # None: could not tell (probe errors)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**self.node.to_json(), "enforced": self.enforced, "detail": self.detail}


@dataclass
class Result:
    server: str
    context: str | None
    run_id: str
    provider: str
    in_namespace: str | None
    namespaces: list[str] = field(default_factory=list)
    nodes: list[NodeVerdict] = field(default_factory=list)
    skipped_nodes: list[tuple[str, str]] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    likely_cause: str | None = None
    notes: list[str] = field(default_factory=list)
    kept: bool = False
    leftovers_removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def flows(self) -> list[FlowResult]:
        return [f for c in self.checks for f in c.flows]

    @property
    def enforcement(self) -> str:
        known = [n.enforced for n in self.nodes if n.enforced is not None]
        if not self.nodes or not known:
            return "unknown"
        if all(known) and len(known) == len(self.nodes):
            return "enforced"
        if not any(known):
            return "not-enforced"
        return "partial" if any(known) and not all(known) else "unknown"

    @property
    def verdict(self) -> Verdict:
        if any(n.enforced is False for n in self.nodes):
            return Verdict.NOT_ENFORCED
        flows = self.flows
        if any(not f.ok and not f.probe_error for f in flows):
            return Verdict.FAILED
        if any(f.probe_error for f in flows) or (self.enforcement == "unknown" and \
                any(c.name == ENFORCEMENT and c.status is not CheckStatus.SKIPPED
                    for c in self.checks)):
            return Verdict.PROBE_ERROR
        return Verdict.PASSED

    def error(self) -> NetisoError | None:
        """The verdict as the error its exit code belongs to (None when it passed): 3 for a
        mismatch or a node that does not enforce, 1 when probing failed."""
        verdict = self.verdict
        if verdict is Verdict.NOT_ENFORCED:
            off = [n.node.name for n in self.nodes if n.enforced is False]
            return VerificationFailed(f"NetworkPolicy not enforced on {', '.join(off)}",
                                      hint=f"likely cause: {self.likely_cause}")
        if verdict is Verdict.FAILED:
            bad = [f.spec.id for f in self.flows if not f.ok and not f.probe_error]
            return VerificationFailed(f"{len(bad)} flow(s) do not match: {', '.join(bad)}")
        if verdict is Verdict.PROBE_ERROR:
            return OperationFailed("probing failed: "
                                   + "; ".join(f"{f.spec.id}: {f.reason}" for f in self.flows
                                               if f.probe_error)[:400]
                                   or "probing failed: the canary could not connect")
        return None

    def to_json(self) -> dict[str, Any]:
        flows = self.flows
        return {
            "kind": "VerifyResult",
            "server": self.server,
            "context": self.context,
            "runId": self.run_id,
            "provider": self.provider,
            "inNamespace": self.in_namespace,
            "namespaces": self.namespaces,
            "verdict": self.verdict.value,
            "enforcement": {
                "state": self.enforcement,
                "nodes": [n.to_json() for n in self.nodes],
                "likelyCause": self.likely_cause,
            },
            "skippedNodes": [{"name": n, "reason": r} for n, r in self.skipped_nodes],
            "checks": [c.to_json() for c in self.checks],
            "flows": [f.to_json() for f in flows],
            "summary": {
                "flows": len(flows),
                "passed": sum(f.ok for f in flows),
                "failed": sum(not f.ok and not f.probe_error for f in flows),
                "probeErrors": sum(f.probe_error for f in flows),
                "checksSkipped": sum(c.status is CheckStatus.SKIPPED for c in self.checks),
            },
            "notes": self.notes,
            "kept": self.kept,
            "leftoversRemoved": self.leftovers_removed,
            "seconds": round(self.seconds, 1),
        }


def validate_skip(names: Sequence[str]) -> frozenset[str]:
    known = [ENFORCEMENT, *(c.name for c in BUNDLE_CHECKS)]
    bad = [n for n in names if n not in known]
    if bad:
        raise UsageError(f"--skip: unknown check {bad[0]!r}; allowed: {', '.join(known)}")
    return frozenset(names)


def _app_port(values: Values) -> tuple[int | None, str | None, dict[str, str]]:
    """The first TCP app port of the values (number, name if named) and its pod labels."""
    if not values.enabled(PolicyKey.ALLOW_APP_PORTS):
        return None, None, {}
    for app in values.app_ports:
        for spec in app.ports:
            if spec.protocol.upper() != "TCP":
                continue
            if isinstance(spec.port, int):
                return spec.port, None, dict(app.pod_labels)
            return 8000, str(spec.port), dict(app.pod_labels)
    return None, None, {}


class _Run:
    def __init__(self, kube: Kube, opts: Options, log: Callable[[str], None]) -> None:
        self.kube = kube
        self.opts = opts
        self.log = log
        self.run_id = secrets.token_hex(3)
        # The whole run lives within --timeout; past this instant its objects are leftovers.
        deadline = datetime.now(UTC) + timedelta(seconds=opts.timeout)
        self.settings = ProbeSettings(self.run_id, opts.image, opts.pull_secrets, deadline,
                                      opts.timeout)
        self.runner = ProbeRunner(kube, self.settings, log)
        self.created_namespaces: list[str] = []
        self.pods: dict[str, Mapping[str, Any]] = {}   # probe name -> pod
        self.result = Result(kube.server, kube.context, self.run_id, opts.provider,
                             opts.in_namespace)
        self.jobs_seq = 0

    # --- building blocks -----------------------------------------------------------------

    def _wait_service_accounts(self, namespaces: Sequence[str]) -> None:
        # The ServiceAccount admission plugin refuses pods until the namespace's "default"
        # ServiceAccount exists, and the Job controller then backs off for seconds: wait here.
        deadline = time.monotonic() + self.settings.remaining()
        pending = list(namespaces)
        while pending:
            pending = [ns for ns in pending if not self.kube.list_objects(
                SERVICEACCOUNT, ns, field_selector="metadata.name=default")]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ProbeFailed(f"namespace(s) {', '.join(pending)} got no default "
                                  "ServiceAccount in time")
            time.sleep(0.1)

    def _server_jobs(self, servers: Sequence[Probe], layout: Layout) -> list[dict[str, Any]]:
        jobs = []
        for probe in servers:
            ports = layout.ports
            jobs.append(job_manifest(self.settings, probe, job_name(self.settings, probe),
                                     server_script(ports), ports=ports))
        return jobs

    def _client_job(self, probe: Probe, attempts: Sequence[Sequence[str]], phase: str,
                    tries: int) -> tuple[str, dict[str, Any]]:
        name = job_name(self.settings, probe, phase)
        env = {"NETISO_PROBES": client_lines(attempts), "NETISO_TIMEOUT": str(CONNECT_TIMEOUT),
               "NETISO_TRIES": str(tries), "NETISO_SETTLE": str(IN_POD_SETTLE)}
        return name, job_manifest(self.settings, probe, name, CLIENT_SCRIPT, env=env)

    def _attempt(self, spec: FlowSpec, want: str) -> tuple[str, ...]:
        t = spec.target
        if t.dns_name:
            return (spec.id, "dns", t.dns_name, "-", "-")
        if t.server:
            ip = (self.pods[t.server].get("status") or {}).get("podIP")
            return (spec.id, "tcp", str(ip), str(t.port), want)
        return (spec.id, "tcp", str(t.ip), str(t.port), want)

    def probe(self, flows: Sequence[FlowSpec], probes: Mapping[str, Probe], phase: str,
              wants: Mapping[str, str] | None = None, tries: int = 1
              ) -> dict[str, tuple[Outcome, str, Mapping[str, Any], int]]:
        """Run the flows (one client Job per client probe, all at once); {flow id: (outcome,
        detail, client pod, attempts)}. ``wants`` (allowed/blocked per flow) lets a client try
        again in place, up to ``tries`` times, while a connection disagrees with it."""
        by_client: dict[str, list[FlowSpec]] = {}
        for f in flows:
            by_client.setdefault(f.client, []).append(f)
        jobs: dict[str, tuple[str, list[FlowSpec]]] = {}
        manifests = []
        for client, specs in by_client.items():
            lines = [self._attempt(s, (wants or {}).get(s.id, "-")) for s in specs]
            name, manifest = self._client_job(probes[client], lines, phase, tries)
            jobs[name] = (client, specs)
            manifests.append(manifest)
        self.runner.start(manifests)
        pods = self.runner.wait_finished(list(jobs))
        out: dict[str, tuple[Outcome, str, Mapping[str, Any], int]] = {}
        for name, (client, specs) in jobs.items():
            pod = pods[name]
            self.pods[client] = pod
            raw = parse_results(self.runner.output(pod))
            for s in specs:
                if s.id not in raw:
                    out[s.id] = (Outcome.ERROR, "no result line from the client probe", pod, 1)
                    continue
                rc, n, text = raw[s.id]
                obs = classify(s.target.kind, rc, text)
                out[s.id] = (obs.outcome, obs.detail, pod, n)
        return out

    def _apply_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self.kube.apply, objects))

    # --- phases ----------------------------------------------------------------------------

    def setup(self) -> Layout:
        opts = self.opts
        removed, active = remove_leftovers(self.kube)
        self.result.leftovers_removed = removed
        if removed:
            self.log(f"removed leftovers of an earlier verify run: {', '.join(removed)}")
        if active:
            self.log(f"left alone (another verify run still within its deadline): "
                     f"{', '.join(active)}")
        if opts.in_namespace:
            found = self.kube.list_namespaces(f"kubernetes.io/metadata.name={opts.in_namespace}")
            if not found:
                raise UsageError(f"--in-namespace: namespace {opts.in_namespace!r} not found")
            if found[0]["metadata"].get("deletionTimestamp"):
                raise UsageError(f"--in-namespace: namespace {opts.in_namespace!r} is being "
                                 "deleted")
        nodes, skipped = pick_nodes(self.kube.list_objects(NODE), opts.nodes)
        self.result.skipped_nodes = skipped
        for name, why in skipped:
            self.log(f"node {name} skipped: {why}")
        if not nodes:
            raise PreconditionFailed("no schedulable, Ready Linux node to probe",
                                     hint="check `kubectl get nodes`")
        app_port, app_name, app_labels = _app_port(opts.values)
        taken = [p for p in (app_port,) if p]
        canary = f"{NAMESPACE_PREFIX}{self.run_id}"
        layout = Layout(
            run_id=self.run_id, nodes=tuple(nodes), canary_namespace=canary,
            namespace=opts.in_namespace or canary,
            peer_namespace=f"{canary}-peer", app_port=app_port, app_port_name=app_name,
            app_labels=app_labels, other_port=choose_other_port(taken),
            in_namespace=bool(opts.in_namespace),
        )
        wanted = [canary] + ([] if opts.canary_only else [layout.peer_namespace])
        for ns in wanted:
            self.kube.create(namespace_manifest(ns, self.settings))
            self.created_namespaces.append(ns)
        self.result.namespaces = list(wanted) + ([opts.in_namespace] if opts.in_namespace
                                                 else [])
        self.log(f"run {self.run_id}: {len(nodes)} node(s) ({', '.join(n.name for n in nodes)}),"
                 f" namespaces {', '.join(self.result.namespaces)}")
        self._wait_service_accounts(wanted)
        servers = layout.servers(canary)
        if opts.in_namespace and not opts.canary_only:
            servers += layout.servers(opts.in_namespace)
            self.result.notes.append(
                f"server probes in {opts.in_namespace} carry the app labels "
                f"{', '.join(f'{k}={v}' for k, v in app_labels.items()) or '(none)'} "
                "(the app-port check needs them) and never become Ready (readiness gate), so "
                "no Service sends them traffic; client probes carry only netiso's labels")
        self.probes = {p.name: p for p in servers}
        self.runner.start(self._server_jobs(servers, layout))
        names = [job_name(self.settings, p) for p in servers]
        running = self.runner.wait_running(names)
        for p in servers:
            self.pods[p.name] = running[job_name(self.settings, p)]
        self.log(f"{len(servers)} server probe(s) running")
        return layout

    def canary(self, layout: Layout) -> bool:
        """The enforcement canary; True when every node enforces."""
        ns = layout.canary_namespace
        clients = layout.clients(ns, "canary-cli")
        probes = {**self.probes, **{c.name: c for c in clients}}
        specs: list[FlowSpec] = []
        for ci, si in layout.pairs():
            server = layout.server(ns, layout.nodes[si])
            specs.append(FlowSpec(f"c{len(specs) + 1}", ENFORCEMENT, clients[ci].name,
                                  Target(layout.other_port, server=server), ""))
        before = self.probe(specs, probes, "before", dict.fromkeys(
            (s.id for s in specs), "allowed"), tries=3)
        policy = {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": CANARY_POLICY, "namespace": ns,
                         "labels": {MANAGED_BY: "netiso"}},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
        self.kube.apply(policy)
        deny_key = f"{ns}/{CANARY_POLICY}"
        # A connection that still succeeds is tried again inside the pod, a second apart, for
        # about CANARY_TRIES seconds: the time an agent may take to program a new policy.
        after = self.probe(specs, probes, "after", dict.fromkeys(
            (s.id for s in specs), "blocked"), tries=CANARY_TRIES)
        flows: list[FlowResult] = []
        # Ingress is enforced where the destination runs: judge each node by the flows into
        # its server, as (before the deny, after the deny) pairs.
        into: dict[str, list[tuple[Outcome, Outcome]]] = {}
        for phase, observed, exp in (
            ("before", before,
             Expectation(Outcome.ALLOWED, (), "no policy in the canary namespace")),
            ("after", after,
             Expectation(Outcome.BLOCKED, (deny_key,), f"{deny_key} denies all ingress")),
        ):
            for s in specs:
                outcome, detail, pod, tries = observed[s.id]
                srv_pod = self.pods[str(s.target.server)]
                src_node = str((pod.get("spec") or {}).get("nodeName"))
                dst_node = str((srv_pod.get("spec") or {}).get("nodeName"))
                fid = s.id if phase == "before" else f"c{len(specs) + int(s.id[1:])}"
                spec = FlowSpec(fid, ENFORCEMENT, s.client, s.target,
                                f"canary {phase} the deny, port {s.target.port}")
                flows.append(FlowResult(spec, _key(pod), src_node, _key(srv_pod), dst_node,
                                        exp, None, outcome, detail, tries))
                if phase == "after":
                    into.setdefault(dst_node, []).append((before[s.id][0], outcome))
        verdicts: list[NodeVerdict] = []
        for node in layout.nodes:
            pairs = into.get(node.name, [])
            if not pairs or any(b is not Outcome.ALLOWED or a is Outcome.ERROR
                                for b, a in pairs):
                verdicts.append(NodeVerdict(node, None, "the canary could not connect before "
                                            "the deny (pod network, or a rule outside "
                                            "NetworkPolicy blocks it), or a probe failed"))
            elif any(a is Outcome.ALLOWED for _b, a in pairs):
                verdicts.append(NodeVerdict(node, False, "connections into this node still "
                                            "succeed after a deny-all ingress policy"))
            else:
                verdicts.append(NodeVerdict(node, True, "a deny-all ingress policy blocks "
                                            "connections into this node"))
        self.result.nodes = verdicts
        check = CheckResult(ENFORCEMENT, ENFORCEMENT_DESCRIPTION, CheckStatus.PASSED, "", flows)
        off = [v.node.name for v in verdicts if v.enforced is False]
        unknown = [v.node.name for v in verdicts if v.enforced is None]
        if off:
            check.status = CheckStatus.FAILED
            check.message = f"not enforced on {', '.join(off)}"
            self.result.likely_cause = likely_cause(
                self.opts.provider, off, len(off) == len(verdicts), self._unready_agents(off))
        elif unknown:
            check.status = CheckStatus.ERROR
            check.message = f"could not tell on {', '.join(unknown)}"
        else:
            check.message = f"enforced on {len(verdicts)} of {len(verdicts)} node(s)"
        self.result.checks.append(check)
        self.kube.delete(NETWORK_POLICY, CANARY_POLICY, ns)
        return not off and not unknown

    def _unready_agents(self, nodes: Sequence[str]) -> dict[str, list[str]]:
        """DaemonSet pods in system namespaces that are not Ready on these nodes."""
        out: dict[str, list[str]] = {}
        for node in nodes:
            names: list[str] = []
            for pod in self.kube.list_objects(POD, None, field_selector=f"spec.nodeName={node}"):
                meta = pod.get("metadata") or {}
                owners = meta.get("ownerReferences") or []
                if not any(o.get("kind") == "DaemonSet" for o in owners):
                    continue
                ready = [c for c in (pod.get("status") or {}).get("conditions") or []
                         if c.get("type") == "Ready"]
                if not ready or ready[0].get("status") != "True":
                    names.append(f"{meta.get('namespace')}/{meta.get('name')}")
            out[node] = names
        return out

    def bundle(self, layout: Layout) -> None:
        opts = self.opts
        values = opts.values
        probed = [layout.namespace, layout.peer_namespace]
        own = [layout.peer_namespace] if opts.in_namespace else probed
        desired = render_bundle(values, own)
        self._apply_all(desired)
        self.log(f"bundle applied to {', '.join(own)} ({len(desired)} policies)")
        dns_pods = [p for p in self.kube.list_pods(values.dns.namespace, ",".join(
            f"{k}={v}" for k, v in values.dns.pod_labels)) if (p.get("status") or {}).get(
            "phase") == "Running"]
        pod_identity = tuple(ip.split("/")[0] for ip in EKS_POD_IDENTITY
                             if ":" not in ip) if values.provider is Provider.EKS else ()
        ctx = Context(layout, tuple(metadata_addresses(values.metadata_deny)), pod_identity,
                      DNS_NAME)
        checks: list[Check] = []
        skipped: list[CheckResult] = []
        for check in BUNDLE_CHECKS:
            why = "skipped with --skip" if check.name in opts.skip else check.applies(ctx)
            if why is None and check.name == "dns" and not dns_pods:
                why = (f"no running pod in {values.dns.namespace} matches the DNS selector "
                       "(set dns in the values)")
            if why:
                skipped.append(CheckResult(check.name, check.description, CheckStatus.SKIPPED,
                                           why))
            else:
                checks.append(check)
        specs = declare(checks, ctx)
        clients = layout.clients(layout.namespace, "cli-a") + \
            layout.clients(layout.peer_namespace, "cli-b")
        probes = {**self.probes, **{c.name: c for c in clients}}
        # The live objects, read just before probing: namespaces, policies, and the pods.
        snapshot = self.kube.list_namespaces()
        policies: list[Mapping[str, Any]] = []
        for ns in {*probed, values.dns.namespace}:
            policies += self.kube.list_network_policies(ns)
        started = time.monotonic()
        wants = self._wants(specs, clients, snapshot, policies, dns_pods)
        observed = self.probe(specs, probes, "bundle", wants, tries=BUNDLE_TRIES)
        self.log(f"{len(specs)} flows probed from {len(clients)} client(s) in "
                 f"{time.monotonic() - started:.1f}s")
        engine_live, engine_intended = self._engines(snapshot, policies, probed, own, dns_pods)
        results = {s.id: self._judge(s, observed[s.id], engine_live, engine_intended, dns_pods)
                   for s in specs}
        for retry in range(1, RETRIES + 1):
            again = [s for s in specs if results[s.id].disagrees]
            if not again:
                break
            self.log(f"{len(again)} flow(s) disagree with the policies "
                     f"({', '.join(s.id for s in again)}): probing again in {opts.settle:.0f}s "
                     "(enforcement lags policy writes)")
            time.sleep(opts.settle)
            redo = self.probe(again, probes, f"bundle-r{retry}", wants, tries=BUNDLE_TRIES)
            # The retried clients are new pods (new IPs): evaluate them on the same objects.
            engine_live, engine_intended = self._engines(snapshot, policies, probed, own,
                                                         dns_pods)
            for s in again:
                r = self._judge(s, redo[s.id], engine_live, engine_intended, dns_pods)
                r.attempts += results[s.id].attempts
                results[s.id] = r
        by_check: dict[str, list[FlowResult]] = {}
        for s in specs:
            by_check.setdefault(s.check, []).append(results[s.id])
        for check in checks:
            self.result.checks.append(check.run(by_check.get(check.name, [])))
        self.result.checks.extend(skipped)

    def _engines(self, namespaces: Sequence[Mapping[str, Any]],
                 policies: Sequence[Mapping[str, Any]], probed: Sequence[str],
                 own: Sequence[str], dns_pods: Sequence[Mapping[str, Any]]
                 ) -> tuple[Engine, Engine]:
        pods = list({_key(p): p for p in [*self.pods.values(), *dns_pods]}.values())
        in_scope = set(probed)

        def netiso_policy(p: Mapping[str, Any]) -> bool:
            meta = p.get("metadata") or {}
            return meta.get("namespace") in in_scope and \
                (meta.get("labels") or {}).get(MANAGED_BY) == "netiso"

        live = Cluster.from_objects([*namespaces, *pods, *policies], "live cluster")
        intended_policies = [p for p in policies if not netiso_policy(p)] + \
            render_bundle(self.opts.values, list(probed))
        intended = Cluster.from_objects([*namespaces, *pods, *intended_policies],
                                        "the values' bundle")
        del own
        return Engine(live), Engine(intended)

    def _destination(self, t: Target, dns_pods: Sequence[Mapping[str, Any]]
                     ) -> tuple[str, str, str | None]:
        """(engine spelling, label for people, node) of a flow's target."""
        if t.server:
            server = self.pods[t.server]
            return _key(server), _key(server), str((server.get("spec") or {}).get("nodeName"))
        if t.dns_name:
            return _key(dns_pods[0]), f"{t.dns_name} (via {_key(dns_pods[0])})", None
        return f"ip:{t.ip}", str(t.ip), None

    def _wants(self, specs: Sequence[FlowSpec], clients: Sequence[Probe],
               namespaces: Sequence[Mapping[str, Any]], policies: Sequence[Mapping[str, Any]],
               dns_pods: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """What each flow should do, from the live objects with the clients as they will be
        created (labels and namespace; no IP yet): the clients retry in place until traffic
        agrees. Only a hint: the verdict is computed again on the real client pods."""
        stand_ins = [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": c.name, "namespace": c.namespace,
                         "labels": {RUN_LABEL: self.run_id, PROBE_LABEL: c.name}},
            "spec": {"nodeName": c.node.name, "containers": [{"name": "probe"}]},
            "status": {"phase": "Pending"},
        } for c in clients]
        servers = [p for name, p in self.pods.items() if name in self.probes]
        try:
            engine = Engine(Cluster.from_objects(
                [*namespaces, *servers, *dns_pods, *stand_ins, *policies], "live cluster"))
        except PolicyInputError:
            return {}
        out: dict[str, str] = {}
        by_name = {c.name: c for c in clients}
        for spec in specs:
            client = by_name[spec.client]
            dst = self._destination(spec.target, dns_pods)[0]
            try:
                verdict = engine.check(f"{client.namespace}/{client.name}", dst,
                                       spec.target.port, spec.target.protocol)
            except PolicyInputError:
                continue
            out[spec.id] = "allowed" if verdict.allowed else "blocked"
        return out

    def _judge(self, spec: FlowSpec,
               observed: tuple[Outcome, str, Mapping[str, Any], int],
               live: Engine, intended: Engine, dns_pods: Sequence[Mapping[str, Any]]
               ) -> FlowResult:
        outcome, detail, pod, tries = observed
        t = spec.target
        src_key = _key(pod)
        src_node = str((pod.get("spec") or {}).get("nodeName"))
        dst, dst_label, dst_node = self._destination(t, dns_pods)
        fr = FlowResult(spec, src_key, src_node, dst_label, dst_node, observed=outcome,
                        detail=detail, attempts=tries)
        try:
            fr.expected = expectation(live.check(src_key, dst, t.port, t.protocol))
            fr.intended = expectation(intended.check(src_key, dst, t.port, t.protocol))
        except PolicyInputError as exc:
            fr.detail = f"{detail}; not evaluated: {exc}"
        return fr

    def cleanup(self) -> None:
        if self.opts.keep:
            self.result.kept = True
            self.log(f"--keep: left {', '.join(self.result.namespaces)} in place (run "
                     f"{self.run_id}); `netiso uninstall` or the next verify after "
                     f"{self.settings.deadline_text} removes them")
            return
        namespaces = [*self.created_namespaces, *([self.opts.in_namespace]
                                                  if self.opts.in_namespace else [])]
        for ns in namespaces:
            self.runner.delete_jobs(ns)
        self.runner.delete_pods_now()
        for ns in self.created_namespaces:
            self.kube.delete(NAMESPACE, ns)
        started = time.monotonic()
        left = self.runner.wait_gone(self.created_namespaces)
        if left:
            self.log(f"cleanup: still being deleted after "
                     f"{time.monotonic() - started:.1f}s: {', '.join(left[:5])}")
        else:
            self.log(f"cleanup: no probe pod left after {time.monotonic() - started:.1f}s; "
                     f"namespace(s) {', '.join(self.created_namespaces)} deleted (the API "
                     "server finishes removing them)")


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def verify(kube: Kube, opts: Options, log: Callable[[str], None] = lambda _m: None) -> Result:
    """Run verify end to end; the result says what was found (the caller maps it to an exit)."""
    run = _Run(kube, opts, log)
    started = time.monotonic()
    try:
        layout = run.setup()
        enforced = True
        if ENFORCEMENT in opts.skip:
            run.result.checks.append(CheckResult(ENFORCEMENT, ENFORCEMENT_DESCRIPTION,
                                                 CheckStatus.SKIPPED, "skipped with --skip"))
        else:
            enforced = run.canary(layout)
            log(f"enforcement: {run.result.enforcement} "
                f"({', '.join(f'{n.node.name}: {n.enforced}' for n in run.result.nodes)})")
        if not enforced:
            log("bundle checks not run: enforcement is not proven on every node")
        elif not opts.canary_only:
            run.bundle(layout)
    finally:
        try:
            run.cleanup()
        finally:
            run.runner.close()
            run.result.seconds = time.monotonic() - started
    return run.result
