"""Label selectors, and their resolution into bitsets over a fixed population.

A selector is evaluated once per cluster, never per connection: :class:`LabelIndex` keeps, for
every label key and every ``key=value`` pair, the Python ``int`` whose bit *i* is set when item *i*
carries it. A requirement is then one or two big-integer operations (``In`` = OR of pair sets,
``NotIn`` = complement of that OR, so a missing key matches as the API says; ``Exists`` = the key
set; ``DoesNotExist`` = its complement), and a selector is the AND of its requirements. Python ints
are arbitrary-precision bit vectors whose AND/OR run in C over machine words, which is what keeps
a 2,000-pod matrix well under a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.IN:
            return labels.get(self.key) in self.values
        if self.operator is Operator.NOT_IN:
            # A pod without the key is "not in" any value set (matches, per the API reference).
            return labels.get(self.key) not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels

    def describe(self) -> str:
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{self.key}={next(iter(self.values))}"
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        word = "in" if self.operator is Operator.IN else "notin"
        return f"{self.key} {word} ({','.join(sorted(self.values))})"


@dataclass(frozen=True)
class LabelSelector:
    """matchLabels and matchExpressions, all ANDed; no requirement = selects everything."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, match_labels: Mapping[str, str] | None = None,
           expressions: Iterable[Requirement] = ()) -> LabelSelector:
        reqs = [Requirement(k, Operator.IN, frozenset({v}))
                for k, v in sorted((match_labels or {}).items())]
        reqs.extend(expressions)
        return cls(tuple(reqs))

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def to_kubernetes(self) -> dict[str, Any]:
        """The selector as a Kubernetes ``LabelSelector`` object (single-value ``In`` as
        matchLabels, the rest as matchExpressions in order)."""
        match_labels: dict[str, str] = {}
        expressions: list[dict[str, Any]] = []
        for r in self.requirements:
            if r.operator is Operator.IN and len(r.values) == 1 and r.key not in match_labels:
                match_labels[r.key] = next(iter(r.values))
                continue
            expr: dict[str, Any] = {"key": r.key, "operator": r.operator.value}
            if r.values:
                expr["values"] = sorted(r.values)
            expressions.append(expr)
        out: dict[str, Any] = {}
        if match_labels:
            out["matchLabels"] = match_labels
        if expressions:
            out["matchExpressions"] = expressions
        return out

    def describe(self) -> str:
        if not self.requirements:
            return "{} (all)"
        return "{" + ", ".join(r.describe() for r in self.requirements) + "}"


class LabelIndex:
    """Bitsets of a fixed, ordered population of label maps (pods or namespaces)."""

    def __init__(self, population: Sequence[Mapping[str, str]]) -> None:
        self.size = len(population)
        self.universe = (1 << self.size) - 1
        self._by_key: dict[str, int] = {}
        self._by_pair: dict[tuple[str, str], int] = {}
        for i, labels in enumerate(population):
            bit = 1 << i
            for key, value in labels.items():
                self._by_key[key] = self._by_key.get(key, 0) | bit
                self._by_pair[(key, value)] = self._by_pair.get((key, value), 0) | bit
        self._memo: dict[LabelSelector, int] = {}

    def requirement(self, req: Requirement) -> int:
        if req.operator is Operator.EXISTS:
            return self._by_key.get(req.key, 0)
        if req.operator is Operator.DOES_NOT_EXIST:
            return self.universe & ~self._by_key.get(req.key, 0)
        hit = 0
        for value in req.values:
            hit |= self._by_pair.get((req.key, value), 0)
        return hit if req.operator is Operator.IN else self.universe & ~hit

    def resolve(self, selector: LabelSelector) -> int:
        """The bitset of items the selector matches (memoised: selectors repeat a lot)."""
        found = self._memo.get(selector)
        if found is None:
            found = self.universe
            for req in selector.requirements:
                found &= self.requirement(req)
                if not found:
                    break
            self._memo[selector] = found
        return found


def bit_indices(bits: int) -> list[int]:
    """Indices of the set bits, lowest first (via the binary string: C speed, no int loop)."""
    digits = bin(bits)[:1:-1]
    out: list[int] = []
    i = digits.find("1")
    while i >= 0:
        out.append(i)
        i = digits.find("1", i + 1)
    return out
