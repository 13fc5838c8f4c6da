"""Helpers every command module shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from netiso.console import GlobalOptions, Reporter

if TYPE_CHECKING:
    from netiso.config import Values
    from netiso.kube import Kube
    from netiso.profiles import Provider


def reporter(ctx: typer.Context) -> Reporter:
    """The reporter the global callback stored (a default one when a test calls directly)."""
    obj = ctx.find_root().obj
    if isinstance(obj, Reporter):
        return obj
    return Reporter(GlobalOptions())


def connected_to(kube: Any) -> str:
    """"context NAME at URL" for stderr; in-cluster credentials have no context name."""
    where = f"context {kube.context}" if kube.context else "in-cluster credentials"
    return f"{where} at {kube.server}"


def values_for_cluster(rep: Reporter, kube: Kube, requested: Provider | None, *, force: bool,
                       load: Callable[[str], Values]) -> Values:
    """The values for ``--provider auto|NAME`` on this cluster, the choice said on stderr.

    ``load(provider)`` builds the values for a provider (the values file and flags are already
    known to be valid: the caller loaded them once before connecting, to fail fast).
    """
    from netiso.bootstrap.detect import provider_for
    from netiso.console import Status
    from netiso.kube import read_cluster_ref

    ref = read_cluster_ref(rep.options.kubeconfig, rep.options.context)
    choice, _ = provider_for(kube, ref, requested, force=force)
    if choice.overridden:
        rep.warn(choice.message)
    else:
        rep.status(Status.DETECTED if requested is None else Status.INFO, choice.message)
    return load(choice.provider.value)
