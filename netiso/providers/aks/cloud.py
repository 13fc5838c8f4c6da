"""The Azure seam: the only module of netiso that imports ``azure.*``.

Design decisions:

* **Imported only by the cloud-side calls.** ``netiso.providers.aks`` imports this module inside
  ``plan_enable``/``enable``/``cloud_view``, so ``--help`` and a ``netiso detect`` that does not
  ask the cloud never load the Azure SDK.
* **Standard credentials and endpoints only.** The client is azure-mgmt-containerservice (41+,
  the dict-like hybrid models) with azure-identity's ``DefaultAzureCredential``: environment
  service principal, workload identity, managed identity, then the developer logins (az CLI,
  azd, PowerShell). netiso has no Azure flag for endpoints or certificates: a proxy and its CA
  come from the standard ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` variables that
  azure-core's transport (requests) honours, and a sovereign cloud from azure-core's own
  ``AZURE_SDK_CLOUD_CONF``.
* **Get, modify, put the whole cluster.** AKS backfills whatever a PUT leaves out with defaults,
  so the body is the managed cluster exactly as GET returned it (the SDK drops read-only
  fields) with the network profile's values set explicitly, sent with the GET's ETag under
  ``If-Match`` (``MatchConditions.IfNotModified``): a concurrent change gives 412, never a lost
  update.
* **Errors are translated here.** Every ``azure.core`` exception leaves as
  :class:`~netiso.errors.OperationFailed` with ARM's code and message on one line and, for the
  two a user can act on (409 another operation in progress, 412 changed underneath), what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from netiso.errors import OperationFailed

PROVIDER_PATH = "providers/Microsoft.ContainerService/managedClusters"


def _s(value: Any) -> str | None:
    """An SDK enum or string as its wire value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class Pool:
    name: str
    count: int
    os_type: str
    mode: str
    pod_subnet: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "osType": self.os_type,
                "mode": self.mode}


@dataclass
class ManagedCluster:
    """A managed cluster as GET returned it: the values netiso reads, and the model to PUT."""

    subscription: str
    resource_group: str
    name: str
    location: str
    etag: str | None
    provisioning_state: str | None
    kubernetes_version: str | None
    fqdn: str | None
    private_fqdn: str | None
    network: dict[str, Any]  # networkProfile as ARM spells it (camelCase)
    pools: tuple[Pool, ...]
    model: Any = field(repr=False, default=None)

    @property
    def path(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                f"{PROVIDER_PATH}/{self.name}")

    def summary(self) -> dict[str, Any]:
        """What ARM said, for ``EnableResult.cloud``."""
        keys = ("networkPlugin", "networkPluginMode", "networkDataplane", "networkPolicy")
        return {"id": self.path, "location": self.location,
                "kubernetesVersion": self.kubernetes_version,
                "provisioningState": self.provisioning_state, "etag": self.etag,
                "networkProfile": {k: self.network.get(k) for k in keys},
                "agentPools": [p.to_json() for p in self.pools]}


def _view(model: Any, subscription: str) -> ManagedCluster:
    rid = str(model.id or "")
    parts = rid.split("/")
    rg = next((parts[i + 1] for i, p in enumerate(parts[:-1]) if p.lower() == "resourcegroups"),
              "")
    net = model.network_profile
    pools = tuple(
        Pool(name=str(p.name), count=int(p.count or 0), os_type=_s(p.os_type) or "Linux",
             mode=_s(p.mode) or "User", pod_subnet=bool(p.pod_subnet_id))
        for p in (model.agent_pool_profiles or ()))
    return ManagedCluster(
        subscription=subscription, resource_group=rg, name=str(model.name),
        location=str(model.location), etag=model.e_tag,
        provisioning_state=_s(model.provisioning_state),
        kubernetes_version=_s(model.current_kubernetes_version or model.kubernetes_version),
        fqdn=model.fqdn, private_fqdn=model.private_fqdn,
        network=dict(net.as_dict()) if net is not None else {},
        pools=pools, model=model)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """azure.core and azure.identity errors → OperationFailed with ARM's code and message."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceModifiedError,
        ServiceRequestError,
    )

    try:
        yield
    except ClientAuthenticationError as exc:
        raise OperationFailed(f"{what}: Azure authentication failed: {_first_line(exc)}",
                              hint="sign in (az login) or set a service principal or managed "
                                   "identity; netiso uses DefaultAzureCredential") from exc
    except HttpResponseError as exc:
        code, message = _arm_error(exc)
        status = exc.status_code
        hint = None
        if isinstance(exc, ResourceModifiedError) or status == 412:
            hint = ("the managed cluster changed after netiso read it: nothing of netiso's was "
                    "applied; rerun netiso enable")
        elif status == 409:
            hint = ("another operation is running on the managed cluster: wait until its "
                    "provisioningState is Succeeded (az aks show), then rerun netiso enable")
        elif status == 404:
            hint = "check --subscription, --resource-group and --cluster-name"
        elif status == 403:
            hint = ("the identity needs Microsoft.ContainerService/managedClusters/read and "
                    "write on the cluster (e.g. Azure Kubernetes Service Contributor)")
        if status is not None and status < 400:
            # Raised by the poller: the request went through, the operation itself failed.
            where = "the operation failed, "
            hint = hint or ("see the operation in az aks show or the activity log, fix its "
                            "cause, then rerun netiso enable")
        else:
            where = f"HTTP {status}, " if status else ""
        raise OperationFailed(f"{what}: {where}{code}: {message}", hint=hint) from exc
    except ServiceRequestError as exc:
        raise OperationFailed(f"{what}: Azure Resource Manager unreachable: {_first_line(exc)}",
                              hint="check the network, HTTPS_PROXY and REQUESTS_CA_BUNDLE"
                              ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _arm_error(exc: Any) -> tuple[str, str]:
    """ARM's error code and message (the body's ``error``, or the operation's)."""
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or getattr(exc, "reason", None) or "Error"
    message = getattr(err, "message", None) or _first_line(exc)
    return str(code), " ".join(str(message).split())


