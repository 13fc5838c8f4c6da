"""`netiso verify`."""

from __future__ import annotations

import click

from netiso.errors import NotImplementedYet


def command() -> click.Command:
    @click.command("verify")
    def verify() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("verify")

    return verify
