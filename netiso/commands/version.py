"""`netiso version`: the tool's version, the bundle version it renders, and the Python running it.

JSON schema (stable): ``{"version": str, "bundleVersion": str, "python": str}``. The bundle
version is the ``netiso.io/bundle-version`` label value on every object netiso renders, so a
script can tell whether the policies in a cluster came from this release's bundle.
"""

from __future__ import annotations

import platform

import click

from netiso import __version__
from netiso.commands._common import reporter


def command() -> click.Command:
    @click.command("version")
    @click.pass_context
    def version(ctx: click.Context) -> None:
        """Print netiso's version and the bundle version it renders."""
        from netiso.bundle import BUNDLE_VERSION

        rep = reporter(ctx)
        data = {
            "version": __version__,
            "bundleVersion": BUNDLE_VERSION,
            "python": platform.python_version(),
        }
        rep.result(data, lambda con: con.print(f"netiso {__version__} (bundle {BUNDLE_VERSION})"))

    return version
