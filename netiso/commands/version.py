"""`netiso version`."""

from __future__ import annotations

import platform

import typer

from netiso import __version__
from netiso.commands._common import reporter


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version(ctx: typer.Context) -> None:
        """Print netiso's version."""
        rep = reporter(ctx)
        data = {"version": __version__, "python": platform.python_version()}
        rep.result(data, lambda con: con.print(f"netiso {__version__}"))
