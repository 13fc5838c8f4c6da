"""`netiso detect`."""

from __future__ import annotations

import click

from netiso.errors import NotImplementedYet


def command() -> click.Command:
    @click.command("detect")
    def detect() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("detect")

    return detect
