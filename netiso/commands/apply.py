"""`netiso apply`: render the bundle for the cluster's target namespaces and server-side apply it.

Targets are evaluated against the live namespace list (so ``--selector`` works here, unlike
``render``). Output: progress and warnings on stderr, one result on stdout (a table, or the
``ApplyResult`` JSON/YAML document documented in the README). Exit 1 when any namespace was not
applied, naming which were and were not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netiso.commands._common import connected_to, reporter, values_for_cluster

if TYPE_CHECKING:
    from rich.console import Console


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell. Not a rich Table on purpose: a table shrinks and
    ellipsises cells to the terminal width (80 columns in a pipe), and namespace and policy
    names are exactly what people grep for."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _namespaces(n: int) -> str:
    return f"{n} namespace" if n == 1 else f"{n} namespaces"


def _table(data: dict[str, Any]) -> Any:
    def draw(console: Console) -> None:
        dry = data["dryRun"]
        out: list[str] = []
        rows: list[list[str]] = []
        if dry:
            diffs: list[str] = []
            for ns in data["namespaces"]:
                for obj in ns["objects"]:
                    rows.append([ns["namespace"], f"{obj['kind']}/{obj['name']}", obj["action"]])
                    if obj.get("diff") and obj["action"] == "update":
                        diffs.append(obj["diff"].rstrip("\n"))
            if rows:
                out.append(aligned(["NAMESPACE", "OBJECT", "ACTION"], rows))
            out.extend(diffs)
        else:
            for ns in data["namespaces"]:
                counts = {a: 0 for a in ("create", "update", "unchanged", "prune", "unknown")}
                for obj in ns["objects"]:
                    counts[obj["action"]] += 1
                rows.append([ns["namespace"], ns["state"], str(counts["create"]),
                             str(counts["update"]), str(counts["unchanged"]),
                             str(counts["prune"])])
            if rows:
                out.append(aligned(["NAMESPACE", "STATE", "CREATED", "UPDATED", "UNCHANGED",
                                    "PRUNED"], rows))
        s = data["summary"]
        would = "would change" if dry else "changed"
        line = (f"{_namespaces(s['namespaces'])}: {s['created']} created, {s['updated']} "
                f"updated, {s['unchanged']} unchanged, {s['pruned']} pruned; {s['changed']} "
                f"{would}")
        if not dry:
            for key, word in (("partial", "partly applied"), ("failed", "failed"),
                              ("unknown", "outcome unknown")):
                if s[key]:
                    line += f"; {s[key]} {word}"
            line += f"; {s['notApplied']} not applied"
        out.append(line)
        console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)

    return draw


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(
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
                         help="Target namespaces by label (kubectl syntax, e.g. team=a)."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Allow targeting system/excluded namespaces, "
                                "and a --provider the cluster contradicts.")
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Show create/update/unchanged/prune per object "
                         "(server-side dry run); write nothing."),
        ] = False,
        prune: Annotated[
            bool,
            typer.Option("--prune/--no-prune", help="Delete netiso-managed policies the bundle "
                         "no longer contains, in target namespaces."),
        ] = True,
        force_conflicts: Annotated[
            bool,
            typer.Option("--force-conflicts", help="Take over fields another field manager "
                         "owns (server-side apply force)."),
        ] = False,
        concurrency: Annotated[
            int,
            typer.Option("--concurrency", min=1, max=64, help="Namespaces applied in parallel."),
        ] = 8,
    ) -> None:
        """Apply the baseline bundle with server-side apply (field manager netiso)."""
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bundle import bundle_notes, bundle_warnings, render_bundle
        from netiso.config import SkipReason, Values, load_values
        from netiso.console import Status
        from netiso.kube import connect
        from netiso.ops.apply import (
            LATER_NAMESPACES_NOTE,
            NamespaceState,
            apply_bundle,
            incomplete_error,
        )
        from netiso.ops.targets import select_targets
        from netiso.profiles import Provider

        rep = reporter(ctx)
        requested = parse_provider_option(provider)

        def load(name: str) -> Values:
            return load_values(values, provider=name, namespaces=namespace or (),
                               selector=selector, force=force)

        load((requested or Provider.GENERIC).value)  # bad input fails before connecting
        with connect(rep.options.kubeconfig, rep.options.context, workers=concurrency) as kube:
            rep.status(Status.INFO, connected_to(kube))
            vals = values_for_cluster(rep, kube, requested, force=force, load=load)
            targets, skipped = select_targets(kube, vals)
            by_reason: dict[str, list[str]] = {}
            for skip in skipped:
                if skip.reason is SkipReason.NOT_SELECTED:
                    rep.debug(f"namespace {skip.namespace}: {skip.detail}")
                elif skip.reason is SkipReason.OPTED_OUT:
                    # An explicit opt-out is said namespace by namespace.
                    rep.status(Status.SKIPPED, f"namespace {skip.namespace}: {skip.detail}")
                else:
                    by_reason.setdefault(skip.detail, []).append(skip.namespace)
            for detail, names in by_reason.items():
                rep.status(Status.SKIPPED, f"{_namespaces(len(names))}, {detail}: "
                           f"{', '.join(names)}")
            for note in bundle_notes(vals):
                rep.info(note)
            for warning in bundle_warnings(vals):
                rep.warn(warning)
            if not targets:
                rep.warn("no target namespaces: nothing to apply")
            desired = render_bundle(vals, targets)
            rep.info(f"{'dry run: ' if dry_run else ''}{len(desired)} objects for "
                     f"{_namespaces(len(targets))}")

            def before_write(first: list[Any]) -> None:
                for ns in first:
                    if ns.isolated_pods:
                        pods = ", ".join(ns.isolated_pods[:20])
                        more = len(ns.isolated_pods) - 20
                        rep.warn(
                            f"namespace {ns.namespace}: first apply; {len(ns.isolated_pods)} "
                            f"running pod(s) become isolated (ingress only from the same "
                            f"namespace and the allowed apps/namespaces): {pods}"
                            + (f" (+{more} more)" if more > 0 else "")
                        )

            def progress(ns: Any) -> None:
                if ns.state is NamespaceState.UNKNOWN:
                    # The connection dropped with a write in flight: read back after the run.
                    rep.warn(f"namespace {ns.namespace}: outcome unknown: {ns.error}")
                elif ns.error:
                    rep.status(Status.FAILED, f"namespace {ns.namespace}: {ns.error}")
                else:
                    rep.debug(f"namespace {ns.namespace}: {ns.state.value}")

            report, error = apply_bundle(
                kube, desired, targets, skipped, dry_run=dry_run, prune=prune,
                force_conflicts=force_conflicts, workers=concurrency,
                on_namespace=progress, before_write=before_write,
            )
        data = report.to_json()
        rep.result(data, _table(data))
        rep.info(LATER_NAMESPACES_NOTE)
        if error is not None:
            raise incomplete_error(report, error)
