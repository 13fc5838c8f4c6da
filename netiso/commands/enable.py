"""`netiso enable`."""

from __future__ import annotations

import click

from netiso.errors import NotImplementedYet


def command() -> click.Command:
    @click.command("enable")
    def enable() -> None:
        """Not implemented yet (exits 2)."""
        raise NotImplementedYet("enable")

    return enable
