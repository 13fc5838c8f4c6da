"""`netiso enable`: turn NetworkPolicy enforcement on through the cluster's provider.

Thin: parse the flags into an ``EnableRequest``, call ``netiso.bootstrap.enable.enable``, print
the ``EnableResult`` (schema ``netiso/manifests/schemas/enable.schema.json``). Exit 0 when
enforcement holds (enabled now or already), or for a dry run; 4 for a preflight refusal or a
node-recreating step without consent; 1 when a cloud call or the wait failed.

Identity flags are the same for every provider and only fill in what the cluster cannot show;
each provider's own options (``--calico-manifests``, ``--network-policy``, ...) are passed by
name, and a provider refuses an option that is not its own (exit 2), so a flag meant for another
cloud is never silently ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from netiso.commands import _options
from netiso.commands._common import connected_to, reporter

if TYPE_CHECKING:
    from rich.console import Console

_IDENTITY = _options.IDENTITY

_OPTIONS = (
    ("calico_manifests", "calicoManifests", "--calico-manifests", "DIR|URL",
     "EKS: where the pinned Calico manifests are read from (a mirror); checked by sha256."),
    ("network_policy", "networkPolicy", "--network-policy", "azure|calico|cilium",
     "AKS: the network policy to set (default chosen from the cluster's network plugin)."),
)

_FLAGS = (
    ("calico_apiserver", "calicoApiserver", "--calico-apiserver",
     "EKS: also create Calico's APIServer (enforcement does not need it)."),
    ("upgrade", "upgrade", "--upgrade",
     "EKS: upgrade an older Calico to the pinned version (server-side apply, forced)."),
)


def _table(data: dict[str, Any]) -> Any:
    def draw(console: Console) -> None:
        from netiso.commands.apply import aligned

        ident = ", ".join(f"{k}={v}" for k, v in data["identity"].items()) or "-"
        head = aligned(["provider", data["provider"]], [
            ["identity", ident],
            ["engine", data["engine"]],
            ["outcome", data["outcome"]],
        ])
        lines = [head, ""]
        rows = []
        for step in data["steps"]:
            state = ("ran" if step["ran"] else "already done" if step["done"]
                     else "would run" if data["outcome"] == "dry-run" else "not run")
            rows.append([step["name"], state, "yes" if step["disruptive"] else "no",
                         step["description"]])
        if rows:
            lines.append(aligned(["STEP", "STATE", "RECREATES NODES", "WHAT"], rows))
        if data["disruption"]:
            lines.append(f"disruption: {data['disruption']}")
        enforcement = data["enforcement"]
        if enforcement is not None:
            engines = ", ".join(f"{e['engine']} ({e['daemonset']}, ready {e['ready']}/"
                                f"{e['desired']})" for e in enforcement["engines"])
            lines.append(f"enforcement: {enforcement['status']}"
                         + (f": {engines}" if engines else ""))
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

    return draw


def command() -> click.Command:
    @click.command("enable")
    @_options.provider(help=_options.ENABLE_PROVIDER_HELP)
    @_options.force
    @_options.engine
    @_options.dry_run("Show every cloud call and object enable would make, and make none.")
    @click.option("--timeout", type=click.FloatRange(min=1), default=1800.0, show_default=True,
                  metavar="SECONDS", help="How long to wait for each cloud operation and for "
                  "enforcement to be ready.")
    @click.pass_context
    def enable(ctx: click.Context, /, provider: str, force: bool, engine: str | None,
               dry_run: bool, timeout: float, **flags: Any) -> None:
        """Turn NetworkPolicy enforcement on (cloud API or Calico), then wait until it holds."""
        from netiso.bootstrap.detect import parse_provider_option
        from netiso.bootstrap.enable import enable as run_enable
        from netiso.console import OutputFormat, Status
        from netiso.kube import connect, read_cluster_ref
        from netiso.providers.base import EnableRequest

        rep = reporter(ctx)
        opts = rep.options
        requested = parse_provider_option(provider)
        identity = {key: str(flags[name]) for name, key, _, _ in _IDENTITY if flags.get(name)}
        extra = {key: str(flags[name]) for name, key, _, _, _ in _OPTIONS if flags.get(name)}
        extra.update({key: "true" for name, key, _, _ in _FLAGS if flags.get(name)})
        request = EnableRequest(engine=engine, identity=identity, options=extra,
                                dry_run=dry_run, consent=opts.yes, timeout=timeout)

        def confirm(question: str) -> bool:
            return click.confirm(question, default=False, err=True)

        can_ask = rep.interactive and opts.output is OutputFormat.TABLE
        with connect(opts.kubeconfig, opts.context) as kube:
            rep.info(connected_to(kube))
            done = run_enable(kube, read_cluster_ref(opts.kubeconfig, opts.context), requested,
                              request, force=force, log=rep.info,
                              confirm=confirm if can_ask else None)
        messages = {
            "already-enforcing": f"already enforcing ({done.plan.engine}): nothing to do",
            "dry-run": f"dry run: {len(done.plan.pending)} step(s) would run, nothing was sent",
            "enabled": f"{done.plan.engine} enforces NetworkPolicy "
                       f"({done.seconds:.0f} s)",
        }
        for warning in done.plan.warnings:
            rep.warn(warning)
        rep.status(Status.SKIPPED if done.outcome == "already-enforcing" else Status.DONE,
                   messages[done.outcome])
        data = done.to_json()
        rep.result(data, _table(data))

    for name, _key, flag, help_text in _IDENTITY:
        enable = click.option(flag, name, default=None, metavar="NAME", help=help_text)(enable)
    for name, _key, flag, metavar, help_text in _OPTIONS:
        enable = click.option(flag, name, default=None, metavar=metavar, help=help_text)(enable)
    for name, _key, flag, help_text in _FLAGS:
        enable = click.option(flag, name, is_flag=True, default=False, help=help_text)(enable)
    return enable


def add_provider_flags(command: click.Command) -> click.Command:
    """The identity and provider-option flags of ``enable``, for commands that run its plan
    (``plan``, ``bootstrap``): one spelling and one help text everywhere."""
    for name, _key, flag, help_text in _IDENTITY:
        command = click.option(flag, name, default=None, metavar="NAME",
                               help=help_text)(command)
    for name, _key, flag, metavar, help_text in _OPTIONS:
        command = click.option(flag, name, default=None, metavar=metavar,
                               help=help_text)(command)
    for name, _key, flag, help_text in _FLAGS:
        command = click.option(flag, name, is_flag=True, default=False,
                               help=help_text)(command)
    return command


def provider_flags(flags: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(identity, options) of an EnableRequest from the flags ``add_provider_flags`` added."""
    identity = {key: str(flags[name]) for name, key, _, _ in _IDENTITY if flags.get(name)}
    extra = {key: str(flags[name]) for name, key, _, _, _ in _OPTIONS if flags.get(name)}
    extra.update({key: "true" for name, key, _, _ in _FLAGS if flags.get(name)})
    return identity, extra
