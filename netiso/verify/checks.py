"""Named checks: each declares its flows and judges them (``run() -> CheckResult``). Pure.

Design decisions:

* **A check is a name, a promise and a set of flows.** ``same-namespace``, ``other-namespace``,
  ``app-port``, ``in-cluster-egress``, ``metadata``, ``pod-identity`` (EKS), ``dns`` and the
  canary ``enforcement``; any can be skipped by name (``--skip NAME``), and a failing check's
  message says how. All flows of all checks are probed in one parallel batch; each check then
  judges only its own.
* **Three readings per flow.** *expected* is the policy engine's verdict on the live objects
  (pods with their real IPs, namespaces, every NetworkPolicy, foreign ones included) read just
  before probing; *observed* is real traffic; *intended* is the same engine on the same objects
  with netiso's own policies replaced by the bundle as the values render it. A flow passes when
  observed == expected (the dataplane enforces what the objects say) and expected == intended
  (the objects say what the values promise). A foreign allow-all is in both readings, so it is
  an expected "allowed", not a failure; a deleted or drifted bundle policy changes only the
  live reading, so it fails by name even though the traffic agrees with the objects.
* **A probe error is never a verdict.** It is neither allowed nor blocked; the flow is reported
  as a probe error and the run cannot pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netiso.policy import Verdict
from netiso.verify.scenarios import FlowSpec, Layout, NodeInfo, Outcome, Target


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "probe-error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Expectation:
    outcome: Outcome
    decided_by: tuple[str, ...]   # policy keys ns/name, or () when no policy isolates
    reason: str


def expectation(verdict: Verdict) -> Expectation:
    """The engine's verdict as an expected outcome and the policies that decided it."""
    if verdict.allowed:
        rules = [str(m.policy) for side in (verdict.egress, verdict.ingress)
                 for m in side.allowed_by]
        decided = tuple(dict.fromkeys(rules))
        reason = ("allowed by " + ", ".join(decided)) if decided else \
            "no policy isolates either side"
        return Expectation(Outcome.ALLOWED, decided, reason)
    denying = [s for s in (verdict.egress, verdict.ingress) if not s.allowed]
    decided = tuple(dict.fromkeys(p for s in denying for p in s.policies))
    return Expectation(Outcome.BLOCKED, decided, "; ".join(s.reason for s in denying))


@dataclass
class FlowResult:
    spec: FlowSpec
    source: str                   # ns/pod
    source_node: str
    destination: str              # ns/pod, an IP, or a DNS name
    destination_node: str | None
    expected: Expectation | None = None
    intended: Expectation | None = None
    observed: Outcome | None = None
    detail: str = ""
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return (self.expected is not None and self.observed is self.expected.outcome
                and (self.intended is None or self.intended.outcome is self.expected.outcome))

    @property
    def probe_error(self) -> bool:
        return self.observed is Outcome.ERROR

    @property
    def disagrees(self) -> bool:
        """Traffic and the live objects disagree (worth probing again after a settle)."""
        return (self.expected is not None and self.observed is not None
                and self.observed is not Outcome.ERROR
                and self.observed is not self.expected.outcome)

    @property
    def reason(self) -> str:
        exp = self.expected
        if exp is None:
            return f"no expectation (the engine could not evaluate this flow): {self.detail}"
        if self.observed is Outcome.ERROR:
            return f"probe error: {self.detail}"
        if self.observed is not exp.outcome:
            return (f"expected {exp.outcome.value} ({exp.reason}), observed "
                    f"{self.observed.value if self.observed else 'nothing'}: {self.detail}")
        if self.intended is not None and self.intended.outcome is not exp.outcome:
            return (f"the values' bundle says {self.intended.outcome.value} "
                    f"({self.intended.reason}) but the cluster's policies say "
                    f"{exp.outcome.value} ({exp.reason}): a bundle policy is missing or "
                    f"drifted (see `netiso status`)")
        return exp.reason

    def pair(self) -> str:
        return f"{self.source_node}->{self.destination_node or '-'}"

    def to_json(self) -> dict[str, Any]:
        t = self.spec.target
        return {
            "id": self.spec.id,
            "check": self.spec.check,
            "description": self.spec.what,
            "from": {"pod": self.source, "node": self.source_node},
            "to": {"target": self.destination, "node": self.destination_node,
                   "port": t.port, "protocol": t.protocol},
            "expected": self.expected.outcome.value if self.expected else None,
            "intended": self.intended.outcome.value if self.intended else None,
            "observed": self.observed.value if self.observed else None,
            "ok": self.ok,
            "decidedBy": list(self.expected.decided_by) if self.expected else [],
            "reason": self.reason,
            "detail": self.detail,
            "attempts": self.attempts,
        }


@dataclass
class CheckResult:
    name: str
    description: str
    status: CheckStatus
    message: str = ""
    flows: list[FlowResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "status": self.status.value, "message": self.message,
                "flows": [f.spec.id for f in self.flows]}


# --- the checks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    layout: Layout
    metadata_ips: tuple[str, ...]
    pod_identity_ips: tuple[str, ...]
    dns_name: str


class Check:
    """A named verification: declares flows, then judges their results."""

    name = ""
    description = ""

    def applies(self, ctx: Context) -> str | None:
        """None when the check can run here, else why it is skipped."""
        return None

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        """(client probe, target, what) triples."""
        raise NotImplementedError

    def run(self, flows: Sequence[FlowResult]) -> CheckResult:
        failed = [f for f in flows if not f.ok and not f.probe_error]
        errors = [f for f in flows if f.probe_error]
        if failed:
            ids = ", ".join(f.spec.id for f in failed)
            return CheckResult(self.name, self.description, CheckStatus.FAILED,
                               f"{len(failed)} of {len(flows)} flows do not match ({ids}); "
                               f"skip with --skip {self.name} if intended", list(flows))
        if errors:
            return CheckResult(self.name, self.description, CheckStatus.ERROR,
                               f"{len(errors)} of {len(flows)} flows could not be probed",
                               list(flows))
        return CheckResult(self.name, self.description, CheckStatus.PASSED,
                           f"{len(flows)} flows match", list(flows))


