"""`netiso render`: print the baseline bundle as YAML for GitOps tools, with no cluster.

Rendering is offline by design: the output must be reproducible from the command line and the
values file alone, so it cannot depend on which namespaces a cluster happens to have. Hence the
target namespaces must be named (``--namespace`` or ``namespaces.include``); a label selector,
which only a cluster can evaluate, is refused with a pointer to ``--namespace``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netiso.commands._common import reporter
from netiso.console import OutputFormat


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render(
        ctx: typer.Context,
        provider: Annotated[
            str,
            typer.Option(
                "--provider",
                "-p",
                help="Provider defaults to use: eks, gke, aks or generic.",
                metavar="PROVIDER",
            ),
        ] = "generic",
        values: Annotated[
            Path | None,
            typer.Option("--values", "-f", help="Values file (YAML).", metavar="FILE"),
        ] = None,
        namespace: Annotated[
            list[str] | None,
            typer.Option(
                "--namespace",
                "-n",
                help="Target namespace (repeatable); replaces namespaces.include.",
                metavar="NAME",
            ),
        ] = None,
        force: Annotated[
            bool,
            typer.Option("--force", help="Allow targeting system/excluded namespaces.", metavar=""),
        ] = False,
        rbac: Annotated[
            bool,
            typer.Option(
                "--rbac",
                help="Print the ClusterRole netiso needs (and an example binding) instead of "
                "the bundle.",
                metavar="",
            ),
        ] = False,
    ) -> None:
        """Print the baseline bundle as multi-document YAML (offline, deterministic)."""
        if rbac:
            from importlib.resources import files

            reporter(ctx).write(files("netiso.manifests").joinpath("rbac.yaml").read_text())
            return
        from netiso.bundle import bundle_notes, bundle_warnings, render_bundle, to_yaml
        from netiso.config import load_values
        from netiso.errors import UsageError

        rep = reporter(ctx)
        vals = load_values(values, provider=provider, namespaces=namespace or (), force=force)
        if vals.namespaces.selector is not None:
            raise UsageError(
                f"render works offline and cannot evaluate the label selector "
                f"{vals.namespaces.selector.text!r}",
                hint="name the namespaces with --namespace",
            )
        targets = vals.namespaces.include
        if not targets:
            raise UsageError(
                "render needs the target namespaces: it works offline, without a cluster",
                hint="pass --namespace NAME (repeatable) or set namespaces.include in --values",
            )
        for note in bundle_notes(vals):
            rep.info(note)
        for warning in bundle_warnings(vals):
            rep.warn(warning)
        objects = render_bundle(vals, targets)
        rep.debug(f"rendered {len(objects)} objects for {len(targets)} namespace(s)")
        if rep.options.output is OutputFormat.JSON:
            # One document for scripts: a Kubernetes List, accepted by `kubectl apply -f -`.
            rep.result({"apiVersion": "v1", "kind": "List", "items": objects})
        else:
            rep.write(to_yaml(objects))
