"""Benchmark: applying the bundle to 500 namespaces of the lab, netiso vs kubectl server-side apply.

Not a test: it prints figures and the ratio against its anchor, and exits non-zero only when
the two tools did not end with the same policies (then the figures compare nothing):

    .venv/bin/python bench/bench_apply.py                  # 500 namespaces, needs a running lab
    .venv/bin/python bench/bench_apply.py --namespaces 100

What is measured, and why this way:

* Two fresh sets of N namespaces are created (one per tool), so both tools do the same work:
  N x bundle-size creates by server-side apply. Same lab, same run, one after the other
  (``--order`` flips which goes first). Timing starts only once kube-controller-manager has
  finished writing each new namespace's ServiceAccount and CA ConfigMap, which would otherwise
  slow down whichever tool runs first.
* netiso: ``netiso apply --selector <set A label>`` as a child process, end to end (process
  start, kubeconfig, namespace and policy listing, rendering, the applies, the report).
* kubectl (the lab's own build, same version as the API server): the very same bundle is
  rendered offline with ``netiso render -n ...`` for set B (not timed), then
  ``kubectl apply --server-side --field-manager=netiso -f bundle.yaml`` is timed end to end.
  kubectl applies objects one at a time; netiso applies namespaces concurrently.
* A rerun of each (nothing to change) is timed too: the "0 changed" path.
* Afterwards both sets hold the same policies (checked: same names and specs per namespace);
  if they do not, the script exits non-zero after printing the figures.
* On the lab the namespaces are deleted afterwards, and the script waits until they are gone
  before the next measurement starts.
* ``--plane``: ``lab`` is the running lab as tests see it (kube-router enforcing, the machine
  shared); there every new NetworkPolicy also costs kube-router a resync and the kernel an
  iptables/ipset update, which on 2 cores caps both tools at the same rate. ``quiet`` starts a
  private etcd + kube-apiserver of the lab's build on loopback that nothing else watches, to
  show what the tools themselves cost. ``both`` (default) runs the two, one after the other.
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


QUIET_PROCESSES = ("bench-apiserver", "bench-etcd")


def quiet_plane(tmp: Path) -> Path:
    """A private etcd + kube-apiserver (lab binaries and certificates) that nothing watches."""
    import ssl

    import yaml

    from tests.lab import build, controlplane, pki

    client_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    controlplane.start_process("bench-etcd", [
        str(build.binary("etcd")), "--name=bench", f"--data-dir={tmp / 'etcd'}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=bench={peer}", "--unsafe-no-fsync=true", "--log-level=warn"])
    pk = pki.Pki(controlplane.paths().pki)
    argv = []
    for arg in controlplane._apiserver_argv(pk):
        key = arg.split("=", 1)[0]
        value = {"--etcd-servers": client, "--bind-address": "127.0.0.1",
                 "--secure-port": str(api_port)}.get(key)
        argv.append(f"{key}={value}" if value else arg)
    controlplane.start_process("bench-apiserver", [*argv, "--endpoint-reconciler-type=none"])
    ctx = ssl.create_default_context(cafile=str(pk.ca_cert))
    ctx.load_cert_chain(str(pk.cert("admin")), str(pk.key("admin")))
    import http.client

    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", api_port, context=ctx, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the private control plane did not become ready")
        time.sleep(0.5)
    cfg = yaml.safe_load(controlplane.paths().admin_kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{api_port}"
    kubeconfig = tmp / "quiet.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    kubeconfig.chmod(0o600)
    return kubeconfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--kubeconfig", default="/var/tmp/netiso-lab/admin.kubeconfig")
    parser.add_argument("--order", choices=("netiso-first", "kubectl-first"),
                        default="netiso-first")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--plane", choices=("lab", "quiet", "both"), default="both")
    parser.add_argument("--keep", action="store_true", help="do not delete the namespaces")
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, dict[str, float]], int, bool]] = []
    if args.plane in ("lab", "both"):
        rows.append(("lab", *measure(args, Path(args.kubeconfig), settle=True)))
    if args.plane in ("quiet", "both"):
        from tests.lab import controlplane

        with tempfile.TemporaryDirectory() as tmp:
            try:
                kubeconfig = quiet_plane(Path(tmp))
                rows.append(("quiet", *measure(args, kubeconfig, settle=False)))
            finally:
                # Also when quiet_plane itself failed half-way: both are detached processes
                # whose data directory is about to be removed under them.
                for name in QUIET_PROCESSES:
                    controlplane.stop_process(name)
    print()
    for plane, results, objects, same in rows:
        n, k = results["netiso"], results["kubectl"]
        where = ("lab (kube-router enforcing, shared machine)" if plane == "lab"
                 else "quiet private etcd + kube-apiserver (nothing watching)")
        print(f"{where}: {objects} NetworkPolicies in {args.namespaces} namespaces per tool; "
              f"same result: {'yes' if same else 'NO'}")
        print(f"  {'':8}{'first apply':>14}{'rerun (0 changed)':>20}")
        print(f"  {'netiso':8}{n['apply']:>12.2f} s{n['rerun']:>18.2f} s")
        print(f"  {'kubectl':8}{k['apply']:>12.2f} s{k['rerun']:>18.2f} s")
        print(f"  ratio (kubectl / netiso): first apply {k['apply'] / n['apply']:.1f}x, "
              f"rerun {k['rerun'] / n['rerun']:.1f}x (goal >= 3x)")
    differing = [plane for plane, _, _, same in rows if not same]
    if differing:
        # A speed figure for two tools that did not produce the same policies compares
        # nothing; a script or CI reading only the exit status must see that too.
        raise SystemExit(f"bench_apply: the two tools' results differ on: {', '.join(differing)}")


def measure(args: argparse.Namespace, kubeconfig_path: Path, *, settle: bool
            ) -> tuple[dict[str, dict[str, float]], int, bool]:
    from kubernetes import client, config

    kubeconfig = str(kubeconfig_path)
    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api(api)
    net: Any = client.NetworkingV1Api(api)
    kubectl = kubectl_binary()
    run = uuid.uuid4().hex[:6]
    sets = {tool: [f"bench-{run}-{tool[0]}-{i:03d}" for i in range(args.namespaces)]
            for tool in ("netiso", "kubectl")}
    print(f"plane: {kubeconfig}; {args.namespaces} namespaces per tool; run {run}",
          file=sys.stderr)
    t0 = time.perf_counter()
    for tool, names in sets.items():
        for name in names:
            core.create_namespace({"metadata": {"name": name, "labels": {
                "netiso-bench": f"{run}-{tool}"}}})
    print(f"created {2 * args.namespaces} namespaces in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    # A new namespace makes kube-controller-manager write a ServiceAccount and a CA ConfigMap
    # into it: 2 x N writes that would compete with whichever tool runs first. Wait them out.
    wanted = set(sets["netiso"]) | set(sets["kubectl"])
    deadline = time.monotonic() + (300 if settle else 0)
    while time.monotonic() < deadline:
        sas = {sa.metadata.namespace for sa in core.list_service_account_for_all_namespaces(
            field_selector="metadata.name=default").items}
        cms = {cm.metadata.namespace for cm in core.list_config_map_for_all_namespaces(
            field_selector="metadata.name=kube-root-ca.crt").items}
        if wanted <= sas and wanted <= cms:
            break
        time.sleep(1)
    if settle:
        time.sleep(3)
    print(f"controllers settled after {time.perf_counter() - t0:.1f} s", file=sys.stderr)

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
            elapsed, proc = timed([*NETISO, "--kubeconfig", kubeconfig, "-q", "apply",
                                   "--selector", f"netiso-bench={run}-netiso",
                                   "--concurrency", str(args.concurrency)])
            results["netiso"][phase] = elapsed
            print(f"netiso  {phase:7} {elapsed:7.2f} s   {proc.stdout.strip().splitlines()[-1]}",
                  file=sys.stderr)

        def run_kubectl(phase: str) -> None:
            elapsed, proc = timed([kubectl, "--kubeconfig", kubeconfig, "apply",
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

    if settle and not args.keep:  # the quiet plane is thrown away whole
        for names in sets.values():
            for name in names:
                core.delete_namespace(name, propagation_policy="Background")
        # Deleting 1,000 namespaces keeps the namespace controller, kube-router and etcd busy
        # for a while; a measurement started meanwhile (the quiet plane, on the same cores)
        # would be timing that work too.
        t0 = time.perf_counter()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            left = core.list_namespace(label_selector=f"netiso-bench in ({run}-netiso,"
                                                      f"{run}-kubectl)").items
            if not left:
                break
            time.sleep(2)
        print(f"namespaces deleted after {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    return results, objects, same


if __name__ == "__main__":
    main()
