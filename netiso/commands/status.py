"""`netiso status`: per target namespace, is the bundle in place and unchanged? Read-only.

Result: a table, or the ``StatusResult`` JSON/YAML document documented in the README. Exit 0
whatever the state (status reports; `netiso apply` acts), non-zero only when reading failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netiso.commands._common import reporter

if TYPE_CHECKING:
    from rich.console import Console


def _table(data: dict[str, Any]) -> Any:
    def draw(console: Console) -> None:
        from rich.table import Table

        table = Table("NAMESPACE", "STATE", "POLICIES", "FOREIGN POLICIES", "DETAIL",
                      box=None, pad_edge=False)
        for ns in data["namespaces"]:
            ok = sum(1 for p in ns["policies"] if p["state"] == "in sync")
            detail = "; ".join(
                f"{p['name']}: {p['state']}" + (f" ({p['reasons'][0]})" if p["reasons"] else "")
                for p in ns["policies"] if p["state"] != "in sync"
            )
            foreign = ", ".join(f"{f['name']} ({f['selectedPods']} pods)"
                                for f in ns["foreignPolicies"]) or "-"
            table.add_row(ns["namespace"], ns["state"], f"{ok}/{len(ns['policies'])} in sync",
                          foreign, detail or "-")
        if table.row_count:
            console.print(table)
        s = data["summary"]
        console.print(
            f"{len(data['namespaces'])} namespaces: {s['in sync']} in sync, {s['drifted']} "
            f"drifted, {s['missing']} missing; enforcement: {data['enforcement']}",
            markup=False, highlight=False,
        )

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
            typer.Option("--provider", "-p", help="Provider defaults: eks, gke, aks or generic.",
                         metavar="PROVIDER"),
        ] = "generic",
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
            bool, typer.Option("--force", help="Allow targeting system/excluded namespaces.")
        ] = False,
    ) -> None:
        """Show, per target namespace, whether each bundle policy is in sync, drifted or missing."""
        from netiso.bootstrap.status import read_status
        from netiso.bundle import render_bundle
        from netiso.config import load_values, select_namespaces
        from netiso.kube import connect

        rep = reporter(ctx)
        vals = load_values(values, provider=provider, namespaces=namespace or (),
                           selector=selector, force=force)
        with connect(rep.options.kubeconfig, rep.options.context) as kube:
            rep.info(f"context {kube.context} at {kube.server}")
            targets, skipped = select_namespaces(vals, kube.namespace_labels())
            for name, reason in skipped:
                rep.debug(f"namespace {name}: skipped, {reason}")
            report = read_status(kube, render_bundle(vals, targets), targets, skipped)
        data = report.to_json()
        rep.result(data, _table(data))
        rep.info("enforcement: unknown (whether the dataplane enforces policies is reported by "
                 "`netiso detect`, not by the policy objects)")
