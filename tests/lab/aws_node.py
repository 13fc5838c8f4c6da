"""The EKS flavour's `kube-system/aws-node` DaemonSet: an inert stand-in for the Amazon VPC CNI.

On EKS the VPC CNI runs as the DaemonSet `kube-system/aws-node` (containers `aws-node` and
`aws-eks-nodeagent`, the network policy agent, started with `--enable-network-policy=false`
unless turned on). netiso's detection and preflight read that DaemonSet, so the EKS-flavoured lab
has one with the same shape: same names, labels, images, hostNetwork and tolerations. The CNI
image maps to a busybox `sleep` (images.py): the lab's node agent already wires pods the way the
VPC CNI does (veths named `eni` + sha1("<ns>.<pod>")[:11], a /32 route per pod), so nothing of the
CNI needs to run. The policy agent's image is the lab's double of AWS's agent (engine_double.py):
inert while its args say `--enable-network-policy=false`, kube-router for its node once the EKS
add-on (engines.eks_policy_agent) sets it to true. So nothing enforces NetworkPolicy until Calico's
felix or that agent does.
"""

from __future__ import annotations

from tests.lab.kubeapi import JSON, ApiError, Kube

NAME = "aws-node"
NAMESPACE = "kube-system"
CNI_IMAGE = "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1"
AGENT_IMAGE = (
    "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:"
    "v1.1.6-eksbuild.1"
)
LABELS = {"k8s-app": NAME, "app.kubernetes.io/name": NAME}


def daemonset() -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    # The real one's; the policy agent's double sweeps its rules on SIGTERM.
                    "terminationGracePeriodSeconds": 10,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "aws-node",
                            "image": CNI_IMAGE,
                            "env": [
                                {"name": "AWS_VPC_K8S_CNI_LOGLEVEL", "value": "DEBUG"},
                                {"name": "AWS_VPC_ENI_MTU", "value": "9001"},
                                {"name": "ENABLE_POD_ENI", "value": "false"},
                                {"name": "ENABLE_PREFIX_DELEGATION", "value": "false"},
                                {"name": "NETWORK_POLICY_ENFORCING_MODE", "value": "standard"},
                                {
                                    "name": "MY_NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                },
                            ],
                            "ports": [{"containerPort": 61678, "name": "metrics"}],
                        },
                        {
                            "name": "aws-eks-nodeagent",
                            "image": AGENT_IMAGE,
                            "args": [
                                "--enable-ipv6=false",
                                "--enable-network-policy=false",
                                "--enable-cloudwatch-logs=false",
                                "--enable-policy-event-logs=false",
                                "--metrics-bind-addr=:8162",
                                "--health-probe-bind-addr=:8163",
                            ],
                            "env": [{
                                "name": "MY_NODE_NAME",
                                "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                            }],
                            "securityContext": {
                                "capabilities": {"add": ["NET_ADMIN"]},
                                "privileged": True,
                            },
                        },
                    ],
                },
            },
        },
    }


def ensure(kube: Kube) -> None:
    """Create the DaemonSet if missing (idempotent: a second `up` leaves it as it is)."""
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"
    try:
        kube.get(f"{path}/{NAME}")
        return
    except ApiError as exc:
        if exc.status != 404:
            raise
    try:
        kube.create(path, daemonset())
    except ApiError as exc:
        if exc.status != 409:
            raise


def remove(kube: Kube) -> None:
    """Delete it: a lab re-registered from eks to another flavour must not look like EKS."""
    try:
        kube.delete(f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{NAME}")
    except ApiError as exc:
        if exc.status != 404:
            raise
