"""`netiso status`: per target namespace, is the bundle in place and unchanged? Read-only.

Result: a table, or the ``StatusResult`` JSON/YAML document documented in the README. Exit 0
whatever the state (status reports; `netiso apply` acts), non-zero only when reading failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netiso.commands._common import connected_to, reporter, values_for_cluster

if TYPE_CHECKING:
    from rich.console import Console


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(data: dict[str, Any]) -> Any:
    # Plain lines, not a rich Table: a table shrinks and ellipsises namespace names to the
    # terminal width (80 columns in a pipe), and these names are what people grep for.
    def draw(console: Console) -> None:
        lines: list[str] = []
        for ns in data["namespaces"]:
            ok = sum(1 for p in ns["policies"] if p["state"] == "in sync")
            lines.append(f"{ns['namespace']}: {ns['state']} "
                         f"({ok}/{len(ns['policies'])} bundle policies in sync, "
                         f"{_count(ns['pods'], 'pod')})")
            for p in ns["policies"]:
                if p["state"] != "in sync":
                    why = f": {'; '.join(p['reasons'])}" if p["reasons"] else ""
                    lines.append(f"  {p['name']}: {p['state']}{why}")
            for f in ns["foreignPolicies"]:
                lines.append(f"  foreign policy {f['name']} ({_count(f['selectedPods'], 'pod')})"
                             + (f" by {', '.join(f['managers'])}" if f["managers"] else ""))
        s = data["summary"]
        lines.append(
            f"{_count(len(data['namespaces']), 'namespace')}: {s['inSync']} in sync, "
            f"{s['drifted']} "
            f"drifted, {s['missing']} missing; enforcement: {data['enforcement']}"
        )
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    return draw


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        ctx: typer.Context,
        values: Annotated[
            Path | None,
            typer.Option("--values", "-f", help="Values file (YAML).", metavar="FILE"),
        ] = None,
        provider: Annotated[
            str,
            typer.Option("--provider", "-p", metavar="PROVIDER", help="Provider defaults: "
                         "auto (detected from the cluster), eks, gke, aks or generic."),
        ] = "auto",
        namespace: Annotated[
            list[str] | None,
            typer.Option("--namespace", "-n", metavar="NAME",
                         help="Target namespace (repeatable); replaces namespaces.include."),
        ] = None,
        selector: Annotated[
            str | None,
            typer.Option("--selector", "-l", metavar="SELECTOR",
                         help="Target namespaces by label (kubectl syntax)."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Allow targeting system/excluded namespaces, "
                                "and a --provider the cluster contradicts.")
        ] = False,
    ) -> None:
        """Show, per target namespace, whether each bundle policy is in sync, drifted or missing."""
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bundle import render_bundle
        from netiso.config import SkipReason, Values, load_values
        from netiso.console import Status
        from netiso.kube import connect
        from netiso.ops.status import read_status
        from netiso.ops.targets import select_targets
        from netiso.profiles import Provider

        rep = reporter(ctx)
        requested = parse_provider_option(provider)

        def load(name: str) -> Values:
            return load_values(values, provider=name, namespaces=namespace or (),
                               selector=selector, force=force)

        load((requested or Provider.GENERIC).value)  # bad input fails before connecting
        with connect(rep.options.kubeconfig, rep.options.context) as kube:
            rep.info(connected_to(kube))
            vals = values_for_cluster(rep, kube, requested, force=force, load=load)
            targets, skipped = select_targets(kube, vals)
            for skip in skipped:
                if skip.reason is SkipReason.TERMINATING:
                    # Named or selected, yet absent from the result: say why.
                    rep.status(Status.SKIPPED, f"namespace {skip.namespace}: {skip.detail}")
                else:
                    rep.debug(f"namespace {skip.namespace}: skipped, {skip.detail}")
            report = read_status(kube, render_bundle(vals, targets), targets, skipped)
        data = report.to_json()
        rep.result(data, _table(data))
        rep.info("enforcement: unknown (whether the dataplane enforces policies is reported by "
                 "`netiso detect`, not by the policy objects)")
