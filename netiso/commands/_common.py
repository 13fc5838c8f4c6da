"""Helpers every command module shares."""

from __future__ import annotations

from typing import Any

import click

from netiso.console import GlobalOptions, Reporter


def reporter(ctx: click.Context) -> Reporter:
    """The reporter the global callback stored (a default one when a test calls directly)."""
    obj = ctx.find_root().obj
    if isinstance(obj, Reporter):
        return obj
    return Reporter(GlobalOptions())


def connected_to(kube: Any) -> str:
    """"context NAME at URL" for stderr; in-cluster credentials have no context name."""
    where = f"context {kube.context}" if kube.context else "in-cluster credentials"
    return f"{where} at {kube.server}"
