"""`netiso uninstall`."""

from __future__ import annotations

import typer

from netiso.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command("uninstall")
    def uninstall() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("uninstall")
