"""`netiso bootstrap`."""

from __future__ import annotations

import click

from netiso.errors import NotImplementedYet


def command() -> click.Command:
    @click.command("bootstrap")
    def bootstrap() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("bootstrap")

    return bootstrap
