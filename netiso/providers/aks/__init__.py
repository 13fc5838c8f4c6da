"""AKS: cluster-side evidence and identity, and the network policy set through ARM (#12).

Evidence (issue #12): nodes' ``azure:///subscriptions/<sub>/resourceGroups/<nodeRG>/…``
providerID and ``kubernetes.azure.com/*`` labels, the ``azure-npm`` DaemonSet (Azure Network
Policy Manager, an engine) and AKS's own ``azure-cns``/``cloud-node-manager`` DaemonSets, and
as hints the ``*.azmk8s.io`` server URL (privatelink too) and the ``kubelogin`` exec plugin.
AKS kubelets carry no provider suffix, so there is no version evidence.

Enabling (design decisions):

* **ARM's network profile is the truth for what AKS runs.** ``plan_enable`` reads the managed
  cluster (named by ``--resource-group``/``--cluster-name`` or the default node resource group
  ``MC_<group>_<cluster>_<region>``, else found by listing the subscription and matching the
  kubeconfig server with ``fqdn``/``privateFqdn``) and lets :mod:`.transitions` decide; refusals
  leave before any write (exit 4).
* **One disruptive step.** Setting the network policy reimages every node pool at once, so the
  PUT is a ``disruptive`` step: without ``--yes`` nothing is sent.
* **Stateless between plan and run.** ``enable`` reads the cluster again and sends the PUT with
  the ETag the plan showed: if anything changed since the user saw the plan, ARM answers 412 and
  nothing is applied.
* **Resumable.** A profile that already names the policy while the cluster shows no engine yet
  (a PUT still running, or a run killed mid-wait) is a step already ``done``: the next run only
  waits for the operation and the engine.
* Only :mod:`.cloud` imports ``azure.*``, and only inside the cloud-side calls, so
  ``netiso detect`` loads it only when it asks the cloud (``cloud_view``).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from netiso.errors import OperationFailed, PreconditionFailed, UsageError
from netiso.profiles import Provider
from netiso.providers.aks import transitions
from netiso.providers.base import (
    CloudView,
    ClusterFacts,
    ClusterSideOnly,
    EnableContext,
    EnablePlan,
    EnforcementState,
    EngineSeen,
    Signal,
    Step,
    Strength,
    engine_signal,
    first_label,
    node_signals,
    own_options,
    settings_present,
    workload_signals,
)

if TYPE_CHECKING:
    from netiso.providers.aks.cloud import Arm, ManagedCluster

_PROVIDER_ID = re.compile(r"azure:///subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/",
                          re.IGNORECASE)
_SERVER = re.compile(r"https://[^/]+\.azmk8s\.io(?::\d+)?/?$")
_STEP = "set-network-policy"
_OPTIONS = ("clusterName", "subscription", "resourceGroup", "networkPolicy")


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

    # --- the cloud side ----------------------------------------------------------------------

    def _cluster(self, ctx: EnableContext) -> tuple[Arm, ManagedCluster]:
        from netiso.providers.aks.cloud import Arm

        sub = ctx.identity.get("subscription")
        if not sub:
            raise PreconditionFailed("no Azure subscription: the nodes show none",
                                     hint="pass --subscription")
        arm = Arm(sub)
        rg, name = ctx.identity.get("resourceGroup"), ctx.identity.get("clusterName")
        if rg and name:
            return arm, arm.get(rg, name)
        ref = ctx.facts.ref
        return arm, arm.find(ref.server if ref is not None else None)

    def credentials_at_hand(self) -> bool:
        # DefaultAzureCredential's sources that need no network to be known: a service
        # principal or workload identity in the environment, a managed identity endpoint
        # (App Service's, Azure Arc's; IMDS is not probed), the az CLI's login files.
        return settings_present(
            ("AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"),
            ("$AZURE_CONFIG_DIR/azureProfile.json", "~/.azure/azureProfile.json"))

    def cloud_view(self, ctx: EnableContext) -> CloudView:
        """The managed cluster's GET (or the list), found as ``plan_enable`` finds it."""
        _, cluster = self._cluster(ctx)
        policy = cluster.network.get("networkPolicy")
        setting = {k: cluster.network.get(k) for k in
                   ("networkPlugin", "networkPluginMode", "networkPolicy", "networkDataplane")}
        identity = {"subscription": cluster.subscription, "resourceGroup": cluster.resource_group,
                    "clusterName": cluster.name, "region": cluster.location, "id": cluster.path}
        engine = transitions.ENGINE_OF.get(str(policy)) if policy else None
        return CloudView(Provider.AKS, identity, cluster.kubernetes_version, setting, engine,
                         cluster.provisioning_state)

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        from netiso.providers.aks.cloud import network_call

        own_options(ctx.request, Provider.AKS, _OPTIONS)
        requested = ctx.request.options.get("networkPolicy")
        if requested is not None and requested not in transitions.POLICIES:
            raise UsageError(f"--network-policy: {requested!r} is not one of "
                             f"{', '.join(transitions.POLICIES)}")
        _, cluster = self._cluster(ctx)
        ctx.log(f"managed cluster {cluster.path}: networkPlugin "
                f"{cluster.network.get('networkPlugin')}, networkPolicy "
                f"{cluster.network.get('networkPolicy') or 'none'}, provisioningState "
                f"{cluster.provisioning_state}")
        cloud = cluster.summary()
        running = [e for e in ctx.state.engines if e.ready > 0]
        profile = transitions.Profile(
            network_plugin=cluster.network.get("networkPlugin"),
            network_policy=cluster.network.get("networkPolicy"),
            network_dataplane=cluster.network.get("networkDataplane"),
            network_plugin_mode=cluster.network.get("networkPluginMode"),
            pod_subnets=bool(cluster.pools) and all(p.pod_subnet for p in cluster.pools),
            windows_pools=tuple(p.name for p in cluster.pools if p.os_type.lower() == "windows"),
            nodes=sum(p.count for p in cluster.pools))
        if profile.policy == "none" and running and requested is None:
            # An engine installed outside AKS (a BYO Calico or Cilium) already enforces; setting
            # AKS's own policy on top would run two engines.
            return EnablePlan(Provider.AKS, running[0].engine, already=running[0].engine,
                              cloud=cloud, warnings=(
                                  f"AKS's networkPolicy is none: {running[0].engine} "
                                  f"({running[0].daemonset}) was installed outside AKS",))
        try:
            decision = transitions.decide(profile, requested)
        except transitions.Refused as exc:
            raise PreconditionFailed(exc.rule, hint=exc.hint) from exc
        pools = ", ".join(f"{p.name} ({p.count} {p.os_type} node{'s' if p.count != 1 else ''})"
                          for p in cluster.pools) or "none listed"
        disruption = f"AKS reimages every node pool at once: {pools}"
        failed = (cluster.provisioning_state or "").lower() in ("failed", "canceled")
        if decision.already and failed:
            # An earlier operation (netiso's or anyone's) ended Failed with the policy already in
            # the profile: AKS reconciles on a PUT of the same values, as `az aks update` does.
            decision = transitions.Decision(decision.policy,
                                            changes={"networkPolicy": decision.policy})
        if decision.already:
            engine = decision.engine
            if any(e.engine == engine for e in running):
                return EnablePlan(Provider.AKS, engine, already=engine, cloud=cloud)
            # Set in ARM, not running yet: a PUT still in flight or a run stopped mid-wait.
            step = Step(_STEP, f"networkPolicy is {decision.policy} in ARM (provisioningState "
                        f"{cluster.provisioning_state}); wait for {engine}", disruptive=True,
                        done=True)
            return EnablePlan(Provider.AKS, engine, steps=(step,), disruption=disruption,
                              cloud=cloud)
        sets = ", ".join(f"{k} {v}" for k, v in decision.changes.items())
        again = (f" again (provisioningState {cluster.provisioning_state}: AKS reconciles)"
                 if failed else "")
        step = Step(_STEP, f"set {sets}{again} on managed cluster {cluster.resource_group}/"
                    f"{cluster.name} (PUT with If-Match, then wait for the operation)",
                    disruptive=True,
                    call={**network_call(cluster, decision.changes),
                          "set": dict(decision.changes)})
        return EnablePlan(Provider.AKS, decision.engine, steps=(step,), disruption=disruption,
                          warnings=decision.warnings, cloud=cloud)

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        for step in plan.pending:
            if step.name != _STEP or step.call is None:
                raise OperationFailed(f"unknown AKS step {step.name}")
            arm, cluster = self._cluster(ctx)
            # The ETag the user saw in the plan, not the one just read: a change in between is
            # ARM's 412, never a PUT the user did not see.
            cluster.etag = plan.cloud.get("etag")
            ctx.log(f"{step.name}: {step.description}")
            arm.set_network_profile(cluster, dict(step.call["set"]), ctx.request.timeout,
                                    ctx.log)

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        deadline = time.monotonic() + ctx.request.timeout
        if not plan.pending:  # resumed: the operation may still be running
            arm, cluster = self._cluster(ctx)
            while (cluster.provisioning_state or "").lower() != "succeeded":
                if (cluster.provisioning_state or "").lower() in ("failed", "canceled"):
                    raise OperationFailed(f"managed cluster {cluster.path}: provisioningState "
                                          f"{cluster.provisioning_state}",
                                          hint="see az aks show; fix it, then rerun")
                if time.monotonic() > deadline:
                    raise OperationFailed(f"managed cluster {cluster.path} still "
                                          f"{cluster.provisioning_state} after "
                                          f"{ctx.request.timeout:.0f} s", hint="rerun later")
                ctx.log(f"managed cluster {cluster.path}: provisioningState "
                        f"{cluster.provisioning_state}")
                time.sleep(5)
                cluster = arm.get(cluster.resource_group, cluster.name)
        return self._engine_ready(ctx, plan.engine, deadline)

    def _engine_ready(self, ctx: EnableContext, engine: str, deadline: float) -> EnforcementState:
        """Until the DaemonSet AKS runs for ``engine`` is ready on every node it runs on."""
        from netiso.kube import DAEMONSET

        namespace, name = transitions.DAEMONSET_OF[engine].split("/")
        said = ""
        while True:
            ds = ctx.kube.get(DAEMONSET, name, namespace)
            status = (ds or {}).get("status") or {}
            desired = int(status.get("desiredNumberScheduled") or 0)
            ready = int(status.get("numberReady") or 0)
            line = (f"{namespace}/{name}: ready {ready}/{desired}" if ds is not None
                    else f"{namespace}/{name}: not created yet")
            if line != said:
                ctx.log(line)
                said = line
            if ds is not None and desired > 0 and ready >= desired:
                return EnforcementState(engines=(
                    EngineSeen(engine, f"{namespace}/{name}", desired, ready),))
            if time.monotonic() > deadline:
                raise OperationFailed(
                    f"AKS set the network policy, but {line} after {ctx.request.timeout:.0f} s",
                    hint="AKS may still be reimaging nodes; rerun netiso enable to keep waiting")
            time.sleep(1.0)

PROVIDER = Aks()
