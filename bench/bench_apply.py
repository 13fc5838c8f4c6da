"""Benchmark: applying the bundle to 500 namespaces of the lab, netiso vs kubectl server-side apply.

Not a test (nothing asserts); it prints figures and the ratio against its anchor:

    .venv/bin/python bench/bench_apply.py                  # 500 namespaces, needs a running lab
    .venv/bin/python bench/bench_apply.py --namespaces 100

What is measured, and why this way:

* Two fresh sets of N namespaces are created (one per tool), so both tools do the same work:
  N x bundle-size creates by server-side apply. Same lab, same run, one after the other
  (``--order`` flips which goes first; the lab's etcd warms up over a run).
* netiso: ``netiso apply --selector <set A label>`` as a child process, end to end (process
  start, kubeconfig, namespace and policy listing, rendering, the applies, the report).
* kubectl (the lab's own build, same version as the API server): the very same bundle is
  rendered offline with ``netiso render -n ...`` for set B (not timed), then
  ``kubectl apply --server-side --field-manager=netiso -f bundle.yaml`` is timed end to end.
  kubectl applies objects one at a time; netiso applies namespaces concurrently.
* A rerun of each (nothing to change) is timed too: the "0 changed" path.
* Afterwards both sets hold the same policies (checked: same names and specs per namespace).
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


def kubectl_binary() -> str:
    try:
        from tests.lab import build

        return str(build.binary("kubectl"))
    except Exception:
        found = sorted(glob.glob("/root/.cache/netiso-lab/bin/kubectl-*/kubectl"))
        if not found:
            raise SystemExit("kubectl is not in the lab build cache: build the lab") from None
        return found[-1]


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv[:6])} ...\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--kubeconfig", default="/var/tmp/netiso-lab/admin.kubeconfig")
    parser.add_argument("--order", choices=("netiso-first", "kubectl-first"),
                        default="netiso-first")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="do not delete the namespaces")
    args = parser.parse_args()

    from kubernetes import client, config

    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api(api)
    net: Any = client.NetworkingV1Api(api)
    kubectl = kubectl_binary()
    run = uuid.uuid4().hex[:6]
    sets = {tool: [f"bench-{run}-{tool[0]}-{i:03d}" for i in range(args.namespaces)]
            for tool in ("netiso", "kubectl")}
    print(f"lab: {args.kubeconfig}; {args.namespaces} namespaces per tool; run {run}",
          file=sys.stderr)
    t0 = time.perf_counter()
    for tool, names in sets.items():
        for name in names:
            core.create_namespace({"metadata": {"name": name, "labels": {
                "netiso-bench": f"{run}-{tool}"}}})
    print(f"created {2 * args.namespaces} namespaces in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)

    results: dict[str, dict[str, float]] = {"netiso": {}, "kubectl": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle.yaml"
        render = subprocess.run(
            [*NETISO, "render", *[a for n in sets["kubectl"] for a in ("-n", n)]],
            capture_output=True, text=True, check=True)
        bundle.write_text(render.stdout)
        objects = render.stdout.count("\nkind: NetworkPolicy")
        if render.stdout.startswith("kind: NetworkPolicy"):
            objects += 1

        def run_netiso(phase: str) -> None:
            elapsed, proc = timed([*NETISO, "--kubeconfig", args.kubeconfig, "-q", "apply",
                                   "--selector", f"netiso-bench={run}-netiso",
                                   "--concurrency", str(args.concurrency)])
            results["netiso"][phase] = elapsed
            print(f"netiso  {phase:7} {elapsed:7.2f} s   {proc.stdout.strip().splitlines()[-1]}",
                  file=sys.stderr)

        def run_kubectl(phase: str) -> None:
            elapsed, proc = timed([kubectl, "--kubeconfig", args.kubeconfig, "apply",
                                   "--server-side", "--field-manager=netiso", "-f", str(bundle)])
            results["kubectl"][phase] = elapsed
            print(f"kubectl {phase:7} {elapsed:7.2f} s   "
                  f"{len(proc.stdout.strip().splitlines())} objects reported", file=sys.stderr)

        order = [run_netiso, run_kubectl]
        if args.order == "kubectl-first":
            order.reverse()
        for phase in ("apply", "rerun"):
            for fn in order:
                fn(phase)

    # Same outcome: per namespace, the same policy names and specs in both sets.
    def snapshot(names: list[str]) -> list[Any]:
        rows = []
        for name in names:
            pols = net.list_namespaced_network_policy(name).items
            # The same-namespace rule names its namespace: compare with the name factored out.
            rows.append(sorted(
                (p.metadata.name, repr(api.sanitize_for_serialization(p.spec)).replace(name, "NS"))
                for p in pols))
        return rows

    same = snapshot(sets["netiso"]) == snapshot(sets["kubectl"])

    if not args.keep:
        for names in sets.values():
            for name in names:
                core.delete_namespace(name, propagation_policy="Background")

    n = results["netiso"]
    k = results["kubectl"]
    print()
    print(f"objects per tool: {objects} NetworkPolicies in {args.namespaces} namespaces; "
          f"same result: {'yes' if same else 'NO'}")
    print(f"{'':8}{'first apply':>14}{'rerun (0 changed)':>20}")
    print(f"{'netiso':8}{n['apply']:>12.2f} s{n['rerun']:>18.2f} s")
    print(f"{'kubectl':8}{k['apply']:>12.2f} s{k['rerun']:>18.2f} s")
    print(f"ratio (kubectl / netiso): first apply {k['apply'] / n['apply']:.1f}x, "
          f"rerun {k['rerun'] / n['rerun']:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
