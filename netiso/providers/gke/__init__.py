"""GKE: cluster-side evidence and identity, and turning GKE network policy enforcement on.

Evidence (issue #11): nodes' ``gce://<project>/<zone>/<instance>`` providerID and
``cloud.google.com/gke-*`` labels, kubelet and API server versions containing ``-gke.``,
``kube-system/anetd`` (Dataplane V2, which enforces NetworkPolicy itself) and
``gke-metadata-server`` DaemonSets, and as hints a ``gke_<project>_<location>_<name>`` context,
the ``gke-gcloud-auth-plugin`` exec plugin and a ``*.gke.goog`` DNS endpoint. Legacy GKE network
policy is Calico (``calico-node`` in kube-system), reported by the generic engine rules.

Enable (issue #11): ``plan.py`` decides from what the GKE API said (pure), ``cloud.py`` is the
only importer of the Google Cloud SDK and is imported inside :meth:`Gke.cloud` only (for
``plan_enable`` and ``cloud_view``), so ``--help`` and a ``netiso detect`` that does not ask the
cloud never load ``google.cloud``. The cluster is found by its project
(nodes' providerID), its name (flag, gcloud context, else the nodes' instance names, confirmed by
the API) and its location (flag or context, else the one location where GKE has a cluster of
that name). After the cloud operations, :meth:`Gke.wait` waits for GKE's managed
``kube-system/calico-node`` DaemonSet to be ready on every node it schedules to.
"""

from __future__ import annotations

import functools
import re
import time
from typing import TYPE_CHECKING

from netiso.errors import OperationFailed, PreconditionFailed
from netiso.profiles import Provider
from netiso.providers.base import (
    CloudView,
    ClusterFacts,
    ClusterSideOnly,
    EnableContext,
    EnablePlan,
    EnforcementState,
    EngineSeen,
    Signal,
    Strength,
    engine_signal,
    first_label,
    node_signals,
    own_options,
    settings_present,
    workload_signals,
)
from netiso.providers.gke import plan as gke_plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from netiso.providers.gke.cloud import GkeCloud

# gke_<project>_<location>_<cluster>: project ids and locations have no '_', names may not.
_CONTEXT = re.compile(r"gke_(?P<project>[a-z][-a-z0-9.:]*)_(?P<location>[a-z0-9-]+)_"
                      r"(?P<name>[a-z0-9][-a-z0-9_]*)")
_PROVIDER_ID = re.compile(r"gce://(?P<project>[^/]+)/(?P<zone>[^/]+)/(?P<instance>[^/]+)")
_SERVER = re.compile(r"https://[^/]+\.gke\.goog(?::\d+)?/?$")


