"""The provider seam: what every provider module offers, and the plain values it exchanges.

Design decisions:

* **Cluster side first, cloud side later.** A provider answers five questions, in the order a
  bootstrap asks them: what the cluster itself says about it (:meth:`CloudProvider.evidence`,
  :meth:`CloudProvider.identity`), what enforces policies now (:meth:`CloudProvider.describe`),
  which steps would turn enforcement on (:meth:`CloudProvider.plan_enable`), doing them
  (:meth:`CloudProvider.enable`) and waiting until they hold (:meth:`CloudProvider.wait`). The
  first three are pure functions of :class:`ClusterFacts` (read once through ``netiso.kube`` by
  ``netiso.bootstrap.detect``), so they are unit-tested without a cluster. The last three talk
  to a cloud API through the provider's own SDK module, imported only inside those calls.
* **The cloud's view for detect is a read of the same calls.** :meth:`CloudProvider.cloud_view`
  reuses the reads :meth:`CloudProvider.plan_enable` makes and returns a :class:`CloudView`;
  :meth:`CloudProvider.credentials_at_hand` says, without the SDK or the network, whether the
  SDK's standard credential settings are present (``detect --cloud auto``'s rule, in
  ``netiso.bootstrap.cloudview``).
* **Signals say what they said.** Every piece of evidence is a :class:`Signal` naming where it
  was read, the value seen, what it means and how strong it is, so ``netiso detect`` can show
  its reasoning and a wrong answer can be argued with.
* **Strength is an order, not a score.** Node facts (providerID, provider labels) beat version
  strings, which beat the provider's own DaemonSets, which beat kubeconfig hints (server URL,
  context name, exec plugin: users rename contexts and front API servers with proxies). The rule
  that turns signals into one answer lives in ``netiso.bootstrap.detect``, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from netiso.errors import NotImplementedYet
from netiso.profiles import Profile, Provider

if TYPE_CHECKING:
    from netiso.kube import ClusterRef, Kube


class Strength(IntEnum):
    """How much a signal says about the provider (higher is stronger)."""

    HINT = 1  # kubeconfig: server URL, context name, exec plugin
    WORKLOAD = 2  # a DaemonSet the provider runs on its clusters
    VERSION = 3  # kubelet or API server version string built by the provider
    NODE = 4  # node spec.providerID, provider node labels

    @property
    def label(self) -> str:
        return self.name.lower()


# --- what the cluster showed (read by netiso.bootstrap.detect) ------------------------------


@dataclass(frozen=True)
class NodeFacts:
    name: str
    provider_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    kubelet_version: str = ""


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    image: str = ""
    #: command and args, in order (flags may be in either).
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class DaemonSetFacts:
    namespace: str
    name: str
    containers: tuple[ContainerFacts, ...] = ()
    desired: int = 0
    ready: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def container(self, name: str) -> ContainerFacts | None:
        return next((c for c in self.containers if c.name == name), None)


@dataclass(frozen=True)
class ClusterFacts:
    """Everything detection reads, as plain values: the input of every pure provider call."""

    nodes: tuple[NodeFacts, ...] = ()
    daemonsets: tuple[DaemonSetFacts, ...] = ()
    server_version: str | None = None
    ref: ClusterRef | None = None
    #: Reads that failed ("nodes: forbidden ..."): their evidence is missing, and said so.
    unreadable: tuple[str, ...] = ()

    def daemonsets_named(self, name: str, namespace: str | None = None) -> list[DaemonSetFacts]:
        return [d for d in self.daemonsets
                if d.name == name and (namespace is None or d.namespace == namespace)]


# --- what the provider made of it -----------------------------------------------------------


@dataclass(frozen=True)
class EngineSeen:
    """A NetworkPolicy engine whose DaemonSet is in the cluster."""

    engine: str  # calico, cilium, anetd, azure-npm, aws-network-policy-agent, kube-router
    daemonset: str  # namespace/name
    desired: int
    ready: int

    def to_json(self) -> dict[str, object]:
        return {"engine": self.engine, "daemonset": self.daemonset, "desired": self.desired,
                "ready": self.ready}


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: where it was read, what it said, what that means."""

    source: str  # "node spec.providerID (2 of 2 nodes)", "daemonset kube-system/aws-node", ...
    said: str  # the value seen, verbatim (one example when several nodes agree)
    meaning: str  # "an EC2 instance", "Calico enforces NetworkPolicy", ...
    strength: Strength
    points_to: Provider | None = None  # None: says nothing about the provider (an engine)
    engine: EngineSeen | None = None  # the policy engine this signal shows running, if any

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "said": self.said,
            "meaning": self.meaning,
            "strength": self.strength.label,
            "provider": self.points_to.value if self.points_to else None,
            "engine": self.engine.engine if self.engine else None,
        }


