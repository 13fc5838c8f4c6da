"""Which provider a cluster runs on, what enforces its policies, and how we know: ``detect``.

Design decisions:

* **One function, one value.** :func:`detect` reads the cluster once through ``netiso.kube``
  (nodes, DaemonSets in every namespace, the server version) plus the kubeconfig's
  :class:`~netiso.kube.ClusterRef`, and returns a :class:`Detection`. Every other part
  (``detect``, ``apply``/``status`` with ``--provider auto``, later ``bootstrap``) asks it; none
  re-derives it. Reading (:func:`read_facts`) and deciding (:func:`decide`) are separate, so the
  rule is unit-tested on plain values.
* **The rule, in full.** Each provider reports signals (``netiso.providers``). Only
  cluster-side signals decide: node providerID and labels, kubelet/server version strings, the
  provider's own DaemonSets. When all of them point to one provider, that is the answer; when
  they point to several ("mixed") or none, the answer is ``generic``, never a guess.
  Kubeconfig hints (server URL, context name, exec plugin) never decide on their own: contexts
  are renamed and servers proxied. They are shown, and a hint that disagrees with the answer is
  said in the reason.
* **A read that fails is evidence missing, not an error.** Without ``list nodes`` (a namespaced
  identity) detection goes on with what it could read and says what it could not; only an
  unreachable server or bad credentials stop it (those stop every command anyway).
* **An explicit provider is checked, not trusted blindly.** :func:`choose_provider` lets an
  explicit ``--provider`` stand when the cluster agrees or says nothing, and refuses (exit 4)
  one that contradicts cluster-side evidence unless forced: an EKS cluster must not get generic
  defaults (its IPv6 metadata endpoint left open) by a slip of the flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netiso.errors import PreconditionFailed, UsageError
from netiso.profiles import PROVIDERS, Provider
from netiso.providers import all_providers, get
from netiso.providers.base import (
    ClusterFacts,
    ContainerFacts,
    DaemonSetFacts,
    EnforcementState,
    EngineSeen,
    NodeFacts,
    Signal,
    Strength,
)

if TYPE_CHECKING:
    from netiso.kube import ClusterRef, Kube

AUTO = "auto"


@dataclass(frozen=True)
class Detection:
    """The answer, its reason and every signal it rests on (strongest first)."""

    provider: Provider
    reason: str
    identity: dict[str, str] = field(default_factory=dict)
    server_version: str | None = None
    kubelet_versions: tuple[str, ...] = ()
    enforcement: EnforcementState = field(default_factory=EnforcementState)
    evidence: tuple[Signal, ...] = ()
    unreadable: tuple[str, ...] = ()
    context: str | None = None
    server: str | None = None

    @property
    def decided_by_cluster(self) -> bool:
        """True when cluster-side evidence named this provider (the answer is not a default)."""
        return self.provider is not Provider.GENERIC

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "Detection",
            "provider": self.provider.value,
            "reason": self.reason,
            "context": self.context,
            "server": self.server,
            "identity": dict(self.identity),
            "kubernetesVersion": {
                "server": self.server_version,
                "kubelets": list(self.kubelet_versions),
            },
            "enforcement": {
                "status": self.enforcement.status.value,
                "engines": [e.to_json() for e in self.enforcement.engines],
            },
            "evidence": [s.to_json() for s in self.evidence],
            "unreadable": list(self.unreadable),
        }


def _names(providers: Sequence[Provider]) -> str:
    return ", ".join(p.value for p in providers)


def decide(facts: ClusterFacts) -> Detection:
    """Pure: the detection the facts support, by the rule in this module's docstring."""
    signals: list[Signal] = []
    for seam in all_providers():
        signals.extend(seam.evidence(facts))
    # Strongest first; within a strength, the registry's order (stable sort).
    signals.sort(key=lambda s: -int(s.strength))
    cluster_side = [s for s in signals if s.points_to is not None and s.strength > Strength.HINT]
    hints = [s for s in signals if s.points_to is not None and s.strength is Strength.HINT]
    named = list(dict.fromkeys(s.points_to for s in cluster_side if s.points_to is not None))
    hinted = list(dict.fromkeys(s.points_to for s in hints if s.points_to is not None))

    if len(named) == 1:
        provider = named[0]
        count = sum(1 for s in cluster_side if s.points_to is provider)
        reason = (f"{count} cluster-side signal{'s' if count != 1 else ''} point to "
                  f"{provider.value}, none elsewhere")
        others = [p for p in hinted if p is not provider]
        if others:
            reason += f"; kubeconfig hints for {_names(others)} ignored"
    elif named:
        provider = Provider.GENERIC
        reason = f"mixed cluster-side evidence ({_names(named)}): not guessing"
    else:
        provider = Provider.GENERIC
        reason = "no cluster-side provider evidence"
        if hinted:
            reason += (f"; kubeconfig hints for {_names(hinted)} are not enough "
                       "(pass --provider to use them)")
    if facts.unreadable:
        reason += f"; could not read {', '.join(u.split(':', 1)[0] for u in facts.unreadable)}"

    chosen = get(provider)
    kubelets = tuple(sorted({n.kubelet_version for n in facts.nodes if n.kubelet_version}))
    ref = facts.ref
    return Detection(
        provider=provider,
        reason=reason,
        identity=chosen.identity(facts),
        server_version=facts.server_version,
        kubelet_versions=kubelets,
        enforcement=chosen.describe(facts) if provider is not Provider.GENERIC
        else _all_engines(facts),
        evidence=tuple(signals),
        unreadable=facts.unreadable,
        context=ref.context if ref else None,
        server=ref.server if ref else None,
    )