class Gke(ClusterSideOnly):
    name = Provider.GKE
    issue = "issue #11"

    def __init__(self, cloud: Callable[[], GkeCloud] | None = None) -> None:
        # In-process tests hand in a client on the test server with anonymous credentials; the
        # CLI builds one with Application Default Credentials on first use.
        self._make_cloud = cloud
        self._cloud: GkeCloud | None = None

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

    # --- the cloud side ----------------------------------------------------------------------

    def cloud(self) -> GkeCloud:
        if self._cloud is None:
            if self._make_cloud is not None:
                self._cloud = self._make_cloud()
            else:
                from netiso.providers.gke.cloud import GkeCloud

                self._cloud = GkeCloud()
        return self._cloud

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        own_options(ctx.request, Provider.GKE, ("clusterName", "project", "location"))
        project = ctx.identity.get("project")
        if not project:
            raise PreconditionFailed("the GKE project is not derivable from this cluster",
                                     hint="pass --project")
        view = self._find_cluster(ctx, project)
        path = gke_plan.cluster_path(project, view.location, view.name)
        ctx.log(f"GKE cluster {path}: datapath {view.datapath or 'legacy'}, network policy "
                f"addon {'on' if view.addon_enabled else 'off'}, enforcement "
                f"{'on' if view.policy_enabled else 'off'}")
        ready = any(e.engine == gke_plan.ENGINE_CALICO and e.daemonset == "kube-system/calico-node"
                    and e.ready >= e.desired > 0 for e in ctx.state.engines)
        return gke_plan.plan(view, path, engine_ready=ready)

    def credentials_at_hand(self) -> bool:
        # Application Default Credentials without the metadata server (probing it offline is
        # slow): the key file variable, or gcloud's ADC file.
        return settings_present(
            ("GOOGLE_APPLICATION_CREDENTIALS",),
            ("$CLOUDSDK_CONFIG/application_default_credentials.json",
             "~/.config/gcloud/application_default_credentials.json"))

    def cloud_view(self, ctx: EnableContext) -> CloudView:
        """clusters.get (or list), found as ``plan_enable`` finds it."""
        project = ctx.identity.get("project")
        if not project:
            raise PreconditionFailed("the GKE project is not derivable from this cluster",
                                     hint="pass --project")
        view = self._find_cluster(ctx, project)
        if view.datapath == "ADVANCED_DATAPATH":
            engine: str | None = gke_plan.ENGINE_DPV2
        elif view.addon_enabled and view.policy_enabled:
            engine = gke_plan.ENGINE_CALICO
        else:
            engine = None
        identity = {"project": project, "location": view.location, "clusterName": view.name,
                    "id": gke_plan.cluster_path(project, view.location, view.name)}
        setting = {"networkPolicyAddon": "enabled" if view.addon_enabled else "disabled",
                   "networkPolicy": {"enabled": view.policy_enabled,
                                     "provider": view.policy_provider or None},
                   "datapathProvider": view.datapath or None}
        return CloudView(Provider.GKE, identity, view.version or None, setting, engine,
                         view.status or None)

    def _find_cluster(self, ctx: EnableContext, project: str) -> gke_plan.ClusterView:
        cloud = self.cloud()
        name = ctx.identity.get("clusterName")
        if not name:
            name = _name_from_instances(ctx.facts)
        if not name:
            raise PreconditionFailed("the GKE cluster's name is not derivable from this cluster",
                                     hint="pass --cluster-name")
        location = ctx.identity.get("location")
        if location:
            view = cloud.get_cluster(gke_plan.cluster_path(project, location, name))
            if view is None:
                raise PreconditionFailed(
                    f"GKE has no cluster {name} in project {project}, location {location}",
                    hint="check --project, --location and --cluster-name")
            return view
        found = [c for c in cloud.list_clusters(project) if c.name == name]
        near = {ctx.identity.get("zone"), ctx.identity.get("region")} - {None}
        if len(found) > 1:
            found = [c for c in found if c.location in near] or found
        if not found:
            raise PreconditionFailed(f"GKE has no cluster named {name} in project {project}",
                                     hint="pass --cluster-name (and --location)")
        if len(found) > 1:
            where = ", ".join(sorted(c.location for c in found))
            raise PreconditionFailed(f"GKE has clusters named {name} in {where}",
                                     hint="pass --location")
        return found[0]

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        cloud = self.cloud()
        for step in plan.pending:
            path = str((step.call or {})["name"])
            _, project, _, location, _, cluster = path.split("/")
            ctx.log(f"{step.name}: {step.description}")
            deadline = time.monotonic() + ctx.request.timeout
            # An operation still running (an earlier, interrupted run's own, say) is waited for
            # first; if it did this step's work, the step is not sent again.
            cloud.wait_idle(project, location, cluster, deadline=deadline, log=ctx.log)
            now = cloud.get_cluster(path)
            if now is not None and _holds(step.name, now):
                ctx.log(f"{step.name}: already in effect (an earlier operation did it)")
                continue
            call = (cloud.set_network_policy_addon if step.name == gke_plan.ADDON_STEP
                    else cloud.set_network_policy)
            cloud.mutate(project, location, cluster, functools.partial(call, path),
                         deadline=deadline, log=ctx.log)

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        """Until GKE's calico-node DaemonSet is ready on every node it runs on."""
        from netiso.kube import DAEMONSET

        deadline = time.monotonic() + ctx.request.timeout
        said = ""
        while True:
            ds = ctx.kube.get(DAEMONSET, "calico-node", "kube-system")
            status = (ds or {}).get("status") or {}
            desired = int(status.get("desiredNumberScheduled") or 0)
            ready = int(status.get("numberReady") or 0)
            line = (f"kube-system/calico-node: ready {ready}/{desired}" if ds is not None
                    else "kube-system/calico-node: not created yet")
            if line != said:
                ctx.log(line)
                said = line
            if ds is not None and desired > 0 and ready >= desired:
                return EnforcementState(engines=(
                    EngineSeen("calico", "kube-system/calico-node", desired, ready),))
            if time.monotonic() > deadline:
                raise OperationFailed(f"GKE network policy is on, but {line} after "
                                      f"{ctx.request.timeout:.0f} s",
                                      hint="GKE may still be recreating nodes; rerun with a "
                                           "longer --timeout")
            time.sleep(1.0)


def _holds(step: str, cluster: gke_plan.ClusterView) -> bool:
    if step == gke_plan.ADDON_STEP:
        return cluster.addon_enabled
    return cluster.addon_enabled and cluster.policy_enabled


def _name_from_instances(facts: ClusterFacts) -> str | None:
    """The cluster name the nodes' instance names carry (see plan.instance_cluster_name)."""
    for node in facts.nodes:
        m = _PROVIDER_ID.match(node.provider_id)
        pool = node.labels.get("cloud.google.com/gke-nodepool")
        if m and pool and (name := gke_plan.instance_cluster_name(m["instance"], pool)):
            return name
    return None


PROVIDER = Gke()
