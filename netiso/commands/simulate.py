"""`netiso simulate`: evaluate NetworkPolicies offline, for given flows or the whole matrix.

The command is a thin shell over ``netiso.policy``: read files (and, with ``--live``, the
current cluster through ``netiso.kube``), build one ``Cluster``, ask the ``Engine`` through
``netiso.policy.flows`` (flows parsed there, the matrix answer built there), print. Its JSON is
a contract other tools and CI scripts parse, so one schema serves every mode: a list of flows
(given ones in the order given; the matrix as every pod to every destination's declared ports)
and a summary. An ``expect`` that does not hold exits 3 after the result is printed, so a CI log
shows the whole picture, not just the first failure.

Heavy imports (YAML, the evaluator, the Kubernetes seam) stay inside the functions: ``netiso
--help`` must not pay for them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netiso.commands._common import reporter
from netiso.console import Reporter, Status

if TYPE_CHECKING:
    from rich.console import Console

    from netiso.policy import Cluster, Engine
    from netiso.policy.flows import FlowResult, MatrixAnswer


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        ctx: typer.Context,
        files: Annotated[
            list[Path] | None,
            typer.Argument(help="YAML/JSON files with Namespaces, Pods and NetworkPolicies "
                                "('-' reads stdin).", show_default=False, metavar="FILE"),
        ] = None,
        flows: Annotated[
            Path | None,
            typer.Option("--flows", help="YAML/JSON {flows: [{from, to, port, protocol?, "
                                         "expect?: allow|deny}]}."),
        ] = None,
        src: Annotated[
            str | None,
            typer.Option("--from", help="Source: NAMESPACE/POD, ip:ADDRESS or ADDRESS."),
        ] = None,
        dst: Annotated[
            str | None, typer.Option("--to", help="Destination: NAMESPACE/POD or an IP.")
        ] = None,
        port: Annotated[
            str | None,
            typer.Option("--port", help="Port number or name (default: the destination's "
                                        "declared ports)."),
        ] = None,
        protocol: Annotated[
            str | None, typer.Option("--protocol", help="TCP, UDP or SCTP (default TCP).")
        ] = None,
        live: Annotated[
            bool,
            typer.Option("--live", help="Also read Namespaces, Pods and NetworkPolicies from "
                                        "the current cluster."),
        ] = False,
    ) -> None:
        """Evaluate NetworkPolicies offline: given flows, one flow, or the whole pod matrix.

        Exit 0 when every expectation holds, 3 when one does not, 2 for bad input.
        """
        rep = reporter(ctx)
        # -o/--output and --kubeconfig/--context are global options; netiso.cli also accepts
        # them after the subcommand (`netiso simulate f.yaml -o json`).
        run(rep, files or [], flows=flows, src=src, dst=dst, port=port, protocol=protocol,
            live=live)


# --- the command's logic (callable without typer) ------------------------------------------

def _read(path: Path) -> str:
    from netiso.policy import PolicyInputError

    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyInputError(f"{path}: cannot read: {reason}") from exc


def load_cluster(rep: Reporter, files: list[Path], live: bool) -> Cluster:
    """Files (in order), then the live cluster when asked, into one indexed cluster."""
    from netiso.errors import UsageError
    from netiso.policy import Cluster, LoadedObjects, load_objects, parse_documents

    if not files and not live:
        raise UsageError("netiso simulate: give at least one FILE, or --live")
    loaded = LoadedObjects()
    for path in files:
        load_objects(parse_documents(_read(path), str(path)), str(path), into=loaded)
    if live:
        from netiso import kube

        opts = rep.options
        with kube.connect(opts.kubeconfig, opts.context) as k:
            rep.info(f"reading Namespaces, Pods and NetworkPolicies from context {k.context}")
            objs = k.list_namespaces() + k.list_pods() + k.list_network_policies()
        load_objects(objs, "live cluster", into=loaded)
    for note in loaded.skipped:
        rep.status(Status.SKIPPED, note)
    cluster = Cluster.from_loaded(loaded)
    for note in cluster.notes:
        rep.info(note)
    rep.debug(f"{len(cluster.namespaces)} namespaces, {len(cluster.pods)} pods, "
              f"{len(cluster.policies)} policies")
    return cluster


def flows_from_file(path: Path, engine: Engine) -> list[FlowResult]:
    from netiso.policy import parse_documents
    from netiso.policy.flows import flows_from_documents

    return flows_from_documents(engine, parse_documents(_read(path), str(path)), str(path))


def _json_cells(answer: MatrixAnswer) -> Iterator[list[str]]:
    """The matrix as JSON flows, one compact line each, by destination then port then source;
    one list per destination and port.

    Each flow is put together from strings made once per pod (its key, its isolation, its
    policies), so a cell costs one f-string, not a dict and a json.dumps.
    """
    from netiso.policy import Direction
    from netiso.policy.flows import bits

    cluster = answer.engine.cluster
    n = len(cluster.pods)
    iso = {d: cluster.policies_selecting_each(d) for d in Direction}

    def side(allowed: bool, policies: tuple[str, ...]) -> str:
        return json.dumps({"allowed": allowed, "isolated": bool(policies),
                           "policies": list(policies)})

    heads = {s: '{"from": ' + json.dumps(cluster.pods[s].key) + ", " for s in answer.sources}
    egress = {s: {bit: side(bit == "1", iso[Direction.EGRESS][s]) + ', "ingress": '
                  for bit in "01"} for s in answer.sources}
    verdict = {bits: ("true" if bits == "11" else "false")
               + ', "expected": null, "ok": null, "egress": ' for bits in ("00", "01", "10", "11")}
    for d, ports in answer.ports_of.items():
        ingress = {bit: side(bit == "1", iso[Direction.INGRESS][d]) + "}" for bit in "01"}
        for port, proto in ports:
            m = answer.matrices[(port, proto)]
            mid = (f'"to": {json.dumps(cluster.pods[d].key)}, "port": {port}, '
                   f'"protocol": "{proto.value}", "allowed": ')
            eg, ing = bits(m.egress_from[d], n), bits(m.ingress_from[d], n)
            yield [f"{heads[s]}{mid}{verdict[eg[s] + ing[s]]}{egress[s][eg[s]]}{ingress[ing[s]]}"
                   for s in answer.sources]


def write_matrix(rep: Reporter, answer: MatrixAnswer, totals: dict[str, int]) -> None:
    """Stream the matrix as the one JSON (or YAML) document of the contract, chunk by chunk."""
    from netiso.console import OutputFormat

    as_yaml = rep.options.output is OutputFormat.YAML
    # JSON flow mappings are YAML too: the same lines serve both formats.
    sep, first = ("\n- ", "flows:\n- ") if as_yaml else (",\n    ", '{\n  "flows": [\n    ')
    started = False
    for cells in _json_cells(answer):
        if cells:
            rep.write((sep if started else first) + sep.join(cells))
            started = True
    if as_yaml:
        rep.write(("" if started else "flows: []") + f"\nsummary: {json.dumps(totals)}\n")
    else:
        rep.write(("\n  ]" if started else '{\n  "flows": []')
                  + f',\n  "summary": {json.dumps(totals)}\n}}\n')


def run(rep: Reporter, files: list[Path], *, flows: Path | None = None, src: str | None = None,
        dst: str | None = None, port: str | None = None, protocol: str | None = None,
        live: bool = False) -> dict[str, int]:
    """The whole command; returns the summary it printed (the matrix is streamed, not kept)."""
    from netiso.console import OutputFormat
    from netiso.errors import UsageError, VerificationFailed
    from netiso.policy import Engine, portability_notes
    from netiso.policy.flows import flow_summary, matrix_answer, single_flows

    if (src is None) != (dst is None):
        raise UsageError("--from and --to go together")
    if flows is not None and src is not None:
        raise UsageError("give either --flows or --from/--to, not both")
    if (port is not None or protocol is not None) and src is None:
        raise UsageError("--port and --protocol apply to --from/--to")
    if protocol is not None and protocol.upper() not in ("TCP", "UDP", "SCTP"):
        raise UsageError(f"--protocol {protocol!r} is not TCP, UDP or SCTP")

    cluster = load_cluster(rep, files, live)
    engine = Engine(cluster)
    for note in portability_notes(cluster):
        rep.warn(note)

    results: list[FlowResult] = []
    if flows is not None:
        results = flows_from_file(flows, engine)
    elif src is not None and dst is not None:
        results = single_flows(engine, src, dst, port, protocol)

    # Stderr as well as the table: with -o json the table's warning lines are not shown.
    for warning in dict.fromkeys(f"{r.where}: {w}" for r in results for w in r.verdict.warnings):
        rep.warn(warning)

    # Asked flows (even none: `flows: []`) are answered as such; only no question is the matrix.
    if flows is not None or src is not None:
        totals = flow_summary(results)
        doc: dict[str, Any] = {"flows": [r.to_json() for r in results], "summary": totals}
        rep.result(doc, lambda console: _flow_table(console, results, totals))
    else:
        answer = matrix_answer(engine)
        gone = [p.key for p in cluster.pods if p.finished]
        if gone:
            shown = ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else "")
            rep.info(f"{len(gone)} finished pods (phase Succeeded/Failed) left out of the "
                     f"matrix: {shown}")
        totals = answer.summary()
        if rep.options.output is OutputFormat.TABLE:
            rep.result(None, lambda console: _matrix_table(console, answer))
        else:
            write_matrix(rep, answer, totals)

    bad = totals["mismatches"]
    if bad:
        raise VerificationFailed(f"{bad} of {totals['total']} flow expectations do not hold")
    return totals


# --- tables for people ---------------------------------------------------------------------

def _flow_table(console: Console, results: list[FlowResult], totals: dict[str, int]) -> None:
    from rich.text import Text

    from netiso.policy import explain

    for r in results:
        v = r.verdict
        line = Text()
        line.append("ALLOW" if v.allowed else "DENY ", style="green" if v.allowed else "red")
        line.append(f"  {v.src} -> {v.dst}  {v.protocol.value}/{v.port}")
        if r.expected is not None:
            line.append(f"  expect {r.expected}: ")
            line.append("ok" if r.ok else "MISMATCH", style="green" if r.ok else "bold red")
        console.print(line)
        for text in explain(v):
            console.print(Text("    " + text))
    console.print(Text(f"{totals['total']} flows: {totals['allowed']} allowed, "
                       f"{totals['denied']} denied, {totals['mismatches']} mismatches"))


def _matrix_table(console: Console, answer: MatrixAnswer) -> None:
    """Truth tables straight from the bitsets: each destination's row of sources becomes a
    column string once, and the table's rows are those columns read across (zip)."""
    from rich.text import Text

    from netiso.policy import Direction
    from netiso.policy.flows import bits

    cluster = answer.engine.cluster
    if not answer.matrices:
        console.print(Text("no pod declares a container port: nothing to tabulate "
                           "(use --from/--to with --port)"))
        return
    n = len(cluster.pods)
    label_w = max(len(cluster.pods[s].key) for s in answer.sources)
    ingress_iso = cluster.policies_selecting_each(Direction.INGRESS)
    live = set(answer.sources)
    to_cells = str.maketrans("10", ".X")
    for key, m in answer.matrices.items():
        dsts = answer.columns(key)
        console.print(Text(f"{m.protocol.value}/{m.port}: rows = from, columns = to "
                           "('.' allowed, 'X' denied)", style="bold"))
        width = len(str(len(dsts)))
        for digit in range(width):
            head = "".join(str(c + 1).rjust(width)[digit] for c in range(len(dsts)))
            console.print(Text(" " * (label_w + 2) + head))
        columns = [bits(m.allowed_from[d], n) for d in dsts]
        lines = []
        for s, cells in enumerate(zip(*columns, strict=True)):
            if s in live:
                lines.append(f"{cluster.pods[s].key.ljust(label_w)}  "
                             + "".join(cells).translate(to_cells))
        for c, d in enumerate(dsts):
            iso = ingress_iso[d]
            why = f"ingress isolated by {', '.join(iso)}" if iso else "ingress not isolated"
            lines.append(f"  {str(c + 1).rjust(width)} = {cluster.pods[d].key}  ({why})")
        lines.append("")
        # One print per table, not per line: rich's per-call cost dominates at 2,000 rows.
        console.print(Text("\n".join(lines)))
    egress_iso = cluster.policies_selecting_each(Direction.EGRESS)
    shown = [cluster.pods[s].key for s in answer.sources if egress_iso[s]]
    if shown:
        console.print(Text("egress-isolated sources: " + ", ".join(shown)))
