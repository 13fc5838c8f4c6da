"""Which network policy AKS may be set to from where a cluster stands: pure, unit-tested.

Design decisions:

* **The cluster's own network profile decides the default.** A cluster on the Cilium dataplane
  can only run Cilium's policy; otherwise the network plugin picks: Azure CNI gets Azure Network
  Policy Manager (``azure``), kubenet gets Calico. Cilium on any other cluster comes only through
  switching the dataplane to Cilium (Azure CNI in overlay mode or with dynamic pod IP allocation,
  no Windows pools), a bigger change the user has to ask for by name (``--network-policy
  cilium``).
* **netiso turns enforcement on; it never swaps one engine for another.** A cluster whose
  profile already names a policy is enforcing: no call. Asking for a different one is refused,
  quoting AKS's rule (azure and calico change into each other only through ``none``, which
  uninstalls the first engine and leaves the cluster unprotected in between: the user's call,
  made with ``az aks update``, not a side effect of ``netiso enable``).
* **Refusals are the rule's own words.** Each refusal is a :class:`Refused` with the rule and
  what to do, raised before any write, so ``enable`` exits 4 and nothing was sent.
* **Dates are facts, not clocks.** The retirement dates are constants said in the warnings; the
  function takes no "today", so it gives the same answer in every test and every year.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = ("azure", "calico", "cilium")

#: The cluster-side engine (netiso.providers.base.EngineSeen.engine) each AKS policy runs.
ENGINE_OF = {"azure": "azure-npm", "calico": "calico", "cilium": "cilium"}

#: Where AKS runs each engine (namespace/name of its DaemonSet).
DAEMONSET_OF = {"azure-npm": "kube-system/azure-npm", "calico": "calico-system/calico-node",
                "cilium": "kube-system/cilium"}

#: Azure Network Policy Manager supports at most this many nodes (AKS's documented limit).
NPM_MAX_NODES = 250

NPM_RETIREMENT = ("Azure Network Policy Manager (networkPolicy azure) is retired on Windows "
                  "nodes since 2026-09-30 and retires on Linux on 2028-09-30; Cilium "
                  "(networkDataplane cilium) is its successor")
NPM_NODE_LIMIT = (f"Azure Network Policy Manager is not supported beyond {NPM_MAX_NODES} nodes")
KUBENET_RETIREMENT = ("kubenet retires on 2028-03-31: plan the move to Azure CNI overlay "
                      "(then Cilium is available)")

RULE_THROUGH_NONE = ("AKS changes the network policy between azure and calico only through "
                     "none (az aks update --network-policy none uninstalls the engine first)")
RULE_CILIUM_DATAPLANE = ("AKS offers cilium only with networkDataplane cilium, which needs Azure "
                         "CNI in overlay mode or with dynamic pod IP allocation, and no Windows "
                         "node pools")
RULE_CILIUM_ONLY = ("on networkDataplane cilium the network policy is cilium (Cilium enforces "
                    "it; azure and calico are not offered)")
RULE_NPM_PLUGIN = "networkPolicy azure (Azure NPM) needs networkPlugin azure (Azure CNI)"
RULE_BYO_CNI = ("networkPlugin none: AKS runs no CNI of its own, so it has no network policy to "
                "turn on (install a NetworkPolicy-enforcing CNI yourself)")
RULE_NO_SWAP = ("netiso enable turns enforcement on and never swaps one engine for another")


class Refused(Exception):
    """A transition AKS (or netiso) does not allow: the rule, and what to do instead."""

    def __init__(self, rule: str, hint: str) -> None:
        super().__init__(rule)
        self.rule = rule
        self.hint = hint


@dataclass(frozen=True)
class Profile:
    """What the transition depends on, read from the managed cluster (camelCase in ARM)."""

    network_plugin: str | None  # azure | kubenet | none
    network_policy: str | None  # none | azure | calico | cilium (None: never set = none)
    network_dataplane: str | None = None  # azure | cilium
    network_plugin_mode: str | None = None  # overlay
    pod_subnets: bool = False  # every pool has podSubnetID: dynamic pod IP allocation
    windows_pools: tuple[str, ...] = ()
    nodes: int = 0

    @property
    def policy(self) -> str:
        return (self.network_policy or "none").lower()


@dataclass(frozen=True)
class Decision:
    """Where to go: ``already`` set means nothing to change; else the profile's new values."""

    policy: str
    already: bool = False
    changes: dict[str, str] = field(default_factory=dict)  # networkProfile keys to set
    warnings: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return ENGINE_OF[self.policy]


