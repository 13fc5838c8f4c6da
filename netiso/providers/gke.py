"""GKE: cluster-side evidence and identity; the Google Cloud side is issue #11.

Evidence (issue #11): nodes' ``gce://<project>/<zone>/<instance>`` providerID and
``cloud.google.com/gke-*`` labels, kubelet and API server versions containing ``-gke.``,
``kube-system/anetd`` (Dataplane V2, which enforces NetworkPolicy itself) and
``gke-metadata-server`` DaemonSets, and as hints a ``gke_<project>_<location>_<name>`` context,
the ``gke-gcloud-auth-plugin`` exec plugin and a ``*.gke.goog`` DNS endpoint. Legacy GKE network
policy is Calico (``calico-node`` in kube-system), reported by the generic engine rules.

This module will be the only importer of ``google.cloud.container``, inside the cloud-side
calls, so that ``netiso detect`` never loads it.
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

# gke_<project>_<location>_<cluster>: project ids and locations have no '_', names may not.
_CONTEXT = re.compile(r"gke_(?P<project>[a-z][-a-z0-9.:]*)_(?P<location>[a-z0-9-]+)_"
                      r"(?P<name>[a-z0-9][-a-z0-9_]*)")
_PROVIDER_ID = re.compile(r"gce://(?P<project>[^/]+)/(?P<zone>[^/]+)/")
_SERVER = re.compile(r"https://[^/]+\.gke\.goog(?::\d+)?/?$")


class Gke(ClusterSideOnly):
    name = Provider.GKE
    issue = "issue #11"

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        out = node_signals(
            facts, Provider.GKE,
            provider_id_prefix="gce://", provider_id_meaning="a Compute Engine instance (GKE)",
            label_prefixes=("cloud.google.com/gke-",),
            version_marker="-gke.", version_meaning="built by GKE",
        )
        for ds in facts.daemonsets_named("anetd", "kube-system"):
            out.append(engine_signal(ds, "anetd", "GKE Dataplane V2 (anetd) enforces "
                                     "NetworkPolicy", Provider.GKE))
        out += workload_signals(facts, Provider.GKE, {
            "gke-metadata-server": "GKE's metadata server (Workload Identity)",
        })
        ref = facts.ref
        if ref is not None:
            if ref.server and _SERVER.match(ref.server):
                out.append(Signal("kubeconfig server URL", ref.server, "a GKE DNS endpoint",
                                  Strength.HINT, Provider.GKE))
            if ref.context and _CONTEXT.fullmatch(ref.context):
                out.append(Signal("kubeconfig context", ref.context, "a gcloud GKE context name",
                                  Strength.HINT, Provider.GKE))
            command = (ref.exec_command or "").rsplit("/", 1)[-1]
            if command == "gke-gcloud-auth-plugin":
                out.append(Signal("kubeconfig exec plugin", str(ref.exec_command),
                                  "GKE's auth plugin", Strength.HINT, Provider.GKE))
        return out

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        out: dict[str, str] = {}
        ref = facts.ref
        if ref is not None and ref.context and (m := _CONTEXT.fullmatch(ref.context)):
            out.update(project=m["project"], location=m["location"], clusterName=m["name"])
        # The nodes are the cluster itself: their project wins over kubeconfig text. A node's
        # zone is not the cluster's location (a regional cluster spans zones): kept apart.
        m = next((m for n in facts.nodes if (m := _PROVIDER_ID.match(n.provider_id))), None)
        if m:
            out.update(project=m["project"], zone=m["zone"])
        region = first_label(facts, "topology.kubernetes.io/region")
        if region:
            out["region"] = region
        return out

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        return state_from([*GENERIC.evidence(facts), *self.evidence(facts)])


PROVIDER = Gke()
