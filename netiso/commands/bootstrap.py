"""`netiso bootstrap`."""

from __future__ import annotations

import typer

from netiso.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command("bootstrap")
    def bootstrap() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("bootstrap")