def cilium_dataplane_possible(p: Profile) -> bool:
    """Whether AKS would move this cluster to the Cilium dataplane."""
    plugin = (p.network_plugin or "").lower()
    return (plugin == "azure"
            and ((p.network_plugin_mode or "").lower() == "overlay" or p.pod_subnets)
            and not p.windows_pools)


def decide(p: Profile, requested: str | None) -> Decision:
    """The network policy to set (or the one already set), or :class:`Refused`.

    ``requested`` is ``--network-policy`` (azure, calico, cilium) or None for the default.
    """
    if requested is not None and requested not in POLICIES:
        raise ValueError(requested)  # the CLI's choice list keeps this out
    plugin = (p.network_plugin or "").lower()
    dataplane = (p.network_dataplane or "").lower()
    current = p.policy

    if current != "none":
        if current not in POLICIES:
            raise Refused(f"networkPolicy {current!r} is not one netiso knows",
                          "set it with az aks update, then rerun netiso enable")
        if requested in (None, current):
            return Decision(current, already=True)
        if current == "cilium":
            rule = RULE_CILIUM_ONLY
        elif requested == "cilium":
            rule = RULE_CILIUM_DATAPLANE
        else:
            rule = RULE_THROUGH_NONE
        raise Refused(f"networkPolicy is {current}, --network-policy {requested} asked: {rule}; "
                      f"{RULE_NO_SWAP}",
                      f"keep {current} by rerunning without --network-policy, or change it "
                      "yourself with az aks update")

    if plugin == "none":
        raise Refused(RULE_BYO_CNI, "install Calico or Cilium, then rerun netiso enable")

    if dataplane == "cilium":
        if requested not in (None, "cilium"):
            raise Refused(f"--network-policy {requested}: {RULE_CILIUM_ONLY}",
                          "rerun with --network-policy cilium, or without --network-policy")
        return Decision("cilium", changes={"networkPolicy": "cilium"})

    if requested == "cilium":
        if not cilium_dataplane_possible(p):
            why = ("Windows node pools " + ", ".join(p.windows_pools) if p.windows_pools
                   else f"networkPlugin {plugin or 'unset'}"
                   + (f" (mode {p.network_plugin_mode})" if p.network_plugin_mode else "")
                   + " without pod subnets")
            raise Refused(f"--network-policy cilium: {RULE_CILIUM_DATAPLANE}; this cluster has "
                          f"{why}",
                          "choose azure or calico, or rerun without --network-policy for the "
                          "default")
        return Decision("cilium", changes={"networkDataplane": "cilium",
                                           "networkPolicy": "cilium"})

    target = requested or ("azure" if plugin == "azure" else "calico")
    warnings: list[str] = []
    if target == "azure":
        if plugin != "azure":
            raise Refused(f"--network-policy azure on networkPlugin {plugin or 'unset'}: "
                          f"{RULE_NPM_PLUGIN}",
                          "use --network-policy calico (the default for kubenet)")
        if p.nodes > NPM_MAX_NODES:
            raise Refused(f"{NPM_NODE_LIMIT}; this cluster has {p.nodes}",
                          "use --network-policy calico"
                          + (" or cilium" if cilium_dataplane_possible(p) else ""))
        warnings.append(NPM_RETIREMENT)
        if p.windows_pools:
            warnings.append("Windows node pools " + ", ".join(p.windows_pools)
                            + ": Azure NPM there is already retired (unsupported)")
        warnings.append(f"{NPM_NODE_LIMIT} (this cluster has {p.nodes})")
    if plugin == "kubenet":
        warnings.append(KUBENET_RETIREMENT)
    return Decision(target, changes={"networkPolicy": target}, warnings=tuple(warnings))
