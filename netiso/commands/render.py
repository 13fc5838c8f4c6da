"""`netiso render`."""

from __future__ import annotations

import typer

from netiso.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("render")