def _all_engines(facts: ClusterFacts) -> EnforcementState:
    # On an undecided cluster every provider's engine rules apply (azure-npm says nothing about
    # the provider when the nodes disagree, but it still enforces).
    seen: dict[tuple[str, str], EngineSeen] = {}
    for seam in all_providers():
        for engine in seam.describe(facts).engines:
            seen[(engine.engine, engine.daemonset)] = engine
    return EnforcementState(engines=tuple(seen.values()))


# --- reading the cluster ---------------------------------------------------------------------


def _node(obj: dict[str, Any]) -> NodeFacts:
    meta = obj.get("metadata") or {}
    return NodeFacts(
        name=str(meta.get("name", "")),
        provider_id=str((obj.get("spec") or {}).get("providerID") or ""),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        kubelet_version=str(((obj.get("status") or {}).get("nodeInfo") or {})
                            .get("kubeletVersion") or ""),
    )


def _daemonset(obj: dict[str, Any]) -> DaemonSetFacts:
    meta = obj.get("metadata") or {}
    pod_spec = (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}
    containers = tuple(
        ContainerFacts(
            name=str(c.get("name", "")),
            image=str(c.get("image", "")),
            argv=tuple(str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]),
        )
        for c in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
        if isinstance(c, dict)
    )
    status = obj.get("status") or {}
    return DaemonSetFacts(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        containers=containers,
        desired=int(status.get("desiredNumberScheduled") or 0),
        ready=int(status.get("numberReady") or 0),
    )


def read_facts(kube: Kube, ref: ClusterRef | None) -> ClusterFacts:
    """Nodes, DaemonSets (all namespaces) and the server version, each read once."""
    from netiso.kube import DAEMONSET, NODE, Forbidden, KubeError, Unauthorized

    unreadable: list[str] = []
    nodes: tuple[NodeFacts, ...] = ()
    daemonsets: tuple[DaemonSetFacts, ...] = ()
    server_version: str | None = None

    def missing(what: str, exc: KubeError) -> None:
        if isinstance(exc, Unauthorized) or exc.status == 0:
            raise exc  # bad credentials or no server: every command stops here anyway
        why = "forbidden" if isinstance(exc, Forbidden) else (exc.reason or str(exc.status))
        unreadable.append(f"{what}: {why} ({exc.message})")

    try:
        nodes = tuple(_node(o) for o in kube.list_objects(NODE))
    except KubeError as exc:
        missing("nodes", exc)
    try:
        daemonsets = tuple(_daemonset(o) for o in kube.list_objects(DAEMONSET))
    except KubeError as exc:
        missing("daemonsets", exc)
    try:
        server_version = str(kube.server_version().get("gitVersion") or "") or None
    except KubeError as exc:
        missing("version", exc)
    return ClusterFacts(nodes=nodes, daemonsets=daemonsets, server_version=server_version,
                        ref=ref, unreadable=tuple(unreadable))


def detect(kube: Kube, ref: ClusterRef | None) -> Detection:
    """Read the cluster and decide (the one detection every command uses)."""
    return decide(read_facts(kube, ref))


# --- --provider auto|NAME ----------------------------------------------------------------------


def parse_provider_option(text: str) -> Provider | None:
    """``--provider``'s value: a provider, or None for ``auto``; one clear line otherwise."""
    value = text.strip().lower()
    if value == AUTO:
        return None
    try:
        return Provider(value)
    except ValueError as exc:
        raise UsageError(f"--provider: unknown provider {text!r}; allowed: "
                         f"{', '.join((AUTO, *PROVIDERS))}") from exc


@dataclass(frozen=True)
class ProviderChoice:
    provider: Provider
    message: str  # said on stderr: what is used and why
    overridden: bool = False  # an explicit provider contradicted the evidence (with --force)


def choose_provider(requested: Provider | None, detection: Detection, *,
                    force: bool) -> ProviderChoice:
    """Pure: the provider a command uses given ``--provider`` and the detection.

    ``auto`` takes the detected provider. An explicit provider that contradicts cluster-side
    evidence is refused (PreconditionFailed, exit 4) unless ``force``.
    """
    detected = detection.provider
    if requested is None:
        if detection.decided_by_cluster:
            return ProviderChoice(detected, f"provider {detected.value} ({detection.reason}); "
                                  "pass --provider to override")
        return ProviderChoice(detected, f"provider generic ({detection.reason})")
    if not detection.decided_by_cluster or requested is detected:
        return ProviderChoice(requested, f"provider {requested.value} (--provider)")
    strongest = next(s for s in detection.evidence if s.points_to is detected)
    if not force:
        raise PreconditionFailed(
            f"--provider {requested.value} contradicts the cluster, which looks like "
            f"{detected.value} ({strongest.source}: {strongest.said})",
            hint=f"use --provider {detected.value} or auto, or pass --force to use "
            f"{requested.value} anyway",
        )
    return ProviderChoice(requested, f"provider {requested.value} (--provider, forced over "
                          f"the detected {detected.value}: {strongest.source}: "
                          f"{strongest.said})", overridden=True)


def provider_for(kube: Kube, ref: ClusterRef | None, requested: Provider | None, *,
                 force: bool) -> tuple[ProviderChoice, Detection]:
    """Detect, then choose (``--provider auto|NAME`` of apply, status and render)."""
    found = detect(kube, ref)
    return choose_provider(requested, found, force=force), found
