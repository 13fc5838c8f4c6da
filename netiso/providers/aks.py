"""AKS: cluster-side evidence and identity; the Azure side is issue #12.

Evidence (issue #12): nodes' ``azure:///subscriptions/<sub>/resourceGroups/<nodeRG>/…``
providerID and ``kubernetes.azure.com/*`` labels, the ``azure-npm`` DaemonSet (Azure Network
Policy Manager, an engine) and AKS's own ``azure-cns``/``cloud-node-manager`` DaemonSets, and
as hints the ``*.azmk8s.io`` server URL (privatelink too) and the ``kubelogin`` exec plugin.
AKS kubelets carry no provider suffix, so there is no version evidence.

This module will be the only importer of ``azure.*``, inside the cloud-side calls, so that
``netiso detect`` never loads it.
"""

from __future__ import annotations

import re

from netiso.profiles import Provider
from netiso.providers.base import (
    ClusterFacts,
    ClusterSideOnly,
    EnforcementState,
    Signal,
    Strength,
    engine_signal,
    first_label,
    node_signals,
    state_from,
    workload_signals,
)
from netiso.providers.generic import PROVIDER as GENERIC

_PROVIDER_ID = re.compile(r"azure:///subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/",
                          re.IGNORECASE)
_SERVER = re.compile(r"https://[^/]+\.azmk8s\.io(?::\d+)?/?$")


class Aks(ClusterSideOnly):
    name = Provider.AKS
    issue = "issue #12"

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        out = node_signals(
            facts, Provider.AKS,
            provider_id_prefix="azure://", provider_id_meaning="an Azure VM (AKS)",
            label_prefixes=("kubernetes.azure.com/",),
            version_marker=None, version_meaning="",
        )
        for ds in facts.daemonsets_named("azure-npm", "kube-system"):
            out.append(engine_signal(ds, "azure-npm", "Azure Network Policy Manager enforces "
                                     "NetworkPolicy", Provider.AKS))
        out += workload_signals(facts, Provider.AKS, {
            "azure-cns": "Azure CNI's container networking service",
            "cloud-node-manager": "AKS's cloud node manager",
        })
        ref = facts.ref
        if ref is not None:
            if ref.server and _SERVER.match(ref.server):
                out.append(Signal("kubeconfig server URL", ref.server, "an AKS endpoint",
                                  Strength.HINT, Provider.AKS))
            if (ref.exec_command or "").rsplit("/", 1)[-1] == "kubelogin":
                out.append(Signal("kubeconfig exec plugin", str(ref.exec_command),
                                  "Azure's kubelogin", Strength.HINT, Provider.AKS))
        return out

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        out: dict[str, str] = {}
        m = next((m for n in facts.nodes if (m := _PROVIDER_ID.match(n.provider_id))), None)
        if m is None:
            return out
        out.update(subscription=m["sub"], nodeResourceGroup=m["rg"])
        region = first_label(facts, "topology.kubernetes.io/region")
        if region:
            out["region"] = region
            # AKS's default node resource group is MC_<resourceGroup>_<cluster>_<region>; only
            # read back when that split is unambiguous (a '_' in either name would not be).
            parts = m["rg"].split("_")
            if len(parts) == 4 and parts[0].upper() == "MC" and parts[3].lower() == region:
                out.update(resourceGroup=parts[1], clusterName=parts[2])
        return out

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        return state_from([*GENERIC.evidence(facts), *self.evidence(facts)])


PROVIDER = Aks()