class Arm:
    """A ContainerService client for one subscription (credentials from the environment)."""

    def __init__(self, subscription: str) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.containerservice import ContainerServiceClient

        self.subscription = subscription
        self._client = ContainerServiceClient(DefaultAzureCredential(), subscription)

    def get(self, resource_group: str, name: str) -> ManagedCluster:
        with _translated(f"reading managed cluster {resource_group}/{name}"):
            model = self._client.managed_clusters.get(resource_group, name)
        return _view(model, self.subscription)

    def find(self, server: str | None) -> ManagedCluster:
        """The subscription's managed cluster whose fqdn or privateFqdn serves ``server``."""
        host = (urlsplit(server).hostname or "").lower() if server else ""
        seen: list[str] = []
        with _translated(f"listing managed clusters in subscription {self.subscription}"):
            for model in self._client.managed_clusters.list():
                view = _view(model, self.subscription)
                seen.append(f"{view.resource_group}/{view.name}")
                if host and host in {(view.fqdn or "").lower(), (view.private_fqdn or "").lower()}:
                    return view
        from netiso.errors import PreconditionFailed

        raise PreconditionFailed(
            f"no managed cluster in subscription {self.subscription} serves {host or 'this'} "
            f"(found {len(seen)}: {', '.join(seen[:5]) or 'none'})",
            hint="name it with --resource-group and --cluster-name")

    def set_network_profile(self, cluster: ManagedCluster, changes: dict[str, str],
                            timeout: float, log: Callable[[str], None]) -> ManagedCluster:
        """PUT the cluster with ``changes`` in its network profile; wait for the operation."""
        from azure.core import MatchConditions
        from azure.mgmt.containerservice.models import ContainerServiceNetworkProfile

        model = cluster.model
        if model.network_profile is None:
            model.network_profile = ContainerServiceNetworkProfile()
        for key, value in changes.items():
            model.network_profile[key] = value  # wire names (networkPolicy): the hybrid models
        started = time.monotonic()
        what = f"updating managed cluster {cluster.resource_group}/{cluster.name}"
        with _translated(what):
            poller = self._client.managed_clusters.begin_create_or_update(
                cluster.resource_group, cluster.name, model,
                etag=cluster.etag, match_condition=MatchConditions.IfNotModified)
            log(f"PUT {cluster.path} accepted; waiting for the operation (AKS reimages the "
                "node pools)")
            done = poller.result(timeout=timeout)
            if not poller.done():
                raise OperationFailed(
                    f"{what}: the operation was still running after {timeout:.0f} s",
                    hint="rerun netiso enable later (it resumes from the cluster's state), or "
                         "raise --timeout")
        view = _view(done, self.subscription)
        if (view.provisioning_state or "").lower() != "succeeded":
            raise OperationFailed(f"{what}: provisioningState {view.provisioning_state} after "
                                  "the operation ended", hint="see az aks show")
        log(f"operation Succeeded after {time.monotonic() - started:.0f} s")
        return view


def network_call(cluster: ManagedCluster, changes: dict[str, str]) -> dict[str, Any]:
    """The PUT as it will be sent, for the plan and ``--dry-run`` (pure)."""
    network = dict(cluster.network)
    network.update(changes)
    return {"method": "PUT", "url": cluster.path,
            "sdk": "managed_clusters.begin_create_or_update",
            "ifMatch": cluster.etag,
            "body": {"location": cluster.location,
                     "properties": {"networkProfile": network,
                                    "agentPoolProfiles": [p.to_json() for p in cluster.pools],
                                    "...": "every other property as GET returned it"}}}
