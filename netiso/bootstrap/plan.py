"""``plan``: what ``bootstrap`` would do on this cluster, and what the bundle would cut.

Design decisions:

* **Reads only, then pure.** :func:`read_plan` does the reads (detect's facts, the provider's
  ``plan_enable``, and one LIST each of Namespaces, Pods, NetworkPolicies, Services and
  EndpointSlices); :func:`impact` and :func:`bundle_changes` are pure functions of those
  objects, unit-tested without a cluster. Nothing is written: ``plan_enable`` is read-only by
  the provider contract, and the bundle is compared with the live policies here, not sent as a
  server-side dry run (which needs the ``patch`` verb on every target namespace).
* **A provider that cannot plan yet does not hide the rest.** When ``plan_enable`` raises
  ``NotImplementedYet`` (a cloud side not landed) or ``PreconditionFailed`` (a preflight
  refusal), the plan's ``enable`` section says so, with the message bootstrap would stop with,
  and the apply and impact sections are still computed: they do not depend on the cloud. The
  exit code stays 0, since the plan was computed; ``enable.status`` tells a script that
  bootstrap would stop at that step (``refused``: exit 4; ``not-implemented``: exit 2).
* **Flows "in use" are what the cluster declares, not what it observed.** The API shows no
  traffic, so a flow in use is a pair the cluster advertises: every running pod to each
  endpoint of every Service, on the EndpointSlice's (target) ports, and every running pod to
  each running pod's own declared container ports. A flow is *cut* when the evaluator behind
  ``simulate`` allows it on the live policies and denies it once the bundle replaces netiso's
  current policies; each cut flow names the side (ingress/egress) and the policies that
  isolate it there with no rule admitting it. Egress to addresses outside the cluster is not
  listed: nothing in the API says which are used (the bundle's default-deny egress, when
  enabled, is said in its apply step).
* **Pod-to-itself is never a flow.** The spec always allows it; listing it would be noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netiso.bootstrap.detect import Detection, ProviderChoice, choose_provider, decide, read_facts
from netiso.bundle import render_bundle
from netiso.config import Skipped, Values
from netiso.errors import NotImplementedYet, PreconditionFailed
from netiso.ops.apply import already_applied, prune_candidates
from netiso.ops.ownership import is_managed_labelled
from netiso.ops.targets import choose_targets
from netiso.policy import Cluster, Direction, Engine, Protocol
from netiso.policy.selectors import bit_indices
from netiso.providers import get
from netiso.providers.base import EnableContext, EnablePlan, EnableRequest, Enforcement

if TYPE_CHECKING:
    from netiso.kube import ClusterRef, Kube

Obj = Mapping[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
VIA_CONTAINER_PORT = "containerPort"


# --- the bundle's objects per namespace -----------------------------------------------------


@dataclass(frozen=True)
class NamespaceChanges:
    namespace: str
    objects: tuple[tuple[str, str], ...]  # (name, create|update|unchanged)
    prune: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace,
                "objects": [{"kind": "NetworkPolicy", "name": n, "action": a}
                            for n, a in self.objects],
                "prune": list(self.prune)}


def bundle_changes(desired: Sequence[Obj], targets: Sequence[str], live: Sequence[Obj]
                   ) -> list[NamespaceChanges]:
    """Per target namespace: each rendered object's action against the live policies (the
    test apply uses to skip an object: ``already_applied``) and what prune would delete. Pure.

    "update" means the live object differs from the rendered one as far as the client can tell;
    ``apply --dry-run`` asks the API server itself."""
    target_set = set(targets)
    live_by: dict[tuple[str, str], Obj] = {}
    managed: dict[str, list[Obj]] = {}
    for pol in live:
        meta = pol["metadata"]
        if meta["namespace"] not in target_set:
            continue
        live_by[(meta["namespace"], meta["name"])] = pol
        if is_managed_labelled(pol):
            managed.setdefault(meta["namespace"], []).append(pol)
    out = []
    for ns in sorted(target_set):
        objs = [o for o in desired if o["metadata"]["namespace"] == ns]
        rows = []
        for obj in objs:
            before = live_by.get((ns, obj["metadata"]["name"]))
            action = ("create" if before is None
                      else "unchanged" if already_applied(obj, before) else "update")
            rows.append((str(obj["metadata"]["name"]), action))
        names = {o["metadata"]["name"] for o in objs}
        pruned = tuple(str(p["metadata"]["name"])
                       for p in prune_candidates(managed.get(ns, []), names))
        out.append(NamespaceChanges(ns, tuple(rows), pruned))
    return out


# --- the impact preview ---------------------------------------------------------------------


@dataclass(frozen=True)
class IsolatedPod:
    pod: str
    ingress: tuple[str, ...]  # the policies that newly isolate it for ingress (empty: no change)
    egress: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "ingress": list(self.ingress), "egress": list(self.egress)}


@dataclass(frozen=True)
class CutFlows:
    """Flows to one destination on one port that the bundle cuts, for one reason: the sources
    (pods, and whole namespaces whose every running pod is cut alike), and the policies that
    isolate each side with no rule admitting the flow (empty: that side allows it)."""

    dst: str
    port: int
    protocol: Protocol
    via: tuple[str, ...]  # "service ns/name" and/or "containerPort"
    sources: tuple[str, ...]  # pod keys not covered by ``namespaces``
    namespaces: tuple[str, ...]  # every running pod of each (two or more) is a source
    count: int  # source pods in all
    ingress: tuple[str, ...]
    egress: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"to": self.dst, "port": self.port, "protocol": self.protocol.value,
                "via": list(self.via), "from": list(self.sources),
                "fromNamespaces": list(self.namespaces), "count": self.count,
                "cutBy": {"ingress": list(self.ingress), "egress": list(self.egress)}}


@dataclass(frozen=True)
class Impact:
    isolated: tuple[IsolatedPod, ...] = ()
    cut: tuple[CutFlows, ...] = ()
    flows_in_use: int = 0
    allowed_before: int = 0
    notes: tuple[str, ...] = ()

    @property
    def cut_count(self) -> int:
        return sum(c.count for c in self.cut)

    def to_json(self) -> dict[str, Any]:
        return {
            "isolated": [p.to_json() for p in self.isolated],
            "cut": [c.to_json() for c in self.cut],
            "summary": {"flowsInUse": self.flows_in_use, "allowedBefore": self.allowed_before,
                        "cut": self.cut_count, "isolatedPods": len(self.isolated)},
            "notes": list(self.notes),
        }


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


def flows_in_use(cluster: Cluster, slices: Iterable[Obj]
                 ) -> dict[tuple[int, Protocol], dict[int, set[str]]]:
    """(port, protocol) -> destination pod index -> why it is in use ("service ns/name",
    "containerPort"): each Service endpoint's ports and each running pod's declared ports."""
    out: dict[tuple[int, Protocol], dict[int, set[str]]] = {}

    def add(d: int, port: int, proto: Protocol, why: str) -> None:
        out.setdefault((port, proto), {}).setdefault(d, set()).add(why)

    index = {p.key: i for i, p in enumerate(cluster.pods)}
    for d, pod in enumerate(cluster.pods):
        if pod.finished:
            continue
        for cp in pod.ports:
            add(d, cp.number, cp.protocol, VIA_CONTAINER_PORT)
    for es in slices:
        ns, _ = _key(es)
        labels = (es.get("metadata") or {}).get("labels") or {}
        service = labels.get(SERVICE_NAME_LABEL)
        if not service:
            continue  # a slice no Service owns (hand-made): not a Service's flow
        ports = []
        for p in es.get("ports") or []:
            number = p.get("port")
            if isinstance(number, int) and 0 < number < 65536:
                try:
                    ports.append((number, Protocol(p.get("protocol") or "TCP")))
                except ValueError:
                    continue
        for ep in es.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            if ref.get("kind") != "Pod":
                continue
            found = index.get(f"{ref.get('namespace') or ns}/{ref.get('name')}")
            if found is None or cluster.pods[found].finished:
                continue
            for number, proto in ports:
                add(found, number, proto, f"service {ns}/{service}")
    return out


def after_policies(live: Sequence[Obj], desired: Sequence[Obj],
                   pruned: Iterable[tuple[str, str]]) -> list[Obj]:
    """The NetworkPolicies once the bundle is applied: the live ones, netiso's replaced by the
    rendered bundle and the pruned ones gone."""
    gone = {_key(o) for o in desired} | set(pruned)
    return [p for p in live if _key(p) not in gone] + list(desired)


def impact(namespaces: Sequence[Obj], pods: Sequence[Obj], live: Sequence[Obj],
           desired: Sequence[Obj], slices: Sequence[Obj],
           pruned: Iterable[tuple[str, str]] = ()) -> Impact:
    """Which running pods the bundle newly isolates, and which flows in use it cuts. Pure."""
    objs = [*namespaces, *pods]
    before = Cluster.from_objects([*objs, *live], "live cluster")
    after = Cluster.from_objects([*objs, *after_policies(live, desired, pruned)], "plan")
    # Same pods in the same order: pod i is the same pod in both.
    assert [p.key for p in before.pods] == [p.key for p in after.pods]
    isolated = []
    for i, pod in enumerate(after.pods):
        if pod.finished or pod.host_network:
            continue  # no traffic, or never isolated by NetworkPolicy (the node's namespace)
        sides = []
        for direction in (Direction.INGRESS, Direction.EGRESS):
            had = before.policies_selecting(i, direction)
            has = after.policies_selecting(i, direction)
            sides.append(has if has and not had else ())
        if any(sides):
            isolated.append(IsolatedPod(pod.key, sides[0], sides[1]))

    used = flows_in_use(after, slices)
    live_bits = after.live
    eng_before, eng_after = Engine(before), Engine(after)
    # Sources grouped once by the policies isolating their egress (after the bundle), and
    # namespaces as bitsets of their running pods: a destination's cut sources are then split
    # into a few groups by bit operations, never one evaluation per flow (2,000 pods behind
    # Services are millions of flows).
    egress_of = after.policies_selecting_each(Direction.EGRESS)
    by_egress: dict[tuple[str, ...], int] = {}
    ns_bits: dict[str, int] = {}
    for i, pod in enumerate(after.pods):
        by_egress[egress_of[i]] = by_egress.get(egress_of[i], 0) | 1 << i
        if live_bits >> i & 1:
            ns_bits[pod.namespace] = ns_bits.get(pod.namespace, 0) | 1 << i
    ingress_of = after.policies_selecting_each(Direction.INGRESS)
    total = allowed = 0
    cut: list[CutFlows] = []
    for (port, proto), dsts in sorted(used.items()):
        mb, ma = eng_before.matrix(port, proto), eng_after.matrix(port, proto)
        for d, why in sorted(dsts.items()):
            sources = live_bits & ~(1 << d)
            total += sources.bit_count()
            was = mb.allowed_from[d] & sources
            allowed += was.bit_count()
            lost = was & ~ma.allowed_from[d]
            if not lost:
                continue
            in_denied = lost & ~ma.ingress_from[d]
            out_denied = lost & ~ma.egress_from[d]
            for ingress_side in (True, False):
                side = in_denied if ingress_side else lost & ~in_denied
                ingress = ingress_of[d] if ingress_side else ()
                groups = [(side & ~out_denied, ())] + [
                    (side & out_denied & members, policies)
                    for policies, members in by_egress.items()]
                for bits, egress in groups:
                    if bits:
                        cut.append(_cut_flows(after, d, port, proto, why, bits, ns_bits,
                                              ingress, egress))
    cut.sort(key=lambda c: (c.dst, c.port, c.protocol.value, c.ingress, c.egress))
    return Impact(tuple(isolated), tuple(cut), total, allowed, tuple(before.notes))


def _cut_flows(cluster: Cluster, d: int, port: int, proto: Protocol, why: set[str], bits: int,
               ns_bits: Mapping[str, int], ingress: tuple[str, ...],
               egress: tuple[str, ...]) -> CutFlows:
    """One group of cut sources; a namespace whose running pods (two or more) are all in it is
    named once instead of pod by pod."""
    count = bits.bit_count()
    whole = []
    for name in sorted({cluster.pods[i].namespace for i in bit_indices(bits)}):
        members = ns_bits[name]
        if members & bits == members and members.bit_count() > 1:
            whole.append(name)
            bits &= ~members
    return CutFlows(cluster.pods[d].key, port, proto, tuple(sorted(why)),
                    tuple(sorted(cluster.pods[i].key for i in bit_indices(bits))),
                    tuple(whole), count, ingress, egress)


# --- the whole plan -------------------------------------------------------------------------


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class EnableSection:
    status: str  # already-enforcing | pending | refused | not-implemented
    engine: str | None
    plan: EnablePlan | None = None
    message: str | None = None
    exit_code: int | None = None  # what bootstrap would exit with at this step

    def to_json(self) -> dict[str, Any]:
        p = self.plan
        return {
            "status": self.status,
            "engine": self.engine,
            "message": self.message,
            "exitCode": self.exit_code,
            "steps": [s.to_json() for s in p.steps] if p else [],
            "needsConsent": bool(p and p.needs_consent),
            "disruption": p.disruption if p else None,
            "warnings": list(p.warnings) if p else [],
            "cloud": dict(p.cloud) if p else {},
        }


@dataclass(frozen=True)
class PlanResult:
    server: str
    context: str | None
    choice: ProviderChoice
    detection: Detection
    identity: Mapping[str, str]
    enable: EnableSection
    changes: tuple[NamespaceChanges, ...]
    skipped: tuple[Skipped, ...]
    impact: Impact
    deny_egress: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def steps(self) -> list[dict[str, Any]]:
        """The bootstrap sequence on this cluster, each step with what it would do."""
        en = self.enable
        objects = sum(len(c.objects) for c in self.changes)
        writes = sum(1 for c in self.changes for _, a in c.objects if a != "unchanged")
        pruned = sum(len(c.prune) for c in self.changes)
        pending = [s.name for s in en.plan.pending] if en.plan else []
        blocked = en.status in ("refused", "not-implemented")
        holds = en.status == "already-enforcing"
        enable_state = ("already-done" if holds or (not blocked and not pending)
                        else "blocked" if blocked else "would-run")
        enable_detail = (f"{en.engine} already enforces NetworkPolicy" if holds
                         else "every step already done (an earlier run)" if not pending
                         else f"{len(pending)} step(s): {', '.join(pending)}")
        wait_state, wait_detail = (("already-done", enable_detail) if holds
                                   else ("blocked", "") if blocked
                                   else ("would-run", "until enforcement holds"))
        apply_state = "already-done" if writes == 0 and pruned == 0 else "would-run"
        if blocked:
            enable_detail = wait_detail = "not reached: bootstrap stops at preflight"
        return [
            {"name": "detect", "state": "would-run",
             "detail": f"provider {self.choice.provider.value}"},
            {"name": "preflight", "state": "blocked" if blocked else "would-run",
             "detail": en.message if blocked else "provider reads, no writes"},
            {"name": "enable", "state": enable_state, "detail": enable_detail},
            {"name": "wait", "state": wait_state, "detail": wait_detail},
            {"name": "apply", "state": apply_state,
             "detail": f"{objects} objects in {plural(len(self.changes), 'namespace')}: "
                       f"{writes} to write, {objects - writes} unchanged, {pruned} to prune"},
            {"name": "verify", "state": "would-run",
             "detail": "real traffic: canary and bundle checks (read-only afterwards)"},
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "PlanResult",
            "server": self.server,
            "context": self.context,
            "provider": self.choice.provider.value,
            "detected": self.choice.message,
            "identity": dict(self.identity),
            "steps": self.steps(),
            "enable": self.enable.to_json(),
            "namespaces": [c.to_json() for c in self.changes],
            "skipped": [s.to_json() for s in self.skipped],
            "impact": self.impact.to_json(),
            "notes": list(self.notes),
        }


def plan_enable_section(kube: Kube, ref: ClusterRef | None, requested: Any,
                        request: EnableRequest, *, force: bool,
                        log: Callable[[str], None]) -> tuple[ProviderChoice, Detection,
                                                             dict[str, str], EnableSection]:
    """Detect, then the provider's enable plan (read-only), or why there is none."""
    facts = read_facts(kube, ref)
    detection = decide(facts)
    choice = choose_provider(requested, detection, force=force)
    seam = get(choice.provider)
    identity = {**seam.identity(facts), **{k: v for k, v in request.identity.items() if v}}
    ctx = EnableContext(facts=facts, state=seam.describe(facts), identity=identity,
                        request=request, kube=kube, log=log)
    try:
        plan = seam.plan_enable(ctx)
    except NotImplementedYet as exc:
        return choice, detection, identity, EnableSection(
            "not-implemented", None, None, exc.one_line(), int(exc.exit_code))
    except PreconditionFailed as exc:
        return choice, detection, identity, EnableSection(
            "refused", None, None, exc.one_line(), int(exc.exit_code))
    # As bootstrap decides (netiso.bootstrap.run): the provider's word and a ready engine.
    holds = (plan.already is not None and not plan.pending
             and ctx.state.status is Enforcement.ENFORCING)
    status = "already-enforcing" if holds else "pending"
    return choice, detection, identity, EnableSection(status, plan.engine, plan)


