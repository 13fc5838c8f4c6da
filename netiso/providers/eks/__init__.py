"""EKS: cluster-side evidence and identity; the AWS side (boto3) is issue #10.

Evidence (issue #10): nodes' ``aws:///<az>/i-…`` providerID and ``eks.amazonaws.com/*`` labels,
kubelet and API server versions containing ``-eks-``, the VPC CNI's ``kube-system/aws-node``
DaemonSet (its ``aws-eks-nodeagent`` container with ``--enable-network-policy=true`` is the VPC
CNI's own policy engine), and as hints the ``*.eks.amazonaws.com`` server URL, an EKS ARN or
eksctl context name and the ``aws eks get-token`` exec plugin. An ``aws://`` providerID alone
means EC2, where the same metadata facts (IMDS on IPv6, Pod Identity) hold, which is what the
EKS profile is about.

The cloud side will live in ``eks/cloud.py`` (the only boto3 importer), imported inside
``plan_enable``/``enable``/``wait`` so that ``netiso detect`` never loads boto3.
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
    flag_value,
    node_signals,
    state_from,
    workload_signals,
)
from netiso.providers.generic import PROVIDER as GENERIC

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

    def describe(self, facts: ClusterFacts) -> EnforcementState:
        return state_from([*GENERIC.evidence(facts), *self.evidence(facts)])


PROVIDER = Eks()
