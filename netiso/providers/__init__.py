"""The provider registry: one module per provider, found by name, loaded on first use.

Design decisions:

* **Nothing heavy at import.** This package imports no provider module and no cloud SDK;
  :func:`get` imports ``netiso.providers.<name>`` when asked. Provider modules themselves keep
  their SDK imports inside the cloud-side calls (``plan_enable``/``enable``/``wait``), so reading
  evidence for ``netiso detect`` loads neither boto3, nor google.cloud, nor azure
  (``tests/unit/test_providers.py`` checks it in a fresh interpreter).
* **Every provider is asked.** Detection asks each registered provider for its evidence and
  lets the rule in ``netiso.bootstrap.detect`` decide; a provider never claims a cluster itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from netiso.profiles import Provider

if TYPE_CHECKING:
    from netiso.providers.base import CloudProvider

_MODULES: dict[Provider, str] = {
    Provider.EKS: "netiso.providers.eks",
    Provider.GKE: "netiso.providers.gke",
    Provider.AKS: "netiso.providers.aks",
    Provider.GENERIC: "netiso.providers.generic",
}


def get(provider: Provider) -> CloudProvider:
    """The provider's seam (its module is imported now, its cloud SDK only when used)."""
    found: CloudProvider = importlib.import_module(_MODULES[provider]).PROVIDER
    return found


def all_providers() -> list[CloudProvider]:
    """Every registered provider, clouds first, generic last."""
    return [get(p) for p in _MODULES]
