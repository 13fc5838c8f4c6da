"""`netiso verify`: prove with real traffic, on every node, that the policies bite.

Thin: parse options, call ``netiso.verify.run.verify``, print the table (or the VerifyResult
document), write ``--junit``, and turn the verdict into an error for the one exit path in
``netiso.cli`` (3 mismatch or not enforced, 1 probing failed) after the result is printed.
SIGTERM (a CI job's timeout) is turned into KeyboardInterrupt for the duration of the run so the
run's cleanup happens on that way out too. ``--provider auto`` (the default) takes the provider
from ``netiso detect``'s rule, like apply and status, so the canary gets the bundle the
cluster's apply would give it and the "likely cause" line speaks for the right cloud.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from netiso.commands import _options
from netiso.commands._common import connected_to, reporter, values_for_cluster

if TYPE_CHECKING:
    from rich.console import Console

    from netiso.console import Reporter


def parse_nodes(text: str) -> int | None:
    from netiso.errors import UsageError

    if text == "all":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--nodes: {text!r} is not 'all' or a number >= 1")


def _flow_text(f: dict[str, Any]) -> str:
    to = f["to"]
    client = f["from"]["pod"].split("/", 1)[-1]
    target = str(to["target"]).split("/", 1)[-1]
    if f["check"] == "dns":
        return f"{_probe(client)} -> dns {str(to['target']).split(' ', 1)[0]}"
    return f"{_probe(client)} -> {_probe(target)}:{to['port']}"


def _probe(pod_name: str) -> str:
    """nv-<run>-cli-a-1-bundle-x7k2p -> cli-a-1 (the probe name people recognise)."""
    parts = pod_name.split("-")
    if len(parts) > 2 and parts[0] == "nv":
        parts = parts[2:]
        for cut in ("before", "after", "bundle"):
            if cut in parts:
                parts = parts[: parts.index(cut)]
                break
        else:
            parts = parts[:-1] if len(parts) > 2 else parts
        return "-".join(parts)
    return pod_name


def table(data: dict[str, Any]) -> Any:
    from netiso.commands.apply import aligned

    def draw(console: Console) -> None:
        rows = []
        for f in data["flows"]:
            mark = "✓" if f["ok"] else "✗"
            rows.append([mark, f["id"], f["check"], _flow_text(f),
                         f"{f['from']['node']}->{f['to']['node'] or '-'}",
                         str(f["expected"]), str(f["observed"]), f["reason"]])
        out = []
        if rows:
            out.append(aligned(["", "ID", "CHECK", "FLOW", "NODES", "EXPECTED", "OBSERVED",
                                "REASON"], rows))
        for c in data["checks"]:
            if c["status"] == "skipped":
                out.append(f"skipped check {c['name']}: {c['message']}")
            elif c["status"] != "passed":
                out.append(f"{c['status']} check {c['name']}: {c['message']}")
        enf = data["enforcement"]
        for n in enf["nodes"]:
            if n["enforced"] is False:
                out.append(f"not enforced on {n['name']}: {n['detail']}")
        if enf["likelyCause"]:
            out.append(f"likely cause: {enf['likelyCause']}")
        s = data["summary"]
        known = [n for n in enf["nodes"] if n["enforced"]]
        out.append(
            f"verify {data['verdict']}: {s['flows']} flows, {s['passed']} ✓, {s['failed']} ✗, "
            f"{s['probeErrors']} probe errors; enforcement {enf['state']} "
            f"({len(known)}/{len(enf['nodes'])} nodes); {s['checksSkipped']} checks skipped")
        console.print("\n".join(out), markup=False, highlight=False, soft_wrap=True)

    return draw


def command() -> click.Command:
    @click.command("verify")
    @_options.values
    @_options.provider(help="Provider defaults and likely causes: auto (detected from the "
                       "cluster), eks, gke, aks or generic.")
    @_options.force
    @click.option("--nodes", default="10", metavar="all|N", show_default=False,
                  help="Nodes to probe: 'all', or N (spread across zones and node pools). "
                       "Default: all, up to 10.")
    @click.option("--canary-only", is_flag=True, default=False,
                  help="Only the enforcement canary.")
    @click.option("--in-namespace", default=None, metavar="NAME",
                  help="Probe this real namespace instead of a canary one (probe pods never "
                       "become Ready).")
    @click.option("--keep", is_flag=True, default=False,
                  help="Leave the probe namespaces and Jobs in place.")
    @click.option("--skip", multiple=True, metavar="CHECK",
                  help="Skip a check by name (repeatable).")
    @click.option("--probe-image", default=None, metavar="IMAGE",
                  help="Probe image with busybox's sh, nc and nslookup (default busybox:1.36).")
    @click.option("--image-pull-secret", multiple=True, metavar="NAME",
                  help="Pull secret for the probe image (repeatable; it must exist in the "
                       "probed namespace).")
    @click.option("--junit", type=click.Path(path_type=Path), default=None, metavar="FILE",
                  help="Also write a JUnit XML report.")
    @click.option("--timeout", type=click.FloatRange(min=5), default=120.0, metavar="SECONDS",
                  help="Give up waiting for probe pods after this long.")
    @click.pass_context
    def verify(ctx: click.Context, values: Path | None, provider: str, force: bool, nodes: str,
               canary_only: bool, in_namespace: str | None, keep: bool, skip: tuple[str, ...],
               probe_image: str | None, image_pull_secret: tuple[str, ...], junit: Path | None,
               timeout: float) -> None:
        """Prove with real traffic, on every node, that NetworkPolicies are enforced.

        Exit 0 when every flow matches, 3 on a mismatch or when a node does not enforce,
        1 when probing failed (image pull, scheduling, timeout), 2 for bad input.
        """
        run(reporter(ctx), values=values, provider=provider, force=force, nodes=nodes,
            canary_only=canary_only, in_namespace=in_namespace, keep=keep, skip=list(skip),
            probe_image=probe_image, pull_secrets=list(image_pull_secret), junit=junit,
            timeout=timeout)

    return verify


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(rep: Reporter, *, values: Path | None, provider: str, force: bool = False, nodes: str,
        canary_only: bool, in_namespace: str | None, keep: bool, skip: list[str],
        probe_image: str | None, pull_secrets: list[str], junit: Path | None,
        timeout: float) -> None:
    from dataclasses import replace

    from netiso.bootstrap.detect import parse_provider_option
    from netiso.config import Values, is_namespace_name, load_values
    from netiso.console import Status
    from netiso.errors import OperationFailed, UsageError
    from netiso.kube import connect
    from netiso.profiles import Provider
    from netiso.verify.junit import to_junit
    from netiso.verify.probes import DEFAULT_IMAGE
    from netiso.verify.run import Options, validate_skip
    from netiso.verify.run import verify as verify_run

    requested = parse_provider_option(provider)

    def load(name: str) -> Values:
        return load_values(values, provider=name)

    vals = load((requested or Provider.GENERIC).value)  # bad input fails before connecting
    limit = parse_nodes(nodes)
    skipped = validate_skip(skip)
    if in_namespace is not None and not is_namespace_name(in_namespace):
        raise UsageError(f"--in-namespace: {in_namespace!r} is not a valid namespace name")
    if in_namespace is not None and canary_only:
        raise UsageError("--in-namespace cannot be combined with --canary-only (the canary "
                         "always runs in its own namespace)")
    opts = Options(values=vals, provider=vals.provider.value, nodes=limit,
                   canary_only=canary_only, in_namespace=in_namespace, keep=keep, skip=skipped,
                   image=probe_image or DEFAULT_IMAGE, pull_secrets=tuple(pull_secrets),
                   timeout=timeout)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with connect(rep.options.kubeconfig, rep.options.context) as kube:
            rep.status(Status.INFO, connected_to(kube))
            vals = values_for_cluster(rep, kube, requested, force=force, load=load)
            opts = replace(opts, values=vals, provider=vals.provider.value)
            result = verify_run(kube, opts, rep.info)
    finally:
        signal.signal(signal.SIGTERM, previous)
    data = result.to_json()
    rep.result(data, table(data))
    if junit is not None:
        try:
            junit.write_text(to_junit(data), encoding="utf-8")
        except OSError as exc:
            raise OperationFailed(f"--junit {junit}: cannot write: {exc.strerror}") from exc
    error = result.error()
    if error is not None:
        raise error
