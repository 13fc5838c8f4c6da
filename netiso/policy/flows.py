"""Questions asked of the evaluator: flows given as data, one flow from flags, or the matrix.

Design decisions:

* **Flows are data, parsed here, not in the command.** A flows document (``{flows: [{from, to,
  port, protocol?, expect?}]}``) is parsed from already-decoded documents, so the command only
  reads the file and prints; tests and ``verify`` can ask the same questions without a CLI.
  Unknown keys are refused: a misspelt ``expcet: allow`` would silently drop the assertion a CI
  gate relies on.
* **The matrix answer stays bitsets.** One ``Matrix`` per declared (port, protocol), rows per
  destination; a printer draws cells from them as it writes, so memory stays at the bitsets'
  size whatever the output's (2,000 pods: ~7 M JSON flows). Finished pods (Succeeded/Failed)
  are neither sources nor destinations: they have no traffic.
* **Pure.** Values in, values out; errors are ``PolicyInputError`` (exit 2) naming where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netiso.policy.engine import Engine, Matrix, PodEndpoint, Verdict
from netiso.policy.model import PolicyInputError, Protocol

FLOW_FIELDS = ("from", "to", "port", "protocol", "expect")


@dataclass
class FlowResult:
    verdict: Verdict
    expected: str | None  # "allow" | "deny" | None
    where: str = ""       # how the flow was given, for warnings on stderr

    @property
    def ok(self) -> bool | None:
        if self.expected is None:
            return None
        return self.verdict.allowed == (self.expected == "allow")

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "from": v.src,
            "to": v.dst,
            "port": v.port,
            "protocol": v.protocol.value,
            "allowed": v.allowed,
            "expected": self.expected,
            "ok": self.ok,
            "egress": v.egress.to_json(),
            "ingress": v.ingress.to_json(),
        }


def _expect(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text not in ("allow", "deny"):
        raise PolicyInputError(f"{where}: expect must be allow or deny, not {value!r}")
    return text


def parse_port(value: Any) -> int | str:
    """A port as given in a flow or a flag: a number (also as digits) or a port name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def flows_from_documents(engine: Engine, docs: Sequence[Mapping[str, Any]], source: str
                         ) -> list[FlowResult]:
    """Evaluate a flows document (the decoded content of ``source``), in the order given."""
    if len(docs) != 1 or not isinstance(docs[0].get("flows"), list):
        raise PolicyInputError(f"{source}: expected one document with a 'flows' list")
    out = []
    for i, item in enumerate(docs[0]["flows"]):
        where = f"{source}: flows[{i}]"
        if not isinstance(item, dict):
            raise PolicyInputError(f"{where} is not a map")
        unknown = [k for k in item if k not in FLOW_FIELDS]
        if unknown:
            raise PolicyInputError(f"{where}: unknown field {str(unknown[0])!r}; "
                                   f"allowed: {', '.join(FLOW_FIELDS)}")
        missing = [k for k in ("from", "to", "port") if item.get(k) in (None, "")]
        if missing:
            raise PolicyInputError(f"{where}: missing {', '.join(missing)}")
        where = f"{where} ({item['from']} -> {item['to']} port {item['port']})"
        try:
            flow = engine.flow(str(item["from"]), str(item["to"]), parse_port(item["port"]),
                               item.get("protocol"))
            verdict = engine.evaluate(flow)
        except PolicyInputError as exc:
            raise PolicyInputError(f"{where}: {exc.message}") from exc
        out.append(FlowResult(verdict, _expect(item.get("expect"), where),
                              f"{source}: flows[{i}]"))
    return out


def single_flows(engine: Engine, src: str, dst: str, port: str | None,
                 protocol: str | None) -> list[FlowResult]:
    """One flow (``port`` given), or one per port the destination pod declares."""
    try:
        where = f"--from {src} --to {dst}"
        if port is not None:
            return [FlowResult(engine.check(src, dst, parse_port(port), protocol), None, where)]
        flow = engine.flow(src, dst, 1, protocol)
        if not isinstance(flow.dst, PodEndpoint):
            raise PolicyInputError(f"--port is needed for a destination outside the cluster "
                                   f"({dst})")
        pod = engine.cluster.pods[flow.dst.index]
        ports = [cp for cp in pod.ports
                 if flow.protocol is None or cp.protocol is flow.protocol]
        if not ports:
            raise PolicyInputError(f"pod {pod.key} declares no container ports: give --port")
        seen: set[tuple[int, Protocol]] = set()
        out = []
        for cp in ports:
            if (cp.number, cp.protocol) in seen:
                continue
            seen.add((cp.number, cp.protocol))
            out.append(FlowResult(engine.check(src, dst, cp.number, cp.protocol), None, where))
        return out
    except PolicyInputError as exc:
        raise PolicyInputError(f"--from {src} --to {dst}: {exc.message}") from exc


def flow_summary(results: Sequence[FlowResult]) -> dict[str, int]:
    allowed = sum(1 for r in results if r.verdict.allowed)
    return {"total": len(results), "allowed": allowed, "denied": len(results) - allowed,
            "mismatches": sum(1 for r in results if r.ok is False)}


@dataclass
class MatrixAnswer:
    """The matrix mode: running pods to each running destination's declared ports."""

    engine: Engine
    matrices: dict[tuple[int, Protocol], Matrix]
    sources: list[int]                          # running pods, cluster order (rows)
    ports_of: dict[int, list[tuple[int, Protocol]]]  # running destination -> its ports, once each

    def columns(self, key: tuple[int, Protocol]) -> list[int]:
        return [d for d, ports in self.ports_of.items() if key in ports]

    def summary(self) -> dict[str, int]:
        live = self.engine.cluster.live
        total = allowed = 0
        for d, ports in self.ports_of.items():
            for key in ports:
                total += len(self.sources)
                allowed += (self.matrices[key].allowed_from[d] & live).bit_count()
        return {"total": total, "allowed": allowed, "denied": total - allowed, "mismatches": 0}


def matrix_answer(engine: Engine) -> MatrixAnswer:
    """One matrix per (port, protocol) a running pod declares."""
    cluster = engine.cluster
    live = [i for i, pod in enumerate(cluster.pods) if not pod.finished]
    ports_of = {d: list(dict.fromkeys((cp.number, cp.protocol) for cp in cluster.pods[d].ports))
                for d in live if cluster.pods[d].ports}
    wanted = sorted({key for ports in ports_of.values() for key in ports})
    return MatrixAnswer(engine, {key: engine.matrix(*key) for key in wanted}, live, ports_of)


def bits(value: int, n: int) -> str:
    """Bit i of ``value`` as character i ('1'/'0'): one C-speed conversion per row."""
    return bin(value)[2:].zfill(n)[::-1]
