"""`netiso detect`: which provider the cluster runs on, what enforces policies, and why. Read-only.

Result: a table, or the ``Detection`` JSON/YAML document (schema:
``netiso/manifests/schemas/detect.schema.json``). Exit 0 whenever the cluster could be read,
whatever it shows; reads the identity may not make (nodes, DaemonSets) are named in the result.
``--cloud auto|on|off`` adds the cloud API's view beside the cluster's (the rule is in
``netiso.bootstrap.cloudview``): in ``auto`` a cloud that cannot be read is a warning, never a
failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from netiso.commands._common import reporter
from netiso.commands._options import IDENTITY

if TYPE_CHECKING:
    from rich.console import Console


_NONE = (" (no DaemonSet of calico-node, cilium, anetd, azure-npm, aws-node's policy agent or "
         "kube-router)")


def _table(data: dict[str, Any]) -> Any:
    def draw(console: Console) -> None:
        from netiso.commands.apply import aligned

        ident = ", ".join(f"{k}={v}" for k, v in data["identity"].items()) or "-"
        version = data["kubernetesVersion"]
        kubelets = ", ".join(version["kubelets"]) or "-"
        enforcement = data["enforcement"]
        engines = ", ".join(f"{e['engine']} ({e['daemonset']}, ready {e['ready']}/"
                            f"{e['desired']})" for e in enforcement["engines"])
        lines = [
            aligned(["provider", data["provider"]], [
                ["reason", data["reason"]],
                ["context", f"{data['context'] or '-'} at {data['server'] or '-'}"],
                ["identity", ident],
                ["kubernetes", f"server {version['server'] or '-'}, kubelets {kubelets}"],
                ["enforcement", enforcement["status"] + (f": {engines}" if engines else _NONE)],
            ]),
            "",
        ]
        rows = [[s["strength"], s["provider"] or "-", s["source"], s["said"], s["meaning"]]
                for s in data["evidence"]]
        if rows:
            lines.append(aligned(["STRENGTH", "PROVIDER", "SOURCE", "SAID", "MEANING"], rows))
        else:
            lines.append("no evidence")
        lines += [f"unreadable: {u}" for u in data["unreadable"]]
        lines += ["", *_cloud_lines(data["cloud"])]
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    return draw


def _cloud_lines(cloud: dict[str, Any]) -> list[str]:
    from netiso.bootstrap.cloudview import show
    from netiso.commands.apply import aligned

    view = cloud["view"]
    if view is None:
        return [f"cloud: {cloud['status']} ({cloud['reason']})"]

    def flat(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in flat(f"{prefix}{k}.", v)]
        return [f"{prefix.rstrip('.')}={show(value)}"]

    ident = ", ".join(f"{k}={v}" for k, v in view["identity"].items() if k != "id")
    lines = [aligned([f"cloud ({cloud['provider']} API)", cloud["status"]], [
        ["id", view["identity"].get("id") or "-"],
        ["identity", ident or "-"],
        ["kubernetes", view["kubernetesVersion"] or "-"],
        ["state", view["state"] or "-"],
        ["setting", ", ".join(flat("", view["setting"])) or "-"],
        ["engine", view["engine"] or "none"],
    ])]
    if cloud["findings"]:
        lines += [f"disagrees: {f}" for f in cloud["findings"]]
    else:
        lines.append("the cloud and the cluster agree")
    return lines


def command() -> click.Command:
    @click.command("detect")
    @click.option("--cloud", "cloud_mode", type=click.Choice(["auto", "on", "off"]),
                  default="auto", show_default=True,
                  help="Add the cloud API's view: auto asks it when a provider was detected and "
                       "its SDK's standard credential settings are present (a failure is a "
                       "warning); on always asks (a failure fails detect); off never asks.")
    @click.pass_context
    def detect(ctx: click.Context, /, cloud_mode: str, **flags: Any) -> None:
        """Detect the provider, Kubernetes version and policy engine from the cluster itself
        (and, with credentials at hand, what the cloud's API says)."""
        from netiso.bootstrap.cloudview import CloudMode, CloudStatus, cloud_side
        from netiso.bootstrap.detect import decide, read_facts
        from netiso.console import Status
        from netiso.kube import connect, read_cluster_ref

        rep = reporter(ctx)
        opts = rep.options
        with connect(opts.kubeconfig, opts.context) as kube:
            rep.info(f"context {kube.context} at {kube.server}")
            facts = read_facts(kube, read_cluster_ref(opts.kubeconfig, opts.context))
            found = decide(facts)
            for line in found.unreadable:
                rep.warn(f"could not read {line}")
            rep.status(Status.DETECTED, f"provider {found.provider.value}: {found.reason}")
            given = {key: str(flags[name]) for name, key, _, _ in IDENTITY if flags.get(name)}
            side = cloud_side(found, facts, kube, CloudMode(cloud_mode), warn=rep.warn,
                              identity=given)
        if side.status is CloudStatus.READ:
            rep.info(f"{found.provider.value} cloud: {side.reason}")
        data = {**found.to_json(), "cloud": side.to_json()}
        rep.result(data, _table(data))

    for name, _key, flag, help_text in IDENTITY:
        detect = click.option(flag, name, default=None, metavar="NAME",
                              help=f"{help_text} For the cloud's view.")(detect)
    return detect
