"""Impact preview benchmark: `netiso plan`'s cut flows on a large cluster, against per-flow.

The cluster: NAMESPACES namespaces of PER pods, every pod declaring a port and ten per
namespace behind a Service, the default bundle on every namespace (millions of flows in use,
nearly all cross-namespace flows cut). Measured: ``netiso.bootstrap.plan.impact`` (bitsets, cut
flows grouped), and in the same run the anchor, the straightforward way: ``Engine.evaluate``
once per cut flow, timed on a random sample and scaled to every cut flow. The ratio says what
the bitset grouping buys; the absolute time says whether `plan` stays interactive.

Usage: python bench/bench_plan.py [--namespaces N] [--per P] [--sample S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netiso.bootstrap.plan import after_policies, impact
from netiso.bundle import render_bundle
from netiso.config import load_values
from netiso.policy import Cluster, Engine
from netiso.policy.engine import Flow, PodEndpoint

Obj = dict[str, Any]


def cluster(namespaces: int, per: int) -> tuple[list[Obj], list[Obj], list[Obj]]:
    nss: list[Obj] = []
    pods: list[Obj] = []
    slices: list[Obj] = []
    for i in range(namespaces):
        name = f"n{i}"
        nss.append({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}})
        for j in range(per):
            pods.append({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": f"p{j}", "namespace": name, "labels": {"app": f"a{j % 5}"}},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": f"10.{i}.{j // 200}.{j % 200 + 1}"},
            })
        slices.append({
            "metadata": {"name": "svc-x", "namespace": name,
                         "labels": {"kubernetes.io/service-name": "svc"}},
            "endpoints": [{"targetRef": {"kind": "Pod", "namespace": name, "name": f"p{j}"}}
                          for j in range(min(10, per))],
            "ports": [{"port": 9090, "protocol": "TCP"}],
        })
    return nss, pods, slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=40)
    parser.add_argument("--per", type=int, default=50)
    parser.add_argument("--sample", type=int, default=20000)
    args = parser.parse_args()

    nss, pods, slices = cluster(args.namespaces, args.per)
    desired = render_bundle(load_values(None, provider="generic"), [n["metadata"]["name"]
                                                                    for n in nss])
    started = time.perf_counter()
    found = impact(nss, pods, [], desired, slices)
    bitsets = time.perf_counter() - started

    after = Cluster.from_objects([*nss, *pods, *after_policies([], desired, [])])
    engine = Engine(after)
    index = {p.key: i for i, p in enumerate(after.pods)}
    flows = [(src, c.dst, c.port) for c in found.cut for src in c.sources]
    flows += [(p.key, c.dst, c.port) for c in found.cut for ns in c.namespaces
              for p in after.pods if p.namespace == ns]
    sample = random.Random(1).sample(flows, min(args.sample, len(flows)))
    started = time.perf_counter()
    for src, dst, port in sample:
        engine.evaluate(Flow(PodEndpoint(index[src], src), PodEndpoint(index[dst], dst), port))
    per_flow = (time.perf_counter() - started) / len(sample) * found.cut_count

    print(f"{len(pods)} pods, {found.flows_in_use} flows in use, {found.cut_count} cut in "
          f"{len(found.cut)} groups")
    print(f"impact (bitsets, grouped): {bitsets:.2f} s")
    print(f"anchor: Engine.evaluate per cut flow ({len(sample)} sampled, scaled): "
          f"{per_flow:.1f} s")
    print(f"ratio anchor/impact: {per_flow / bitsets:.0f}x")


if __name__ == "__main__":
    main()