class Enforcement(StrEnum):
    ENFORCING = "enforcing"  # an engine's DaemonSet has ready pods
    NOT_READY = "not-ready"  # an engine's DaemonSet is there, none of its pods is ready
    NONE_SEEN = "none-seen"  # no known engine DaemonSet (the cloud side may still know better)


@dataclass(frozen=True)
class EnforcementState:
    """What enforces NetworkPolicy, as far as ``source`` can tell."""

    engines: tuple[EngineSeen, ...] = ()
    source: str = "cluster"  # "cluster" (DaemonSets); the cloud API's own is a CloudView

    @property
    def status(self) -> Enforcement:
        if any(e.ready > 0 for e in self.engines):
            return Enforcement.ENFORCING
        return Enforcement.NOT_READY if self.engines else Enforcement.NONE_SEEN


def state_from(signals: Sequence[Signal]) -> EnforcementState:
    """The enforcement state the engine signals show (each engine DaemonSet once)."""
    return EnforcementState(engines=tuple(s.engine for s in signals if s.engine is not None))


def engine_signal(ds: DaemonSetFacts, engine: str, meaning: str,
                  points_to: Provider | None = None, detail: str = "") -> Signal:
    """The signal of an engine's DaemonSet (also provider evidence when ``points_to``)."""
    said = f"ready {ds.ready}/{ds.desired}" + (f", {detail}" if detail else "")
    return Signal(source=f"daemonset {ds.ref}", said=said, meaning=meaning,
                  strength=Strength.WORKLOAD, points_to=points_to,
                  engine=EngineSeen(engine, ds.ref, ds.desired, ds.ready))


def node_signals(facts: ClusterFacts, provider: Provider, *, provider_id_prefix: str,
                 provider_id_meaning: str, label_prefixes: Sequence[str],
                 version_marker: str | None, version_meaning: str) -> list[Signal]:
    """The node and version evidence every cloud shows the same way, one signal per kind."""
    out: list[Signal] = []
    total = len(facts.nodes)

    def count(n: int) -> str:
        return f"{n} of {total} node{'s' if total != 1 else ''}"

    ids = [n.provider_id for n in facts.nodes if n.provider_id.startswith(provider_id_prefix)]
    if ids:
        out.append(Signal(f"node spec.providerID ({count(len(ids))})", ids[0],
                          provider_id_meaning, Strength.NODE, provider))
    labelled = [(n, k) for n in facts.nodes for k in sorted(n.labels)
                if any(k.startswith(p) for p in label_prefixes)]
    if labelled:
        nodes = {n.name for n, _ in labelled}
        node, key = labelled[0]
        out.append(Signal(f"node labels ({count(len(nodes))})", f"{key}={node.labels[key]}",
                          f"a node label {provider.value.upper()} sets", Strength.NODE, provider))
    if version_marker:
        kubelets = [n.kubelet_version for n in facts.nodes if version_marker in n.kubelet_version]
        if kubelets:
            out.append(Signal(f"node kubeletVersion ({count(len(kubelets))})", kubelets[0],
                              f"a kubelet {version_meaning}", Strength.VERSION, provider))
        if facts.server_version and version_marker in facts.server_version:
            out.append(Signal("server version", facts.server_version,
                              f"an API server {version_meaning}", Strength.VERSION, provider))
    return out


