"""Every option more than one command takes, declared once; the global options too.

Each shared option is a decorator here (``@values``, ``@namespace()``, ...), so a flag's name,
short form, type, metavar and default are the same in every command that takes it. Where the
*meaning* differs per command (``--namespace`` narrows uninstall but replaces
``namespaces.include`` in apply), only the help text is a parameter.

Global options (``--kubeconfig``, ``--context``, ``-o``, ``-v``, ``-q``, ``--no-color``, ``-y``)
are declared once as ``GLOBAL_OPTIONS`` and attached twice by ``netiso.cli``: to the group, where
click parses them before the command, and (hidden) to every command, where click parses them
after it. So ``netiso render -n x -vojson`` is click's own parsing of clustered short options,
not a second parser guessing which word belongs to whom. The command-level copies expose no
value: their callback merges what was given into the one ``GlobalOptions`` the group created.

Plain click, no typer: since 0.26 typer vendors an adapted copy of click (``typer._click``,
private) whose classes and exceptions are not click's, and it no longer supports reaching the
click objects underneath. Code mixing typer with click breaks on one side of that version line
or the other; click alone is public API on every version pyproject allows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from netiso.console import GlobalOptions, OutputFormat, Reporter

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


# --- options of the bundle commands (render, apply, status) ------------------------------

values: Decorator[Any] = click.option(
    "--values", "-f", type=click.Path(path_type=Path), default=None, metavar="FILE",
    help="Values file (YAML).",
)

# The provider whose defaults the bundle uses: `auto` (detected from the cluster; a --provider
# that strong evidence contradicts is exit 4 unless --force) where a cluster is at hand,
# `generic` for the offline render.
PROVIDER_HELP = "Provider defaults: auto (detected from the cluster), eks, gke, aks or generic."


def provider(default: str = "auto", help: str = PROVIDER_HELP) -> Decorator[Any]:
    """``-p/--provider PROVIDER``."""
    return click.option("--provider", "-p", default=default, show_default=True,
                        metavar="PROVIDER", help=help)


force: Decorator[Any] = click.option(
    "--force", is_flag=True, default=False,
    help="Allow targeting system/excluded namespaces, and a --provider the cluster contradicts.",
)

NAMESPACE_HELP = "Target namespace (repeatable); replaces namespaces.include."
SELECTOR_HELP = "Target namespaces by label (kubectl syntax, e.g. team=a)."


def namespace(help: str = NAMESPACE_HELP) -> Decorator[Any]:
    """``-n/--namespace NAME``, repeatable (a tuple, empty when not given)."""
    return click.option("--namespace", "-n", multiple=True, metavar="NAME", help=help)


def selector(help: str = SELECTOR_HELP) -> Decorator[Any]:
    """``-l/--selector SELECTOR`` (kubectl's label-selector syntax)."""
    return click.option("--selector", "-l", default=None, metavar="SELECTOR", help=help)


def dry_run(help: str) -> Decorator[Any]:
    return click.option("--dry-run", is_flag=True, default=False, help=help)


# The identity flags of enable, bootstrap, plan and detect: they name the cloud cluster where the
# cluster cannot, and win over what it shows. (param name, EnableRequest key, flag, help)
IDENTITY: tuple[tuple[str, str, str, str], ...] = (
    ("cluster_name", "clusterName", "--cluster-name", "Cloud cluster name (EKS, GKE, AKS)."),
    ("region", "region", "--region", "AWS region (EKS)."),
    ("profile", "profile", "--profile", "AWS named profile (EKS; default chain otherwise)."),
    ("project", "project", "--project", "Google Cloud project (GKE)."),
    ("location", "location", "--location", "GKE location: a region or zone (GKE)."),
    ("subscription", "subscription", "--subscription", "Azure subscription id (AKS)."),
    ("resource_group", "resourceGroup", "--resource-group", "Azure resource group (AKS)."),
)

# enable, plan and bootstrap: the provider whose cloud turns enforcement on, and its engine.
ENABLE_PROVIDER_HELP = "Provider: auto (detected from the cluster), eks, gke, aks or generic."

engine: Decorator[Any] = click.option(
    "--engine", default=None, metavar="ENGINE",
    help="EKS: calico (default) or vpc-cni (the VPC CNI's own policy agent).",
)


# --- global options ----------------------------------------------------------------------

_OUTPUT = click.Choice([f.value for f in OutputFormat], case_sensitive=False)


def _global_params(*, hidden: bool) -> list[click.Option]:
    """The global options as click parameters: exposed on the group, hidden on commands."""
    # On a command the value is not passed to the function (expose_value=False) but merged by
    # _merge; the names are prefixed so they never collide with a command's own parameters.
    extra: dict[str, Any] = {"hidden": True, "expose_value": False, "callback": _merge} \
        if hidden else {}
    p = "global_" if hidden else ""
    return [
        click.Option(["--kubeconfig", f"{p}kubeconfig"], default=None, metavar="FILE",
                     help="One kubeconfig file; default $KUBECONFIG (a :-separated list) or "
                          "~/.kube/config.", **extra),
        click.Option(["--context", f"{p}context"], default=None, metavar="NAME",
                     help="Kubeconfig context to use.", **extra),
        click.Option(["--output", "-o", f"{p}output"], type=_OUTPUT,
                     default=None if hidden else OutputFormat.TABLE.value, metavar="FORMAT",
                     help="Result format on stdout: table, json or yaml.", **extra),
        click.Option(["--verbose", "-v", f"{p}verbose"], count=True,
                     help="More detail on stderr (repeatable).", **extra),
        click.Option(["--quiet", "-q", f"{p}quiet"], count=True,
                     help="Less detail on stderr.", **extra),
        click.Option(["--no-color", f"{p}no_color"], is_flag=True, default=False,
                     help="No colour (also when NO_COLOR is set).", **extra),
        click.Option(["--yes", "-y", f"{p}yes"], is_flag=True, default=False,
                     help="Allow node-recreating steps (enable, bootstrap) without asking.",
                     **extra),
    ]


def group_params() -> list[click.Option]:
    return _global_params(hidden=False)


def command_params(command: click.Command) -> list[click.Option]:
    """The global options a command does not define itself (its own flag wins)."""
    own = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return [p for p in _global_params(hidden=True) if not own & {*p.opts, *p.secondary_opts}]


def make_options(kubeconfig: str | None, context: str | None, output: str, verbose: int,
                 quiet: int, no_color: bool, yes: bool) -> GlobalOptions:
    import os

    return GlobalOptions(
        kubeconfig=kubeconfig,
        context=context,
        output=OutputFormat(output.lower()),
        verbosity=verbose - quiet,
        no_color=no_color or bool(os.environ.get("NO_COLOR")),
        yes=yes,
        verbose=verbose,
    )


def _merge(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the command: fold it into the group's GlobalOptions."""
    source = ctx.get_parameter_source(param.name or "")
    if source is not click.core.ParameterSource.COMMANDLINE:
        return
    root = ctx.find_root().obj
    if not isinstance(root, Reporter):
        return
    opts = root.options
    name = (param.name or "").removeprefix("global_")
    if name == "output":
        opts.output = OutputFormat(str(value).lower())
    elif name == "verbose":
        opts.verbosity += int(value)
        opts.verbose += int(value)
    elif name == "quiet":
        opts.verbosity -= int(value)
    elif name in ("no_color", "yes"):
        setattr(opts, name, getattr(opts, name) or bool(value))
    else:
        setattr(opts, name, value)
