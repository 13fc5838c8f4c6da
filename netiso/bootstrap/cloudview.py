"""The cloud's view beside the cluster's: ``netiso detect --cloud auto|on|off``.

Design decisions:

* **Offline and fast unless asked.** ``detect`` reads the cluster only, unless the cloud is
  wanted and reachable in principle. The rule (``--cloud``):

  - ``auto`` (the default) asks the cloud only when the cluster-side evidence named a provider
    *and* that provider's standard credential settings are present
    (:meth:`~netiso.providers.base.CloudProvider.credentials_at_hand`: environment variables or
    the SDK's own credential files, checked without importing the SDK or touching the network).
    A cloud read that fails is a warning and ``cloud.status: unavailable`` with the reason:
    ``detect`` still exits 0 with the cluster's view.
  - ``on`` always asks (the SDK's whole credential chain, instance metadata included) and a
    failure is the command's failure with its own exit code (1 for a refused or unreachable
    cloud call, 4 when the cluster cannot be named or no provider was detected).
  - ``off`` never asks.

  Generic clusters have no cloud view. The SDK is imported only inside the provider's
  ``cloud_view`` (its ``cloud.py``), so ``detect --help``, ``--cloud off`` and an ``auto`` run
  without credentials load no cloud SDK.
* **The same reads as enable.** Each provider's ``cloud_view`` reuses the reads its
  ``plan_enable`` makes (DescribeCluster/DescribeAddon, clusters.get, the managed cluster's GET):
  no second SDK path to keep in step.
* **Disagreements are findings, not errors.** :func:`compare` is pure: one line per place where
  the two views differ (the engine the cloud runs vs the engines' DaemonSets, an operation the
  cloud shows in flight, the Kubernetes minor version, the identity). A disagreement is often a
  moment (an operation in flight), sometimes a fact the cloud cannot know (a self-installed
  Calico); each line says which is likelier.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from netiso.errors import NetisoError, PreconditionFailed
from netiso.profiles import Provider

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from netiso.bootstrap.detect import Detection
    from netiso.kube import Kube
    from netiso.providers.base import CloudView, ClusterFacts


class CloudMode(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class CloudStatus(StrEnum):
    READ = "read"  # the cloud answered: ``view`` holds what it said
    UNAVAILABLE = "unavailable"  # asked, and the read failed (auto mode only; on mode fails)
    SKIPPED = "skipped"  # not asked: generic, or no credentials at hand (auto)
    OFF = "off"  # --cloud off


#: The cloud's word for a cluster with no operation running, per provider.
STEADY = {Provider.EKS: "ACTIVE", Provider.GKE: "RUNNING", Provider.AKS: "Succeeded"}

#: Identity keys both views name the same way (``id`` and zones are the cloud's alone).
_COMPARED = ("clusterName", "project", "location", "region", "account", "subscription",
             "resourceGroup")


@dataclass(frozen=True)
class CloudSide:
    """The ``cloud`` member of ``detect``'s result."""

    status: CloudStatus
    reason: str
    provider: Provider | None = None
    view: CloudView | None = None
    findings: tuple[str, ...] = ()

    @property
    def agree(self) -> bool | None:
        return None if self.view is None else not self.findings

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason,
                "provider": self.provider.value if self.provider else None,
                "view": self.view.to_json() if self.view else None,
                "agree": self.agree, "findings": list(self.findings)}


def _minor(version: str | None) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", (version or "").strip())
    return (int(m[1]), int(m[2])) if m else None


def _setting_text(view: CloudView) -> str:
    def flat(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in flat(f"{prefix}{k}.", v)]
        return [f"{prefix.rstrip('.')}={show(value)}"]

    return ", ".join(flat("", dict(view.setting)))


