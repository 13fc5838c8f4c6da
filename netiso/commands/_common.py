"""Helpers every command module shares."""

from __future__ import annotations

import click

from netiso.console import GlobalOptions, Reporter


def reporter(ctx: click.Context) -> Reporter:
    """The reporter the global callback stored (a default one when a test calls directly)."""
    obj = ctx.find_root().obj
    if isinstance(obj, Reporter):
        return obj
    return Reporter(GlobalOptions())
