"""GKE's enable plan, as pure functions of what the GKE API said (no SDK, no I/O).

Design decisions:

* **The raw JSON is the source of truth.** The SDK's REST transport parses with
  ``ignore_unknown_fields=True``, so an enum value newer than the installed SDK (the API already
  returns ``datapathProvider: MIGRATE_TO_ADVANCED_DATAPATH``, which ``DatapathProvider`` lacks)
  silently reads as ``DATAPATH_PROVIDER_UNSPECIFIED``. :class:`ClusterView` and
  :class:`OperationView` are built from the response body as sent (camelCase keys), so a value
  netiso does not know is reported verbatim and refused, never mistaken for "unset".
* **Order is GKE's rule, not ours to skip.** ``setNetworkPolicy`` before the network policy addon
  is on is refused by GKE ("The network policy addon must be enabled before updating the
  nodes."), so the plan is always addon first, then enforcement; a cluster that already has the
  addon (a half-done earlier run) gets step 1 marked done and resumes at step 2.
* **Only step 2 recreates nodes.** Turning enforcement on recreates every node pool (GKE rolls
  the nodes to add calico-node); the addon alone changes the control plane only. So step 2 alone
  is ``disruptive`` and carries the node pools in ``disruption``.
* **setAddons sends only the network policy addon**, as ``gcloud container clusters update
  --update-addons=NetworkPolicy=ENABLED`` does: the cluster's other addons are not echoed back
  (an echo would carry fields this SDK cannot represent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netiso.errors import PreconditionFailed
from netiso.profiles import Provider
from netiso.providers.base import EnablePlan, Step

ADDON_STEP = "enable-network-policy-addon"
POLICY_STEP = "enable-network-policy"

#: The engine names netiso reports for GKE's dataplanes (``anetd`` is Dataplane V2's DaemonSet).
ENGINE_DPV2 = "anetd"
ENGINE_CALICO = "calico"

#: Operation states GKE reports; DONE and ABORTING end an operation (ABORTING ends in DONE).
TERMINAL = frozenset({"DONE"})
ACTIVE = frozenset({"PENDING", "RUNNING", "ABORTING"})

_OPERATION_NAME = re.compile(r"\boperation-[0-9a-z-]+")


@dataclass(frozen=True)
class ClusterView:
    """What ``projects.locations.clusters.get`` said, read from the raw JSON body."""

    name: str
    location: str
    status: str = ""
    version: str = ""
    #: ``networkConfig.datapathProvider`` verbatim ("" when absent: the legacy datapath).
    datapath: str = ""
    autopilot: bool = False
    #: ``addonsConfig.networkPolicyConfig.disabled`` is false (absent counts as off: GKE always
    #: sends the addon's state, and an absent one has never been turned on).
    addon_enabled: bool = False
    policy_enabled: bool = False
    policy_provider: str = ""
    node_pools: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ClusterView:
        addons = doc.get("addonsConfig") or {}
        npc = addons.get("networkPolicyConfig")
        policy = doc.get("networkPolicy") or {}
        return cls(
            name=str(doc.get("name", "")),
            location=str(doc.get("location", "")),
            status=str(doc.get("status", "")),
            version=str(doc.get("currentMasterVersion", "")),
            datapath=str((doc.get("networkConfig") or {}).get("datapathProvider", "")),
            autopilot=bool((doc.get("autopilot") or {}).get("enabled", False)),
            addon_enabled=npc is not None and not bool(npc.get("disabled", False)),
            policy_enabled=bool(policy.get("enabled", False)),
            policy_provider=str(policy.get("provider", "")),
            node_pools=tuple(str(p.get("name", "")) for p in doc.get("nodePools") or ()),
            raw=doc,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``cloud`` member of ``EnableResult``: what GKE said, verbatim where it matters."""
        return {
            "clusterName": self.name,
            "location": self.location,
            "status": self.status,
            "currentMasterVersion": self.version,
            "datapathProvider": self.datapath or None,
            "autopilot": self.autopilot,
            "networkPolicyAddon": "enabled" if self.addon_enabled else "disabled",
            "networkPolicy": {"enabled": self.policy_enabled,
                              "provider": self.policy_provider or None},
            "nodePools": list(self.node_pools),
        }


@dataclass(frozen=True)
class OperationView:
    """A GKE long-running Operation, read from the raw JSON body."""

    name: str
    operation_type: str = ""
    status: str = ""
    target: str = ""
    #: The operation's error: ``error.message`` (google.rpc.Status), else ``statusMessage``.
    error: str = ""
    error_code: str = ""
    progress: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> OperationView:
        err = doc.get("error") or {}
        message = str(err.get("message") or doc.get("statusMessage") or "")
        code = err.get("code")
        return cls(
            name=str(doc.get("name", "")),
            operation_type=str(doc.get("operationType", "")),
            status=str(doc.get("status", "")),
            target=str(doc.get("targetLink", "")),
            error=message,
            error_code=_RPC_CODES.get(code, str(code)) if code not in (None, 0) else "",
            progress=progress_text(doc.get("progress") or {}),
        )

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def on_cluster(self, cluster: str) -> bool:
        """Whether this operation targets ``cluster`` (or one of its node pools)."""
        return f"/clusters/{cluster}" in self.target and not self.target.split(
            f"/clusters/{cluster}", 1)[1][:1].isalnum()

    def line(self) -> str:
        """One progress line: ``operation-1 (SET_NETWORK_POLICY): RUNNING, NODES_DONE=1 ...``."""
        text = f"operation {self.name} ({self.operation_type or 'unknown type'}): {self.status}"
        return text + (f", {self.progress}" if self.progress else "")


