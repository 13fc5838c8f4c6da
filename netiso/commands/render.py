"""`netiso render`: print the baseline bundle as YAML for GitOps tools, with no cluster.

Rendering is offline by design: the output must be reproducible from the command line and the
values file alone, so it cannot depend on which namespaces a cluster happens to have. The one
exception is asked for explicitly: ``--provider auto`` reads the cluster to pick the provider's
defaults (the default stays ``generic``, so a plain ``render`` never needs a cluster). Hence the
target namespaces must be named (``--namespace`` or ``namespaces.include``); a label selector,
which only a cluster can evaluate, is refused with a pointer to ``--namespace``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netiso.commands._common import reporter, values_for_cluster
from netiso.console import OutputFormat

# The bundle's options, as the user spells them: none of them changes the RBAC objects, so
# passing one with --rbac is a mistake worth saying rather than ignoring.
_BUNDLE_OPTIONS = (
    ("provider", "--provider"),
    ("values", "--values"),
    ("namespace", "--namespace"),
    ("force", "--force"),
)


def _render_rbac(ctx: typer.Context) -> None:
    from importlib.resources import files

    from typer._click.core import ParameterSource

    from netiso.errors import UsageError

    given = [
        flag
        for param, flag in _BUNDLE_OPTIONS
        if ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise UsageError(
            f"--rbac cannot be combined with {', '.join(given)}; "
            "allowed: --rbac alone, with -o json for one JSON List",
            hint="the RBAC objects do not depend on the bundle's options",
        )
    rep = reporter(ctx)
    text = files("netiso.manifests").joinpath("rbac.yaml").read_text("utf-8")
    if rep.options.output is OutputFormat.JSON:
        import yaml

        items = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        rep.result({"apiVersion": "v1", "kind": "List", "items": items})
    else:
        # The file itself, comments included: they say which command needs which rule.
        rep.write(text)


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render(
        ctx: typer.Context,
        provider: Annotated[
            str,
            typer.Option(
                "--provider",
                "-p",
                help="Provider defaults to use: eks, gke, aks or generic; auto reads the "
                "cluster to detect it (render is otherwise offline).",
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
            _render_rbac(ctx)
            return
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bundle import bundle_notes, bundle_warnings, render_bundle, to_yaml
        from netiso.config import Values, load_values
        from netiso.errors import UsageError
        from netiso.profiles import Provider

        rep = reporter(ctx)
        requested = parse_provider_option(provider)

        def load(name: str) -> Values:
            return load_values(values, provider=name, namespaces=namespace or (), force=force)

        vals = load((requested or Provider.GENERIC).value)
        if requested is None:
            # Only when asked: render stays reproducible from the command line otherwise.
            from netiso.kube import connect

            with connect(rep.options.kubeconfig, rep.options.context) as kube:
                vals = values_for_cluster(rep, kube, None, force=force, load=load)
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
