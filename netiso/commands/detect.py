"""`netiso detect`: which provider the cluster runs on, what enforces policies, and why. Read-only.

Result: a table, or the ``Detection`` JSON/YAML document (schema:
``netiso/manifests/schemas/detect.schema.json``). Exit 0 whenever the cluster could be read,
whatever it shows; reads the identity may not make (nodes, DaemonSets) are named in the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from netiso.commands._common import reporter

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
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    return draw


def register(app: typer.Typer) -> None:
    @app.command("detect")
    def detect(ctx: typer.Context) -> None:
        """Detect the provider, Kubernetes version and policy engine from the cluster itself."""
        from netiso.bootstrap.detect import detect as run_detect
        from netiso.console import Status
        from netiso.kube import connect, read_cluster_ref

        rep = reporter(ctx)
        opts = rep.options
        with connect(opts.kubeconfig, opts.context) as kube:
            rep.info(f"context {kube.context} at {kube.server}")
            found = run_detect(kube, read_cluster_ref(opts.kubeconfig, opts.context))
        for line in found.unreadable:
            rep.warn(f"could not read {line}")
        rep.status(Status.DETECTED, f"provider {found.provider.value}: {found.reason}")
        data = found.to_json()
        rep.result(data, _table(data))