def workload_signals(facts: ClusterFacts, provider: Provider,
                     daemonsets: Mapping[str, str]) -> list[Signal]:
    """kube-system DaemonSets only this provider runs (name -> what it is)."""
    out: list[Signal] = []
    for name, meaning in daemonsets.items():
        for ds in facts.daemonsets_named(name, "kube-system"):
            out.append(Signal(f"daemonset {ds.ref}", f"ready {ds.ready}/{ds.desired}", meaning,
                              Strength.WORKLOAD, provider))
    return out


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``--flag value`` or ``--flag=value`` in an argv, if present."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def first_label(facts: ClusterFacts, key: str) -> str | None:
    return next((n.labels[key] for n in facts.nodes if n.labels.get(key)), None)


def settings_present(variables: Sequence[str], paths: Sequence[str] = ()) -> bool:
    """Whether any of the environment ``variables`` is set, or any file in ``paths`` exists
    (``~`` expanded; ``$VAR/...`` expanded, skipped when VAR is unset). No SDK, no network."""
    import os
    from pathlib import Path

    if any(os.environ.get(v) for v in variables):
        return True
    for path in paths:
        text = os.path.expandvars(path)
        if "$" in text:
            continue
        if Path(text).expanduser().is_file():
            return True
    return False


# --- enabling enforcement (the cloud side) ---------------------------------------------------


@dataclass(frozen=True)
class EnableRequest:
    """What the user asked ``enable`` for (flags), as plain values.

    ``identity`` holds the identity flags (camelCase keys as :meth:`CloudProvider.identity`:
    clusterName, region, profile, project, location, subscription, resourceGroup), which win over
    what the cluster shows. ``options`` holds each provider's own flags by name
    (``calicoManifests``, ``calicoApiserver``, ``upgrade``, ``networkPolicy``, ...); a provider
    refuses (UsageError) an option that is not its own rather than ignoring it.
    """

    engine: str | None = None
    identity: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    consent: bool = False  # --yes: node-recreating steps are allowed
    timeout: float = 1800.0


@dataclass(frozen=True)
class EnableContext:
    """Everything a provider's cloud side gets: the cluster as read, the request, a way to say
    progress (one line each, stderr) and the cluster's client for in-cluster steps."""

    facts: ClusterFacts
    state: EnforcementState  # what the cluster shows enforcing now
    identity: Mapping[str, str]  # the provider's derived identity, the flags' values over it
    request: EnableRequest
    kube: Kube
    log: Callable[[str], None] = lambda _line: None


@dataclass(frozen=True)
class Step:
    """One step of an enable plan, said before it runs (and shown by ``--dry-run``).

    ``call`` is the request as the cloud or the cluster will see it (an SDK call's name and its
    arguments, or the objects to apply), so a dry run shows exactly what would be sent.
    ``done`` marks a step whose effect already holds (a half-done earlier run): it is shown and
    skipped, never redone. ``writes`` is False for a step that only reads (a wait), so a run
    that finishes an earlier one's wait does not report a change.
    """

    name: str
    description: str
    disruptive: bool = False  # recreates or reimages nodes: needs consent
    call: Mapping[str, Any] | None = None
    done: bool = False
    writes: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "disruptive": self.disruptive, "done": self.done, "writes": self.writes,
                "call": dict(self.call) if self.call is not None else None}


@dataclass(frozen=True)
class EnablePlan:
    """What enable would do on this cluster, from the cluster's and the cloud's own state.

    ``already`` names the engine when enforcement already holds (no step runs); ``disruption``
    says which nodes a disruptive step recreates ("node pools default-pool, spot: recreated").
    ``cloud`` is what the cloud API said (cluster version, the enforcement setting there), shown
    as is in the result.
    """

    provider: Provider
    engine: str
    steps: tuple[Step, ...] = ()
    already: str | None = None
    disruption: str | None = None
    warnings: tuple[str, ...] = ()
    cloud: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not s.done)

    @property
    def needs_consent(self) -> bool:
        return any(s.disruptive for s in self.pending)


@dataclass(frozen=True)
class CloudView:
    """What the cloud's API says about the cluster (read-only, for ``netiso detect``).

    ``identity`` names the cluster as the cloud does (camelCase keys as
    :meth:`CloudProvider.identity`, plus ``id``: the ARN, the GKE path, the ARM resource id);
    ``setting`` is the enforcement setting in the cloud's own field names and values (EKS: the
    vpc-cni add-on's ``enableNetworkPolicy`` and Auto Mode; GKE: the addon, ``networkPolicy`` and
    ``datapathProvider``; AKS: ``networkProfile``'s policy and dataplane); ``engine`` is the engine
    that setting makes the cloud run (None: the cloud runs none); ``state`` is the cloud's own
    word on the cluster (ACTIVE, RUNNING, Succeeded, ...), where an operation in flight shows.
    """

    provider: Provider
    identity: Mapping[str, str]
    version: str | None
    setting: Mapping[str, Any]
    engine: str | None
    state: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"identity": dict(self.identity), "kubernetesVersion": self.version,
                "state": self.state, "setting": dict(self.setting), "engine": self.engine}


