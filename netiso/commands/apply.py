"""`netiso apply`."""

from __future__ import annotations

import typer

from netiso.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("apply")