# google.rpc.Code numbers an Operation's error carries, by name (the ones GKE uses).
_RPC_CODES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
              5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
              8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
              13: "INTERNAL", 14: "UNAVAILABLE"}


def progress_text(progress: Mapping[str, Any]) -> str:
    """``OperationProgress`` metrics as ``NAME=value`` pairs (what GKE counts: nodes, pools)."""
    parts: list[str] = []
    for metric in progress.get("metrics") or ():
        value = next((metric[k] for k in ("intValue", "doubleValue", "stringValue")
                      if k in metric), None)
        if value is not None:
            parts.append(f"{metric.get('name', '?')}={value}")
    return " ".join(parts)


def operation_named_in(message: str) -> str | None:
    """The operation a GKE refusal names ("... running incompatible operation operation-123")."""
    m = _OPERATION_NAME.search(message)
    return m.group(0) if m else None


def cluster_path(project: str, location: str, name: str) -> str:
    return f"projects/{project}/locations/{location}/clusters/{name}"


def instance_cluster_name(instance: str, node_pool: str) -> str | None:
    """The cluster name in a GKE node's instance name, ``gke-<cluster>-<pool>-<hash>-<id>``.

    GKE shortens long cluster names in instance names, so this is a candidate the API confirms
    (a ``get`` of it), never an answer on its own.
    """
    m = re.fullmatch(rf"gke-(?P<cluster>[a-z0-9-]+?)-{re.escape(node_pool)}-[0-9a-f]+-[a-z0-9]+",
                     instance)
    return m["cluster"] if m else None


def plan(cluster: ClusterView, path: str, *, engine_ready: bool) -> EnablePlan:
    """The steps that turn GKE network policy enforcement on for ``cluster`` (at ``path``).

    ``engine_ready``: GKE's calico-node DaemonSet is ready on every node it wants. GKE reports
    enforcement on as soon as setNetworkPolicy's operation ends, while it is still recreating
    the node pools; until calico-node runs everywhere the plan has both steps done but is not
    "already", so enable and bootstrap wait for the nodes instead of claiming enforcement.

    Raises PreconditionFailed for a datapath netiso cannot act on (mid-migration, unknown).
    """
    cloud = cluster.to_json()
    if cluster.autopilot:
        return EnablePlan(Provider.GKE, ENGINE_DPV2, already=ENGINE_DPV2, cloud=cloud,
                          warnings=("Autopilot clusters always run Dataplane V2 (anetd), which "
                                    "enforces NetworkPolicy: nothing to turn on",))
    if cluster.datapath == "ADVANCED_DATAPATH":
        return EnablePlan(Provider.GKE, ENGINE_DPV2, already=ENGINE_DPV2, cloud=cloud)
    if cluster.datapath.startswith("MIGRATE"):
        raise PreconditionFailed(
            f"GKE cluster {cluster.name} is migrating its datapath "
            f"(networkConfig.datapathProvider {cluster.datapath})",
            hint="wait for the migration to finish, then rerun: Dataplane V2 enforces "
                 "NetworkPolicy itself",
        )
    if cluster.datapath not in ("", "LEGACY_DATAPATH", "DATAPATH_PROVIDER_UNSPECIFIED"):
        raise PreconditionFailed(
            f"GKE cluster {cluster.name} reports networkConfig.datapathProvider "
            f"{cluster.datapath}, which netiso does not know",
            hint="nothing was sent; check the cluster's datapath in the console",
        )
    addon_body = {"addonsConfig": {"networkPolicyConfig": {"disabled": False}}}
    policy_body = {"networkPolicy": {"provider": "CALICO", "enabled": True}}
    pools = ", ".join(cluster.node_pools) or "none listed"
    steps = (
        Step(ADDON_STEP,
             "setAddons: the network policy addon on (control plane only, no node change)",
             call={"method": "projects.locations.clusters.setAddons", "name": path,
                   "body": addon_body},
             done=cluster.addon_enabled),
        Step(POLICY_STEP,
             "setNetworkPolicy: Calico enforcement on (GKE recreates every node pool's nodes)",
             disruptive=True,
             call={"method": "projects.locations.clusters.setNetworkPolicy", "name": path,
                   "body": policy_body},
             done=cluster.policy_enabled and cluster.addon_enabled),
    )
    if cluster.addon_enabled and cluster.policy_enabled:
        if not engine_ready:
            return EnablePlan(Provider.GKE, ENGINE_CALICO, steps=steps, cloud=cloud, warnings=(
                "GKE reports network policy on, but kube-system/calico-node is not ready on "
                "every node yet (GKE may still be recreating nodes): waiting for it",))
        return EnablePlan(Provider.GKE, ENGINE_CALICO, steps=steps, already=ENGINE_CALICO,
                          cloud=cloud)
    return EnablePlan(Provider.GKE, ENGINE_CALICO, steps=steps, cloud=cloud,
                      disruption=f"node pools {pools}: every node recreated")


def running_on(operations: Sequence[OperationView], cluster: str) -> list[OperationView]:
    """The operations still running on ``cluster`` (GKE runs one at a time per cluster)."""
    return [op for op in operations if op.status in ACTIVE and op.on_cluster(cluster)]
