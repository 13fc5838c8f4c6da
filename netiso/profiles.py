"""Per-provider facts the bundle depends on: one pure, frozen profile per provider.

Design decisions:

* **One home for cloud facts.** Which metadata endpoints to deny, which addresses must stay
  reachable (EKS Pod Identity), which DNS quirks to allow (GKE Cloud DNS on the metadata
  address), which namespaces the provider runs for itself, and what the bundle cannot promise
  there (the GKE metadata redirect) used to be constants spread over ``config`` and ``bundle``.
  They are data here; ``config`` builds default values from a profile and ``bundle`` renders
  from it, so adding a provider is adding a profile, not hunting for ``if provider is ...``.
* **Pure and cheap.** No I/O, no SDK, no Kubernetes client: ``config`` (which must stay pure)
  and ``netiso --help`` import it. The provider *seam* (evidence from a cluster, enabling
  enforcement through a cloud API) lives in ``netiso.providers``, which reads these profiles.
* **Facts carry their reason.** Each non-obvious value says why it is there, citing the quirk;
  the README's "Provider defaults" is the user-facing copy of this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Provider(StrEnum):
    EKS = "eks"
    GKE = "gke"
    AKS = "aks"
    GENERIC = "generic"


PROVIDERS: tuple[str, ...] = tuple(p.value for p in Provider)

#: Namespaces netiso never isolates unless explicitly targeted with --force, on every provider:
#: the control plane's own and the Calico operator's (a default-deny there cuts the CNI's own
#: health checks).
SYSTEM_NAMESPACES: tuple[str, ...] = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "calico-system",
    "calico-apiserver",
    "tigera-operator",
)

#: EKS Pod Identity agent: pods fetch their credentials here, so it must never be denied. A
#: metadata CIDR covering it is refused on every provider (a values file may be shared).
EKS_POD_IDENTITY: tuple[str, ...] = ("169.254.170.23/32", "fd00:ec2::23/128")

#: NodeLocal DNSCache's conventional link-local listen address (the same on every provider).
NODE_LOCAL_DNS = "169.254.20.10"

#: The link-local metadata address most clouds use (AWS IMDS, GCE, Azure IMDS).
LINK_LOCAL_METADATA = "169.254.169.254/32"

GKE_METADATA_WARNING = (
    "On GKE, traffic to 169.254.169.254 is redirected to the GKE metadata server before "
    "NetworkPolicy is evaluated, so this deny is not reliable there; protect node credentials "
    "with Workload Identity Federation for GKE (or metadata concealment on older node pools)."
)


@dataclass(frozen=True)
class Profile:
    """What the bundle needs to know about one provider."""

    provider: Provider
    #: Default ``metadata.deny``: the credential endpoints pods must not reach.
    metadata_deny: tuple[str, ...]
    #: Shown with the defaults: what the metadata CIDRs are.
    metadata_note: str
    #: Namespace globs the provider runs for itself (added to :data:`SYSTEM_NAMESPACES`).
    system_namespaces: tuple[str, ...] = ()
    #: Credential agents pods legitimately use: allowed (TCP ``credential_agent_port``) by both
    #: egress policies, even under default-deny egress.
    credential_agents: tuple[str, ...] = ()
    credential_agent_port: int = 80
    #: Extra DNS servers pods are told to use (UDP/TCP 53 only), beyond the cluster DNS pods and
    #: NodeLocal DNSCache.
    extra_dns: tuple[str, ...] = ()
    #: What the egress policies cannot promise on this provider (an annotation and a warning).
    metadata_warning: str | None = None
    #: (CIDR, TCP port) of the metadata server pods reach for Workload Identity tokens: allowed by
    #: both egress policies only when the values file opts in (``metadata.workloadIdentity``).
    workload_identity: tuple[tuple[str, int], ...] = ()


PROFILES: Mapping[Provider, Profile] = {
    Provider.GENERIC: Profile(
        provider=Provider.GENERIC,
        metadata_deny=(LINK_LOCAL_METADATA,),
        metadata_note="the link-local metadata address most clouds use",
    ),
    Provider.EKS: Profile(
        provider=Provider.EKS,
        # IMDS also answers on IPv6 (fd00:ec2::254) on Nitro instances with the IPv6 endpoint on.
        metadata_deny=(LINK_LOCAL_METADATA, "fd00:ec2::254/128"),
        metadata_note=(
            "IMDS on IPv4 and IPv6; the Pod Identity agent (169.254.170.23) stays reachable"
        ),
        system_namespaces=("amazon-*", "aws-observability"),
        credential_agents=EKS_POD_IDENTITY,
    ),
    Provider.GKE: Profile(
        provider=Provider.GKE,
        metadata_deny=(LINK_LOCAL_METADATA, "fd20:ce::254/128"),
        metadata_note="the GCE metadata server; not reliable on GKE, see the warning on the policy",
        system_namespaces=("gke-*", "gmp-*"),
        # Cloud DNS: pods' resolv.conf names the metadata server's address, which answers DNS on
        # port 53 (the credentials are on port 80). Without it, DNS breaks on Dataplane V2.
        extra_dns=(LINK_LOCAL_METADATA,),
        metadata_warning=GKE_METADATA_WARNING,
        # Community reports (README, "Workload Identity on GKE"): legacy Calico evaluates egress
        # after the node's DNAT to the gke-metadata-server (169.254.169.252:988), Dataplane V2
        # before it (169.254.169.254:80). Opt-in: on a node pool without Workload Identity the
        # second is the node's own metadata server and its credentials.
        workload_identity=(("169.254.169.252/32", 988), (LINK_LOCAL_METADATA, 80)),
    ),
    Provider.AKS: Profile(
        provider=Provider.AKS,
        metadata_deny=(LINK_LOCAL_METADATA,),
        metadata_note="Azure IMDS",
        system_namespaces=("aks-*", "gatekeeper-system"),
    ),
}


def profile(provider: Provider) -> Profile:
    """The profile of ``provider``."""
    return PROFILES[provider]
