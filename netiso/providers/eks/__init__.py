"""EKS: cluster-side evidence and identity, and enable: Calico policy-only (the default) or the
VPC CNI's own network policy agent (``--engine vpc-cni``).

Evidence (issue #10): nodes' ``aws:///<az>/i-…`` providerID and ``eks.amazonaws.com/*`` labels,
kubelet and API server versions containing ``-eks-``, the VPC CNI's ``kube-system/aws-node``
DaemonSet (its ``aws-eks-nodeagent`` container with ``--enable-network-policy=true`` is the VPC
CNI's own policy engine), and as hints the ``*.eks.amazonaws.com`` server URL, an EKS ARN or
eksctl context name and the ``aws eks get-token`` exec plugin. An ``aws://`` providerID alone
means EC2, where the same metadata facts (IMDS on IPv6, Pod Identity) hold, which is what the
EKS profile is about.

The cloud side lives in ``eks/cloud.py`` (the only boto3 importer) and Calico's install in
``eks/calico.py``; both are imported inside ``plan_enable``/``enable``/``wait`` so that
``netiso detect`` loads boto3 only when it asks the cloud (``cloud_view``, ``--cloud``).

Enable's decisions (issue #10):

* **Preflight from both views.** Auto Mode (``computeConfig.enabled``, or nodes labelled
  ``eks.amazonaws.com/compute-type=auto``), a Fargate-only cluster and Windows-only nodes are
  refused (exit 4) before anything is sent. The cloud's view needs the cluster's name: for
  Calico, which is installed through the cluster alone, a name that cannot be derived (nor given
  with ``--cluster-name``) only skips the AWS reads, with a warning; ``--engine vpc-cni`` changes
  the add-on through the EKS API and refuses without it.
* **Engines already there decide.** With no ``--engine``, any engine already enforcing is
  reported and nothing is installed. Asking for an engine that conflicts with the one running
  (Calico beside the VPC CNI's agent, either way round) is refused: both would program the same
  pods' traffic.
* **The add-on's own values are kept.** ``--engine vpc-cni`` merges ``enableNetworkPolicy:
  "true"`` into the add-on's existing ``configurationValues`` and updates it with
  ``resolveConflicts=PRESERVE``, then polls ``DescribeUpdate`` and waits for aws-node's rollout.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from netiso.errors import OperationFailed, PreconditionFailed, UsageError
from netiso.profiles import Provider
from netiso.providers.base import (
    CloudView as ApiView,
)
from netiso.providers.base import (
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
    flag_value,
    node_signals,
    own_options,
    settings_present,
    workload_signals,
)

if TYPE_CHECKING:
    from netiso.kube import Kube
    from netiso.providers.eks.calico import Manifests
    from netiso.providers.eks.cloud import AddonInfo, ClusterInfo, NodegroupInfo

# arn:aws:eks:us-west-2:123456789012:cluster/prod (also the aws-cn and aws-us-gov partitions)
_ARN = re.compile(r"arn:aws[-a-z]*:eks:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                  r"cluster/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)")
# eksctl writes contexts as <user>@<cluster>.<region>.eksctl.io
_EKSCTL = re.compile(r"(?:.*@)?(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<region>[a-z0-9-]+)"
                     r"\.eksctl\.io")
# https://<hash>.<gr7|yl4|...>.<region>.eks.amazonaws.com
_SERVER = re.compile(r"https://[^/]*?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
                     r"\.eks\.amazonaws\.com(?:\.cn)?(?::\d+)?/?$")
# aws:///us-west-2a/i-0abc... (zone, then instance); the region is the zone minus its letter.
_PROVIDER_ID = re.compile(r"aws:///(?P<zone>[a-z]{2}(?:-[a-z]+)+-\d[a-z])/")

NODE_AGENT_CONTAINER = "aws-eks-nodeagent"


def _exec_is_eks(command: str | None, args: tuple[str, ...]) -> bool:
    base = (command or "").rsplit("/", 1)[-1]
    if base == "aws":
        return "eks" in args and "get-token" in args
    return base == "aws-iam-authenticator"


class Eks(ClusterSideOnly):
    name = Provider.EKS
    issue = "issue #10"

    def __init__(self) -> None:
        # Per-run state between plan_enable, enable and wait (keyed by the run's context): the
        # EKS client (its call log) and the checked Calico manifests, read once.
        self._clients: dict[int, Any] = {}
        self._manifests: dict[int, Manifests] = {}

    def evidence(self, facts: ClusterFacts) -> list[Signal]:
        out = node_signals(
            facts, Provider.EKS,
            provider_id_prefix="aws://", provider_id_meaning="an EC2 instance (AWS)",
            label_prefixes=("eks.amazonaws.com/", "alpha.eksctl.io/"),
            version_marker="-eks-", version_meaning="built by EKS",
        )
        for ds in facts.daemonsets_named("aws-node", "kube-system"):
            agent = ds.container(NODE_AGENT_CONTAINER)
            if agent is not None and flag_value(agent.argv, "--enable-network-policy") == "true":
                out.append(engine_signal(
                    ds, "aws-network-policy-agent",
                    "the VPC CNI's network policy agent enforces NetworkPolicy (EKS)",
                    Provider.EKS,
                    detail=f"container {NODE_AGENT_CONTAINER} --enable-network-policy=true",
                ))
            else:
                why = ("its network policy agent is off" if agent is not None
                       else f"no {NODE_AGENT_CONTAINER} container")
                out.append(Signal(f"daemonset {ds.ref}", f"ready {ds.ready}/{ds.desired}, {why}",
                                  "the Amazon VPC CNI (EKS)", Strength.WORKLOAD, Provider.EKS))
        out += workload_signals(facts, Provider.EKS, {
            "eks-pod-identity-agent": "the EKS Pod Identity agent",
        })
        ref = facts.ref
        if ref is not None:
            if ref.server and _SERVER.match(ref.server):
                out.append(Signal("kubeconfig server URL", ref.server, "an EKS endpoint",
                                  Strength.HINT, Provider.EKS))
            for name in (ref.context, ref.cluster):
                if name and (_ARN.search(name) or _EKSCTL.fullmatch(name)):
                    out.append(Signal("kubeconfig context" if name == ref.context
                                      else "kubeconfig cluster name", name,
                                      "an EKS cluster ARN or eksctl name", Strength.HINT,
                                      Provider.EKS))
                    break
            if _exec_is_eks(ref.exec_command, ref.exec_args):
                out.append(Signal("kubeconfig exec plugin",
                                  " ".join([str(ref.exec_command), *ref.exec_args]),
                                  "EKS token plugin", Strength.HINT, Provider.EKS))
        return out

    def identity(self, facts: ClusterFacts) -> dict[str, str]:
        out: dict[str, str] = {}
        ref = facts.ref
        if ref is not None:
            for name in (ref.context, ref.cluster):
                if name and (m := _ARN.search(name)):
                    out.update(clusterName=m["name"], region=m["region"], account=m["account"])
                    break
                if name and (m := _EKSCTL.fullmatch(name)):
                    out.update(clusterName=m["name"], region=m["region"])
                    break
            if _exec_is_eks(ref.exec_command, ref.exec_args):
                for flag, key in (("--cluster-name", "clusterName"), ("--region", "region"),
                                  ("-i", "clusterName"), ("--cluster-id", "clusterName")):
                    value = flag_value(ref.exec_args, flag)
                    if value:
                        out.setdefault(key, value)
            if ref.server and (m := _SERVER.match(ref.server)):
                out.setdefault("region", m["region"])
        # The nodes are the cluster itself: their region wins over kubeconfig text.
        region = first_label(facts, "topology.kubernetes.io/region")
        if region is None:
            zone = next((m["zone"] for n in facts.nodes
                         if (m := _PROVIDER_ID.match(n.provider_id))), None)
            region = zone[:-1] if zone else None
        if region:
            out["region"] = region
        name = first_label(facts, "alpha.eksctl.io/cluster-name")
        if name:
            out["clusterName"] = name
        return out

    # --- the cloud's view (detect) -----------------------------------------------------------

    def credentials_at_hand(self) -> bool:
        # botocore's default chain, the parts that need no network: environment keys, a
        # profile, web identity, the container credentials endpoint, the shared files. Instance
        # roles (IMDS) are not probed: offline, that probe is what makes a read slow.
        return settings_present(
            ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            ("$AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", "$AWS_CONFIG_FILE",
             "~/.aws/config"))

    def cloud_view(self, ctx: EnableContext) -> ApiView:
        """DescribeCluster and DescribeAddon vpc-cni, as ``plan_enable`` reads them."""
        from netiso.providers.eks import cloud

        name = ctx.identity.get("clusterName")
        if not name:
            raise PreconditionFailed("the EKS cluster name is not derivable from the kubeconfig "
                                     "or the nodes", hint="pass --cluster-name")
        client = cloud.Eks(ctx.identity.get("region"), ctx.identity.get("profile"))
        info = client.describe_cluster(name)
        addon = client.describe_addon(name, VPC_CNI)
        vpc_cni: dict[str, Any] | None = None
        engine: str | None = None
        if addon is not None:
            try:
                policy = addon.configuration().get("enableNetworkPolicy")
            except OperationFailed:
                policy = None  # YAML values: said as the raw text below
            vpc_cni = {"version": addon.version, "status": addon.status,
                       "enableNetworkPolicy": None if policy is None else str(policy)}
            if str(policy).lower() == "true":
                engine = "aws-network-policy-agent"
        identity = {"clusterName": info.name, **({"id": info.arn} if info.arn else {})}
        m = _ARN.search(info.arn)
        if m:
            identity.update(region=m["region"], account=m["account"])
        elif ctx.identity.get("region"):
            identity["region"] = ctx.identity["region"]
        return ApiView(Provider.EKS, identity, info.version or None,
                       {"autoMode": info.auto_mode, "vpcCni": vpc_cni}, engine,
                       info.status or None)

    # --- enable ---------------------------------------------------------------------------

    def plan_enable(self, ctx: EnableContext) -> EnablePlan:
        from netiso.providers.eks import cloud

        own_options(ctx.request, Provider.EKS, OPTIONS)
        engine = (ctx.request.engine or "").strip().lower() or None
        if engine not in (None, CALICO, VPC_CNI):
            raise UsageError(f"--engine {ctx.request.engine}: not an EKS engine "
                             f"({CALICO} or {VPC_CNI})")
        if engine == VPC_CNI:
            for key in ("calicoManifests", "calicoApiserver", "upgrade"):
                if ctx.request.options.get(key):
                    raise UsageError(f"{_FLAG[key]} applies to --engine calico only")
        name = ctx.identity.get("clusterName")
        client = cloud.Eks(ctx.identity.get("region"), ctx.identity.get("profile"))
        self._clients[id(ctx)] = client
        view = CloudView()
        warnings: list[str] = []
        if name:
            view.cluster = client.describe_cluster(name)
            view.nodegroups = client.nodegroups(name)
            view.fargate = client.fargate_profiles(name)
            view.addon = client.describe_addon(name, VPC_CNI)
            view.known = True
        elif engine == VPC_CNI:
            raise PreconditionFailed(
                "--engine vpc-cni changes the vpc-cni add-on through the EKS API, and the "
                "cluster's EKS name is not derivable from the kubeconfig or the nodes",
                hint="pass --cluster-name (and --region)")
        else:
            warnings.append("the EKS cluster name is not derivable (pass --cluster-name): the "
                            "AWS-side preflight (Auto Mode, Fargate, node AMIs) was skipped; "
                            "the cluster's own nodes were checked")
        preflight(ctx.facts, view)
        agent = _agent_on(ctx.facts)
        enforcing = [e for e in ctx.state.engines if e.ready > 0]
        calico_seen = any(e.engine == CALICO for e in ctx.state.engines)
        if engine == VPC_CNI:
            if calico_seen:
                raise PreconditionFailed(
                    "--engine vpc-cni: Calico runs on this cluster (calico-node); the VPC CNI's "
                    "policy agent and Calico would both enforce the same pods",
                    hint="keep Calico (run enable without --engine), or remove it first")
            return self._plan_vpc_cni(ctx, view, agent, warnings)
        if agent is not None and agent.ready > 0 and engine is None:
            return self._already(agent.engine, view, warnings)
        if agent is not None:
            raise PreconditionFailed(
                "Calico requested while the VPC CNI's network policy agent is on "
                f"(daemonset {agent.daemonset}, {NODE_AGENT_CONTAINER} "
                "--enable-network-policy=true): both would enforce the same pods",
                hint="keep the VPC CNI's agent (run enable without --engine), or turn it off "
                     "first")
        others = [e for e in enforcing if e.engine not in (CALICO, "aws-network-policy-agent")]
        if others:
            return self._already(others[0].engine, view, warnings)
        return self._plan_calico(ctx, view, warnings)

    def _already(self, engine: str, view: CloudView, warnings: list[str]) -> EnablePlan:
        return EnablePlan(Provider.EKS, engine, (), already=engine, warnings=tuple(warnings),
                          cloud=view.to_json())

    def _plan_vpc_cni(self, ctx: EnableContext, view: CloudView, agent: EngineSeen | None,
                      warnings: list[str]) -> EnablePlan:
        from netiso.providers.base import Step

        addon = view.addon
        name = ctx.identity["clusterName"]
        if addon is None:
            raise PreconditionFailed(
                f"the VPC CNI of EKS cluster {name} is self-managed (eks:DescribeAddon: "
                "ResourceNotFoundException): netiso changes the managed vpc-cni add-on only",
                hint="adopt it as a managed add-on (aws eks create-addon --addon-name vpc-cni), "
                     "or use Calico (enable without --engine)")
        minimums(view.cluster, addon)
        config = addon.configuration()
        on_in_cloud = str(config.get("enableNetworkPolicy", "")).lower() == "true"
        if on_in_cloud and agent is not None and agent.ready > 0:
            return self._already(agent.engine, view, warnings)
        merged = json.dumps({**config, "enableNetworkPolicy": "true"}, sort_keys=True,
                            separators=(",", ":"))
        params = {"clusterName": name, "addonName": VPC_CNI, "configurationValues": merged,
                  "resolveConflicts": "PRESERVE"}
        steps = (
            Step("update-vpc-cni-addon",
                 f"eks:UpdateAddon vpc-cni {addon.version}: enableNetworkPolicy \"true\" merged "
                 "into its configurationValues (PRESERVE), then eks:DescribeUpdate until it "
                 "ends", call={"operation": "UpdateAddon", "params": params},
                 done=on_in_cloud),
            Step("wait-aws-node-agent",
                 f"wait for daemonset kube-system/aws-node's {NODE_AGENT_CONTAINER} with "
                 "--enable-network-policy=true to roll out",
                 call={"wait": "DaemonSet kube-system/aws-node",
                       "until": f"{NODE_AGENT_CONTAINER} --enable-network-policy=true, rolled "
                                "out"}, writes=False),
        )
        return EnablePlan(Provider.EKS, "aws-network-policy-agent", steps,
                          warnings=tuple(warnings), cloud=view.to_json())

    def _plan_calico(self, ctx: EnableContext, view: CloudView, warnings: list[str]
                     ) -> EnablePlan:
        from netiso.providers.base import Step
        from netiso.providers.eks import calico

        opts = ctx.request.options
        upgrade = bool(opts.get("upgrade"))
        apiserver = bool(opts.get("calicoApiserver"))
        state = calico.read_state(ctx.kube)
        if state.installation is None and any(e.engine == CALICO and e.ready > 0
                                              for e in ctx.state.engines):
            # Calico installed without the operator (manifests, a chart): it enforces, and it is
            # not netiso's to upgrade; a second Calico through the operator would fight it.
            return self._already(CALICO, view, warnings)
        installed = state.version
        if installed and installed != calico.VERSION and not upgrade:
            raise PreconditionFailed(
                f"Calico {installed} is installed; netiso installs {calico.VERSION}",
                hint="rerun with --upgrade to upgrade it (server-side apply, forced)")
        if (installed == calico.VERSION and state.available(apiserver=apiserver)
                and (state.apiserver or not apiserver)):
            return self._already(CALICO, view, warnings)
        manifests = calico.load(opts.get("calicoManifests"))
        self._manifests[id(ctx)] = manifests
        crd_names = {str(o["metadata"]["name"]) for o in manifests.crds}
        fresh = not upgrade
        rbac = ctx.kube.resource_for("rbac.authorization.k8s.io/v1", "ClusterRole")
        role = ctx.kube.get(rbac, "aws-node")
        daemonset = ctx.kube.get(ctx.kube.resource_for("apps/v1", "DaemonSet"), "aws-node",
                                 "kube-system")
        if role is None:
            warnings.append("ClusterRole aws-node not found (a self-managed VPC CNI under "
                            "another name?): its patch-on-pods rule (Calico's EKS guide) was "
                            "not added")
        ssa = {"fieldManager": "netiso", "force": upgrade}
        steps = [
            Step("calico-crds", f"server-side apply Calico {calico.VERSION}'s "
                 f"{len(manifests.crds)} CustomResourceDefinitions ({calico.CRDS}), wait until "
                 "Established", call={"serverSideApply": calico.refs(manifests.crds), **ssa},
                 done=fresh and crd_names <= state.crds),
            Step("tigera-operator", f"server-side apply the Tigera operator "
                 f"({calico.OPERATOR}: "
                 f"{calico.OPERATOR_IMAGE})",
                 call={"serverSideApply": calico.refs(manifests.operator), **ssa},
                 done=fresh and state.operator_image == calico.OPERATOR_IMAGE),
            *([] if role is None else [Step(
                "aws-node-clusterrole", "ClusterRole aws-node: add patch on pods (Calico's EKS "
                "guide; JSON patch, the rules list is EKS's)",
                call={"jsonPatch": "ClusterRole aws-node",
                      "add": {"path": "/rules/-", "value": dict(calico.AWS_NODE_RULE)}},
                done=calico.clusterrole_has_rule(role))]),
            Step("aws-node-annotate-pod-ip", "DaemonSet kube-system/aws-node: env "
                 "ANNOTATE_POD_IP=true on container aws-node (server-side apply)",
                 call={"serverSideApply": ["DaemonSet kube-system/aws-node"],
                       "object": dict(calico.AWS_NODE_ENV), "fieldManager": "netiso"},
                 done=daemonset is None or calico.aws_node_annotates(daemonset)),
            Step("calico-installation", "server-side apply Installation default (EKS, "
                 "AmazonVPC CNI, BGP disabled)",
                 call={"serverSideApply": ["Installation default"],
                       "object": dict(calico.INSTALLATION), **ssa},
                 done=fresh and _installation_matches(state.installation)),
        ]
        if apiserver:
            steps.append(Step("calico-apiserver", "server-side apply APIServer default",
                              call={"serverSideApply": ["APIServer default"],
                                    "object": dict(calico.APISERVER), **ssa},
                              done=state.apiserver))
        steps.append(Step("wait-tigerastatus", "wait until every TigeraStatus is Available and "
                          "none Degraded" + ("" if apiserver else
                                             " (tiers excepted: it needs an APIServer)"),
                          call={"wait": "TigeraStatus", "until": "Available=True, "
                                "Degraded!=True"}, writes=False))
        if daemonset is None:
            warnings.append("DaemonSet kube-system/aws-node not found: ANNOTATE_POD_IP was not "
                            "set")
        if not apiserver:
            warnings.append("no Calico APIServer (--calico-apiserver): TigeraStatus tiers stays "
                            "Degraded, \"Waiting for Tigera API server to be ready\"; "
                            "enforcement does not need it")
        return EnablePlan(Provider.EKS, CALICO, tuple(steps), warnings=tuple(warnings),
                          cloud=view.to_json())

    def enable(self, ctx: EnableContext, plan: EnablePlan) -> None:
        from netiso.providers.eks import calico

        client = self._clients.get(id(ctx))
        for step in plan.pending:
            ctx.log(f"{step.name}: {step.description}")
            call = step.call or {}
            timeout = ctx.request.timeout
            force = bool(call.get("force"))
            if step.name == "update-vpc-cni-addon" and client is not None:
                params = call["params"]
                update_id = client.update_addon(params["clusterName"], VPC_CNI,
                                                params["configurationValues"])
                result = client.wait_update(params["clusterName"], update_id, VPC_CNI,
                                            timeout=timeout, log=ctx.log)
                if result.status != "Successful":
                    errors = "; ".join(result.errors) or "no error detail given"
                    raise OperationFailed(f"eks:DescribeUpdate: update {update_id} of vpc-cni "
                                          f"ended {result.status}: {errors}")
            elif step.name == "calico-crds":
                calico.apply_objects(ctx.kube, self._manifests[id(ctx)].crds, force=force,
                                     timeout=min(timeout, 300.0))
            elif step.name == "tigera-operator":
                calico.apply_objects(ctx.kube, self._manifests[id(ctx)].operator, force=force,
                                     timeout=min(timeout, 300.0))
            elif step.name == "aws-node-clusterrole":
                calico.patch_aws_node_clusterrole(ctx.kube)
            elif step.name == "aws-node-annotate-pod-ip":
                ctx.kube.server_side_apply(calico.AWS_NODE_ENV)
            elif step.name == "calico-installation":
                calico.apply_custom(ctx.kube, calico.INSTALLATION, force=force)
            elif step.name == "calico-apiserver":
                calico.apply_custom(ctx.kube, calico.APISERVER, force=force)

    def wait(self, ctx: EnableContext, plan: EnablePlan) -> EnforcementState:
        from netiso.providers.eks import calico

        timeout = ctx.request.timeout
        if plan.engine == CALICO:
            calico.wait_available(ctx.kube, apiserver=bool(ctx.request.options.get(
                "calicoApiserver")), timeout=timeout, log=ctx.log)
            seen = _daemonset_engine(ctx.kube, "calico-system", "calico-node", CALICO)
        else:
            seen = _wait_agent(ctx.kube, timeout, ctx.log)
        self._clients.pop(id(ctx), None)
        self._manifests.pop(id(ctx), None)
        return EnforcementState(engines=(seen,) if seen else (), source="cluster")


CALICO, VPC_CNI = "calico", "vpc-cni"
OPTIONS = ("clusterName", "region", "profile", "calicoManifests", "calicoApiserver", "upgrade",
           "engine")
_FLAG = {"calicoManifests": "--calico-manifests", "calicoApiserver": "--calico-apiserver",
         "upgrade": "--upgrade"}
# The VPC CNI's network policy agent (AWS EKS user guide, "Restrict Pod network traffic with
# Kubernetes network policies", prerequisites): VPC CNI 1.14+, Kubernetes 1.25+, and on 1.25-1.27
# at least these platform versions.
MIN_VPC_CNI = (1, 14)
MIN_KUBERNETES = (1, 25)
MIN_PLATFORM = {(1, 25): 6, (1, 26): 5, (1, 27): 4}


class CloudView:
    """What the EKS API said (only when the cluster's name is known)."""

    def __init__(self) -> None:
        self.known = False
        self.cluster: ClusterInfo | None = None
        self.nodegroups: list[NodegroupInfo] = []
        self.fargate: list[str] = []
        self.addon: AddonInfo | None = None

    def to_json(self) -> dict[str, Any]:
        if not self.known or self.cluster is None:
            return {}
        return {
            **self.cluster.to_json(),
            "nodegroups": {g.name: g.ami_type for g in self.nodegroups},
            "fargateProfiles": list(self.fargate),
            "vpcCni": None if self.addon is None else {
                "version": self.addon.version, "status": self.addon.status,
                "configurationValues": self.addon.configuration_values,
            },
        }


def _version(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)", text.strip())
    return (int(m[1]), int(m[2])) if m else ()


def minimums(cluster: ClusterInfo | None, addon: AddonInfo) -> None:
    """The VPC CNI policy agent's prerequisites (exit 4 naming the one not met)."""
    have = _version(addon.version)
    if have and have < MIN_VPC_CNI:
        raise PreconditionFailed(
            f"the vpc-cni add-on is {addon.version}; its network policy agent needs "
            f"v{MIN_VPC_CNI[0]}.{MIN_VPC_CNI[1]} or later",
            hint="upgrade the add-on first (aws eks update-addon --addon-version)")
    if cluster is None:
        return
    k8s = _version(cluster.version)
    if k8s and k8s < MIN_KUBERNETES:
        raise PreconditionFailed(
            f"EKS cluster {cluster.name} runs Kubernetes {cluster.version}; the VPC CNI's "
            f"network policy agent needs {MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]} or later")
    need = MIN_PLATFORM.get((k8s[0], k8s[1])) if k8s else None
    m = re.fullmatch(r"eks\.(\d+)", cluster.platform_version)
    if need is not None and m and int(m[1]) < need:
        raise PreconditionFailed(
            f"EKS cluster {cluster.name} is on platform version {cluster.platform_version}; "
            f"the VPC CNI's network policy agent needs eks.{need} or later on Kubernetes "
            f"{cluster.version}", hint="wait for EKS to roll the platform version forward")


def _compute_types(facts: ClusterFacts) -> set[str]:
    return {n.labels.get("eks.amazonaws.com/compute-type", "ec2") for n in facts.nodes}


def preflight(facts: ClusterFacts, view: CloudView) -> None:
    """Pure: the refusals every engine shares (exit 4, one line, before anything changed)."""
    nodes = facts.nodes
    if (view.cluster is not None and view.cluster.auto_mode) or "auto" in _compute_types(facts):
        raise PreconditionFailed(
            "EKS Auto Mode manages this cluster's networking: Calico is unsupported there and "
            "its VPC CNI is not an add-on netiso can change",
            hint="turn on Auto Mode's own network policy (NodeClass spec.networkPolicy and the "
                 "amazon-vpc-cni ConfigMap's enable-network-policy-controller)")
    self_managed = [n for n in nodes if n.provider_id.startswith("aws://")
                    and "eks.amazonaws.com/nodegroup" not in n.labels
                    and n.labels.get("eks.amazonaws.com/compute-type") != "fargate"]
    all_fargate = bool(nodes) and _compute_types(facts) == {"fargate"}
    if all_fargate or (view.known and view.fargate and not view.nodegroups
                       and not self_managed):
        raise PreconditionFailed(
            "this EKS cluster runs on Fargate only: no DaemonSet (Calico's calico-node, the "
            "VPC CNI's agent) can run there",
            hint="add an EC2 node group, or keep isolation to Fargate's security groups for "
                 "pods")
    linux = [n for n in self_managed if n.labels.get("kubernetes.io/os", "linux") != "windows"]
    windows_groups = [g for g in view.nodegroups if g.ami_type.startswith("WINDOWS")]
    all_windows_nodes = bool(nodes) and all(n.labels.get("kubernetes.io/os") == "windows"
                                            for n in nodes)
    if all_windows_nodes or (view.nodegroups and len(windows_groups) == len(view.nodegroups)
                             and not linux):
        raise PreconditionFailed(
            "this EKS cluster has Windows nodes only: Calico's calico-node and the VPC CNI's "
            "policy agent need EC2 Linux nodes",
            hint="add a Linux node group")


def _agent_on(facts: ClusterFacts) -> EngineSeen | None:
    for ds in facts.daemonsets_named("aws-node", "kube-system"):
        agent = ds.container(NODE_AGENT_CONTAINER)
        if agent is not None and flag_value(agent.argv, "--enable-network-policy") == "true":
            return EngineSeen("aws-network-policy-agent", ds.ref, ds.desired, ds.ready)
    return None


def _installation_matches(installation: dict[str, Any] | None) -> bool:
    if installation is None:
        return False
    spec = installation.get("spec") or {}
    return (spec.get("kubernetesProvider") == "EKS"
            and (spec.get("cni") or {}).get("type") == "AmazonVPC"
            and (spec.get("calicoNetwork") or {}).get("bgp") == "Disabled")


def _daemonset_engine(kube: Kube, namespace: str, name: str, engine: str) -> EngineSeen | None:
    # A LIST by name, not a GET: the enable role reads DaemonSets by list and watch (it may get
    # only aws-node by name).
    found = kube.list_objects(kube.resource_for("apps/v1", "DaemonSet"), namespace,
                              field_selector=f"metadata.name={name}")
    if not found:
        return None
    ds = found[0]
    status = ds.get("status") or {}
    return EngineSeen(engine, f"{namespace}/{name}", int(status.get("desiredNumberScheduled", 0)),
                      int(status.get("numberReady", 0)))


def _wait_agent(kube: Kube, timeout: float, log: Any) -> EngineSeen | None:
    """Until aws-node runs its agent with --enable-network-policy=true on every node."""
    from netiso.kube import KubeError

    rt = kube.resource_for("apps/v1", "DaemonSet")

    def rolled_out(ds: dict[str, Any] | None) -> bool:
        if ds is None:
            return False
        spec, status = ds.get("spec") or {}, ds.get("status") or {}
        argv: list[str] = []
        for c in spec.get("template", {}).get("spec", {}).get("containers") or []:
            if c.get("name") == NODE_AGENT_CONTAINER:
                argv = [*(c.get("command") or []), *(c.get("args") or [])]
        desired = int(status.get("desiredNumberScheduled", 0))
        return (flag_value(argv, "--enable-network-policy") == "true"
                and int(status.get("observedGeneration", 0)) >= int(
                    ds["metadata"].get("generation", 0))
                and int(status.get("updatedNumberScheduled", 0)) == desired
                and int(status.get("numberReady", 0)) == desired and desired > 0)

    log(f"waiting for daemonset kube-system/aws-node ({NODE_AGENT_CONTAINER} "
        "--enable-network-policy=true) to roll out")
    try:
        kube.wait_for(rt, "aws-node", "kube-system", rolled_out, timeout=timeout,
                      what=f"{NODE_AGENT_CONTAINER} --enable-network-policy=true rolled out")
    except KubeError as exc:
        raise OperationFailed(exc.message) from exc
    return _daemonset_engine(kube, "kube-system", "aws-node", "aws-network-policy-agent")


PROVIDER = Eks()
