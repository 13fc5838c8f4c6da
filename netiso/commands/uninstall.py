"""`netiso uninstall`: delete everything netiso created (and nothing else).

Result: a table, or the ``UninstallResult`` JSON/YAML document documented in the README. Exit 1
(or the first error's own code) when any object netiso found was not deleted; the result is
printed first, naming each object's outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from netiso.commands._common import connected_to, reporter

if TYPE_CHECKING:
    from rich.console import Console


def _table(data: dict[str, Any]) -> Any:
    def draw(console: Console) -> None:
        from netiso.commands.apply import aligned

        verb = "would delete" if data["dryRun"] else "deleted"
        rows = [[t["kind"], t["namespace"] or "-", t["name"], verb] for t in data["deleted"]]
        rows += [[t["kind"], t["namespace"] or "-", t["name"], "failed: " + t["error"]]
                 for t in data["failed"]]
        rows += [[t["kind"], t["namespace"] or "-", t["name"],
                  "unknown (connection lost): " + t["readBack"]] for t in data["unknown"]]
        rows += [[t["kind"], t["namespace"] or "-", t["name"], "not attempted"]
                 for t in data["notAttempted"]]
        rows += [[t["kind"], t["namespace"] or "-", t["name"], "skipped: " + t["reason"]]
                 for t in data["skipped"]]
        out = [aligned(["KIND", "NAMESPACE", "NAME", "ACTION"], rows)] if rows else []
        done = "would be deleted" if data["dryRun"] else "deleted"
        line = f"{len(data['deleted'])} objects {done}; {len(data['skipped'])} skipped"
        s = data["summary"]
        if s["failed"] or s["unknown"] or s["notAttempted"]:
            line += (f"; {s['failed']} failed; {s['unknown']} unknown; "
                     f"{s['notAttempted']} not attempted")
        out.append(line)
        console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)

    return draw


def register(app: typer.Typer) -> None:
    @app.command("uninstall")
    def uninstall(
        ctx: typer.Context,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
        ] = False,
        namespace: Annotated[
            list[str] | None,
            typer.Option("--namespace", "-n", metavar="NAME",
                         help="Only in this namespace (repeatable); default: everywhere."),
        ] = None,
        selector: Annotated[
            str | None,
            typer.Option("--selector", "-l", metavar="SELECTOR",
                         help="Only in namespaces with these labels (kubectl syntax)."),
        ] = None,
    ) -> None:
        """Remove every object netiso created: bundle policies and verification leftovers."""
        from netiso.config import load_values
        from netiso.kube import connect
        from netiso.ops.targets import uninstall_scope
        from netiso.ops.uninstall import incomplete_error
        from netiso.ops.uninstall import uninstall as run_uninstall

        rep = reporter(ctx)
        # Validated like apply's flags; force: uninstall may clean any namespace.
        vals = load_values(None, namespaces=namespace or (), selector=selector, force=True)
        with connect(rep.options.kubeconfig, rep.options.context) as kube:
            rep.info(connected_to(kube))
            scope = None
            if vals.namespaces.include or vals.namespaces.selector is not None:
                scope = uninstall_scope(vals, kube.list_namespaces())
            report = run_uninstall(kube, dry_run=dry_run, scope=scope)
        data = report.to_json()
        rep.result(data, _table(data))
        if not report.complete:
            raise incomplete_error(report)