def read_plan(kube: Kube, ref: ClusterRef | None, requested: Any, request: EnableRequest,
              load: Callable[[str], Values], *, force: bool = False,
              log: Callable[[str], None] = lambda _line: None) -> PlanResult:
    """The plan for this cluster: reads only (the default role's list verbs)."""
    from netiso.bundle import bundle_notes
    from netiso.config import PolicyKey
    from netiso.kube.resources import ENDPOINT_SLICE

    choice, detection, identity, section = plan_enable_section(
        kube, ref, requested, request, force=force, log=log)
    log(choice.message)
    values = load(choice.provider.value)
    namespaces = kube.list_namespaces()
    targets, skipped = choose_targets(values, namespaces)
    desired = render_bundle(values, targets)
    live = kube.list_network_policies()
    pods = kube.list_pods()
    slices = kube.list_objects(ENDPOINT_SLICE)
    changes = bundle_changes(desired, targets, live)
    pruned = [(c.namespace, n) for c in changes for n in c.prune]
    preview = impact(namespaces, pods, live, desired, slices, pruned)
    return PlanResult(kube.server, kube.context, choice, detection, identity, section,
                      tuple(changes), tuple(skipped), preview,
                      values.enabled(PolicyKey.DEFAULT_DENY_EGRESS), tuple(bundle_notes(values)))