def show(value: Any) -> str:
    """A setting's value as the cloud's JSON spells it (true, not Python's True; - for null)."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def compare(detection: Detection, view: CloudView) -> list[str]:
    """Pure: one line per disagreement between the cluster's evidence and the cloud's view."""
    out: list[str] = []
    engines = detection.enforcement.engines
    steady = STEADY.get(view.provider)
    busy = bool(view.state and steady and view.state.lower() != steady.lower())
    if busy:
        out.append(f"the cloud says the cluster is {view.state}, not {steady}: an operation is "
                   "in flight")
    said = f"the cloud's setting ({_setting_text(view)})"
    if view.engine is not None:
        mine = [e for e in engines if e.engine == view.engine]
        if not mine:
            out.append(f"{said} runs {view.engine}, but no {view.engine} DaemonSet is in the "
                       "cluster: an operation in flight or the engine not yet scheduled")
        elif not any(e.ready > 0 and e.ready >= e.desired for e in mine):
            ds = mine[0]
            out.append(f"{said} runs {view.engine}; its DaemonSet {ds.daemonset} is ready "
                       f"{ds.ready}/{ds.desired}: an operation in flight or the engine not yet "
                       "scheduled")
    for engine in engines:
        if engine.engine == view.engine or engine.ready == 0:
            continue
        if view.engine is None:
            out.append(f"the cluster runs {engine.engine} ({engine.daemonset}, ready "
                       f"{engine.ready}/{engine.desired}), while {said} runs no engine: "
                       "installed in the cluster itself (e.g. a self-installed Calico), or a "
                       "removal in flight")
        else:
            out.append(f"the cluster also runs {engine.engine} ({engine.daemonset}), which the "
                       f"cloud does not know: installed in the cluster itself; two engines "
                       "may program the same pods")
    cluster_minor, cloud_minor = _minor(detection.server_version), _minor(view.version)
    if cluster_minor and cloud_minor and cluster_minor != cloud_minor:
        out.append(f"Kubernetes: the API server says {detection.server_version}, the cloud says "
                   f"{view.version}: an upgrade in flight, or not the same cluster")
    for key in _COMPARED:
        mine_value, cloud_value = detection.identity.get(key), view.identity.get(key)
        if mine_value and cloud_value and mine_value.lower() != cloud_value.lower():
            out.append(f"identity: the cluster shows {key}={mine_value}, the cloud says "
                       f"{cloud_value}: the kubeconfig may not point at the cluster the cloud "
                       "read")
    return out


def cloud_side(detection: Detection, facts: ClusterFacts, kube: Kube, mode: CloudMode,
               warn: Callable[[str], None] = lambda _line: None,
               identity: Mapping[str, str] | None = None) -> CloudSide:
    """Ask the detected provider's cloud (by the rule in this module's docstring).

    ``identity`` holds the identity flags (``--cluster-name``, ``--region``, ...): they name
    the cloud cluster where the cluster cannot (a plain kubeconfig says nothing of an EKS
    cluster's name) and win over what it shows, as for enable.
    """
    from netiso.providers import get
    from netiso.providers.base import EnableContext, EnableRequest

    provider = detection.provider
    if mode is CloudMode.OFF:
        return CloudSide(CloudStatus.OFF, "--cloud off")
    if provider is Provider.GENERIC:
        if mode is CloudMode.ON:
            raise PreconditionFailed("--cloud on: no cloud provider detected, so no cloud to ask",
                                     hint="detect's evidence names none; see the table")
        return CloudSide(CloudStatus.SKIPPED, "no cloud provider detected")
    seam = get(provider)
    if mode is CloudMode.AUTO and not seam.credentials_at_hand():
        return CloudSide(CloudStatus.SKIPPED,
                         f"no {provider.value} credential settings in the environment; "
                         "--cloud on asks anyway", provider)
    given = {k: v for k, v in (identity or {}).items() if v}
    ctx = EnableContext(facts=facts, state=detection.enforcement,
                        identity={**detection.identity, **given},
                        request=EnableRequest(identity=given), kube=kube)
    try:
        view = seam.cloud_view(ctx)
    except NetisoError as exc:
        if mode is CloudMode.ON:
            raise
        warn(f"the {provider.value} cloud's view is unavailable: {exc.message}")
        return CloudSide(CloudStatus.UNAVAILABLE, exc.message, provider)
    if view is None:
        return CloudSide(CloudStatus.SKIPPED, f"{provider.value} has no cloud API", provider)
    findings = tuple(compare(detection, view))
    reason = ("the cloud and the cluster agree" if not findings else
              f"{len(findings)} disagreement{'s' if len(findings) != 1 else ''}")
    return CloudSide(CloudStatus.READ, reason, provider, view, findings)
