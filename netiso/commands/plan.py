"""`netiso plan`."""

from __future__ import annotations

import click

from netiso.errors import NotImplementedYet


def command() -> click.Command:
    @click.command("plan")
    def plan() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("plan")

    return plan