def _pairs(ctx: Context, tag: str, port: int) -> list[tuple[str, Target, str]]:
    lay = ctx.layout
    out: list[tuple[str, Target, str]] = []
    for ci, si in lay.pairs():
        server = lay.server(lay.namespace, lay.nodes[si])
        out.append((f"{tag}-{ci + 1}", Target(port, server=server), ""))
    return out


def _clients(ctx: Context) -> list[str]:
    n = len(ctx.layout.nodes)
    return [f"cli-a-{i + 1}" for i in range(n)] + [f"cli-b-{i + 1}" for i in range(n)]


class SameNamespace(Check):
    name = "same-namespace"
    description = "pods of one namespace reach each other (on a port no app rule opens)"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        port = ctx.layout.other_port
        return [(c, t, f"same namespace, port {port}") for c, t, _ in _pairs(ctx, "cli-a", port)]


class OtherNamespace(Check):
    name = "other-namespace"
    description = "another namespace is denied (on a port no app rule opens)"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        port = ctx.layout.other_port
        return [(c, t, f"other namespace, port {port}")
                for c, t, _ in _pairs(ctx, "cli-b", port)]


class AppPort(Check):
    name = "app-port"
    description = "the app port is open from another namespace"

    def applies(self, ctx: Context) -> str | None:
        return None if ctx.layout.app_port else "no TCP app port in the values"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        port = int(ctx.layout.app_port or 0)
        return [(c, t, f"other namespace, app port {port}")
                for c, t, _ in _pairs(ctx, "cli-b", port)]


class InClusterEgress(Check):
    name = "in-cluster-egress"
    description = "pods under the metadata deny still reach pods in the cluster"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        port = ctx.layout.app_port or ctx.layout.other_port
        return [(c, t, f"egress to a pod, port {port}") for c, t, _ in _pairs(ctx, "cli-a", port)]


class Metadata(Check):
    name = "metadata"
    description = "the cloud metadata endpoint is denied from pods"

    def applies(self, ctx: Context) -> str | None:
        return None if ctx.metadata_ips else "no IPv4 metadata address in the values"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        return [(c, Target(80, ip=ip), f"metadata {ip}:80")
                for c in _clients(ctx) for ip in ctx.metadata_ips]


class PodIdentity(Check):
    name = "pod-identity"
    description = "the EKS Pod Identity agent stays reachable"

    def applies(self, ctx: Context) -> str | None:
        return None if ctx.pod_identity_ips else "not EKS"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        return [(c, Target(80, ip=ip), f"Pod Identity {ip}:80")
                for c in _clients(ctx) for ip in ctx.pod_identity_ips]


class Dns(Check):
    name = "dns"
    description = "DNS resolves from pods"

    def flows(self, ctx: Context) -> list[tuple[str, Target, str]]:
        return [(c, Target(53, "UDP", dns_name=ctx.dns_name), f"DNS {ctx.dns_name}")
                for c in _clients(ctx)]


BUNDLE_CHECKS: tuple[Check, ...] = (
    SameNamespace(), OtherNamespace(), AppPort(), InClusterEgress(), Metadata(), PodIdentity(),
    Dns(),
)

ENFORCEMENT = "enforcement"
ENFORCEMENT_DESCRIPTION = ("the dataplane enforces NetworkPolicy on every probed node "
                           "(connect, deny, connect again)")


def check_names() -> list[str]:
    return [ENFORCEMENT, *(c.name for c in BUNDLE_CHECKS)]


def declare(checks: Sequence[Check], ctx: Context) -> list[FlowSpec]:
    """Every flow of ``checks``, numbered in order."""
    out: list[FlowSpec] = []
    for check in checks:
        for client, target, what in check.flows(ctx):
            out.append(FlowSpec(f"f{len(out) + 1}", check.name, client, target, what))
    return out


# --- likely causes ---------------------------------------------------------------------------

def likely_cause(provider: str, nodes: Sequence[str], all_nodes: bool,
                 unready: Mapping[str, Sequence[str]] | None = None) -> str:
    """One line: why policies may not bite, for the provider (partial: name the nodes)."""
    where = ", ".join(nodes)
    pods = [f"{n}: {', '.join(p)}" for n, p in (unready or {}).items() if p]
    if pods:
        return (f"policy agent pods not ready on {'; '.join(pods)} "
                "(a DaemonSet not ready on that node)")
    if not all_nodes:
        return (f"not enforced on {where} only: the policy agent (a DaemonSet) is not running "
                "or not ready on those nodes, or they belong to a node pool without it")
    return {
        "eks": "EKS VPC CNI network policy is off (enableNetworkPolicy in the vpc-cni add-on "
               "configuration; `netiso enable`), or its node agent is not running",
        "gke": "GKE network policy enforcement is disabled (enable network policy, or use "
               "Dataplane V2; `netiso enable`)",
        "aks": "AKS networkPolicy is none (set --network-policy azure|calico|cilium; "
               "`netiso enable`)",
    }.get(provider, "no NetworkPolicy-enforcing network plugin (flannel, kindnet and bridge "
                    "CNIs accept policies and ignore them), or its agent is not running")


def node_label(node: NodeInfo | None) -> str:
    return node.name if node else "-"