class CloudProvider(Protocol):
    """What each provider module offers (``netiso.providers.get(name)`` returns one)."""

    name: Provider
    #: Where the cloud side is tracked until it lands (named by NotImplementedYet).
    issue: str

    @property
    def profile(self) -> Profile: ...

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        """Pure: what the cluster says for (or, with engines, about) this provider."""
        ...

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        """Pure: the cloud identity derivable from the cluster and kubeconfig (camelCase keys:
        clusterName, region, zone, project, location, account, subscription, resourceGroup,
        nodeResourceGroup); only what is derivable, nothing guessed."""
        ...

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        """Pure: what enforces NetworkPolicy, as the cluster shows it."""
        ...

    def credentials_at_hand(self) -> bool:
        """Whether the standard credential settings of this provider's SDK are present (the
        environment or the SDK's own files; no network, no SDK import): ``detect --cloud auto``
        asks the cloud only then."""
        ...

    def cloud_view(self, ctx: EnableContext) -> CloudView | None:
        """What the cloud's API says about this cluster: reads only, the same ones
        :meth:`plan_enable` makes. None for a provider without a cloud API (generic)."""
        ...

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        """The steps that would turn enforcement on: cloud and cluster reads only, no writes.

        Preflight refusals (a conflicting engine, an unsupported cluster) raise
        PreconditionFailed here, before anything changed. Enforcement that already holds is a
        plan with ``already`` set and no pending step.
        """
        ...

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        """Run the plan's pending steps in order (progress through ``ctx.log``)."""
        ...

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        """Until the plan's effect holds (``ctx.request.timeout``); the state it reached."""
        ...


class ClusterSideOnly:
    """The part every provider shares until its cloud side lands: enable/plan/wait refuse."""

    name: Provider
    issue: str

    @property
    def profile(self) -> Profile:
        from netiso.profiles import profile

        return profile(self.name)

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        raise NotImplementedError

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        """The engines any cluster may run (Calico, Cilium, kube-router: generic's evidence)
        beside this provider's own (its managed engine's DaemonSet)."""
        from netiso.providers.generic import PROVIDER as GENERIC

        return state_from([*GENERIC.evidence(facts), *self.evidence(facts)])

    def _not_yet(self, what: str) -> NotImplementedYet:
        return NotImplementedYet(f"{what} --provider {self.name.value} ({self.issue})")

    def credentials_at_hand(self) -> bool:
        return False

    def cloud_view(self, ctx: EnableContext) -> CloudView | None:
        return None

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        raise self._not_yet("enable")

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        raise self._not_yet("enable")

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        raise self._not_yet("enable")



#: The CLI spelling of each EnableRequest identity and option key (for one-line refusals).
FLAG_OF: Mapping[str, str] = {
    "clusterName": "--cluster-name", "region": "--region", "profile": "--profile",
    "project": "--project", "location": "--location", "subscription": "--subscription",
    "resourceGroup": "--resource-group", "calicoManifests": "--calico-manifests",
    "calicoApiserver": "--calico-apiserver", "upgrade": "--upgrade",
    "networkPolicy": "--network-policy", "engine": "--engine",
}


def own_options(request: EnableRequest, provider: Provider, allowed: Sequence[str]) -> None:
    """Refuse (exit 2) an option or identity flag meant for another provider: a flag the user
    typed is never silently ignored. ``allowed`` lists keys of :data:`FLAG_OF`."""
    from netiso.errors import UsageError

    given = [*request.identity, *request.options, *(["engine"] if request.engine else [])]
    for key in given:
        if key not in allowed:
            raise UsageError(f"{FLAG_OF.get(key, key)} does not apply to --provider "
                             f"{provider.value}")
