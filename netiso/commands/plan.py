"""`netiso plan`: what `netiso bootstrap` would do here, step by step, and what it would cut.

Thin: load the values, connect, call ``netiso.bootstrap.plan.read_plan``, print the table or
the ``PlanResult`` document (schema ``netiso/manifests/schemas/plan.schema.json``). Read-only:
LISTs of Nodes, DaemonSets, Namespaces, Pods, NetworkPolicies and EndpointSlices (the default
role's verbs) and the provider's read-only ``plan_enable``. Exit 0 whenever the plan was
computed, also when it says bootstrap would stop at enable (``enable.status`` refused or
not-implemented): the plan is the answer, not the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netiso.commands import _options
from netiso.commands._common import connected_to, reporter
from netiso.commands.enable import add_provider_flags, provider_flags

if TYPE_CHECKING:
    from rich.console import Console


def _sides(cut_by: dict[str, list[str]]) -> str:
    parts = [f"{side}: {', '.join(pols)}" for side, pols in cut_by.items() if pols]
    return "; ".join(parts)


def _sources(cut: dict[str, Any], shown: int = 5) -> str:
    """The group's sources for a table cell: whole namespaces as ``ns/*``, at most ``shown``."""
    names = [f"{ns}/*" for ns in cut["fromNamespaces"]] + list(cut["from"])
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f" (+{len(names) - shown} more)"
    return text + (f" ({cut['count']} pods)" if cut["fromNamespaces"] else "")


def table(data: dict[str, Any]) -> Any:
    from netiso.commands.apply import aligned

    def draw(console: Console) -> None:
        out = [aligned(["STEP", "STATE", "WHAT"],
                       [[s["name"], s["state"], s["detail"]] for s in data["steps"]])]
        enable = data["enable"]
        if enable["steps"]:
            out.append("")
            out.append(aligned(["ENABLE STEP", "DONE", "RECREATES NODES", "WHAT"], [
                [s["name"], "yes" if s["done"] else "no", "yes" if s["disruptive"] else "no",
                 s["description"]] for s in enable["steps"]]))
        if enable["disruption"]:
            out.append(f"disruption: {enable['disruption']}")
        rows = [[ns["namespace"], f"{o['kind']}/{o['name']}", o["action"]]
                for ns in data["namespaces"] for o in ns["objects"]]
        rows += [[ns["namespace"], f"NetworkPolicy/{name}", "prune"]
                 for ns in data["namespaces"] for name in ns["prune"]]
        if rows:
            out.append("")
            out.append(aligned(["NAMESPACE", "OBJECT", "ACTION"], rows))
        imp = data["impact"]
        s = imp["summary"]
        out.append("")
        out.append(f"impact: {s['isolatedPods']} running pod(s) become isolated; {s['cut']} of "
                   f"{s['allowedBefore']} allowed flows in use would be cut "
                   f"({s['flowsInUse']} flows in use)")
        if imp["isolated"]:
            out.append(aligned(["ISOLATED POD", "INGRESS BY", "EGRESS BY"], [
                [p["pod"], ", ".join(p["ingress"]) or "-", ", ".join(p["egress"]) or "-"]
                for p in imp["isolated"]]))
        if imp["cut"]:
            out.append(aligned(["TO", "PORT", "FROM", "VIA", "CUT BY"], [
                [c["to"], f"{c['protocol']}/{c['port']}", _sources(c), ", ".join(c["via"]),
                 _sides(c["cutBy"])] for c in imp["cut"]]))
        console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)

    return draw


def command() -> click.Command:
    @click.command("plan")
    @_options.values
    @_options.provider(help=_options.ENABLE_PROVIDER_HELP)
    @_options.namespace()
    @_options.selector()
    @_options.force
    @_options.engine
    @click.pass_context
    def plan(ctx: click.Context, /, values: Path | None, provider: str,
             namespace: tuple[str, ...], selector: str | None, force: bool,
             engine: str | None, **flags: Any) -> None:
        """Show what bootstrap would do, step by step, and the flows the bundle would cut.

        Read-only. Exit 0 with the plan (also when it says bootstrap would stop at enable).
        """
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bootstrap.plan import read_plan
        from netiso.config import Values, load_values
        from netiso.kube import connect, read_cluster_ref
        from netiso.profiles import Provider
        from netiso.providers.base import EnableRequest

        rep = reporter(ctx)
        requested = parse_provider_option(provider)

        def load(name: str) -> Values:
            return load_values(values, provider=name, namespaces=namespace or (),
                               selector=selector, force=force)

        load((requested or Provider.GENERIC).value)  # bad input fails before connecting
        identity, extra = provider_flags(flags)
        request = EnableRequest(engine=engine, identity=identity, options=extra, dry_run=True,
                                consent=rep.options.yes)
        with connect(rep.options.kubeconfig, rep.options.context) as kube:
            rep.info(connected_to(kube))
            result = read_plan(kube, read_cluster_ref(rep.options.kubeconfig,
                                                      rep.options.context),
                               requested, request, load, force=force, log=rep.info)
        if result.enable.message:
            rep.warn(f"bootstrap would stop at enable: {result.enable.message}")
        for note in result.notes:
            rep.info(note)
        data = result.to_json()
        rep.result(data, table(data))

    return add_provider_flags(plan)
