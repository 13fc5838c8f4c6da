"""``python -m tests.lab up|down|status|enforce on|off|build``.

Progress goes to stderr, results (status rows, leftovers, timings) to stdout; any lab failure is
one line on stderr and exit code 1, never a traceback (the detail is in the component's log, whose
path the message names).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.lab import build, controlplane, lab, network


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or complete) the lab")
    up.add_argument("--flavor", choices=lab.FLAVORS, default=None,
                    help="node look: generic (default), eks, gke, aks")
    up.add_argument("--nodes", type=int, choices=(1, 2), default=None, help="node count (2)")
    up.add_argument("--no-enforce", action="store_true",
                    help="start without the lab's own NetworkPolicy enforcement (kube-router "
                         "off; the default for --flavor eks, gke and aks)")
    sub.add_parser("down", help="stop the lab and remove everything it created")
    sub.add_parser("status", help="one line per component")
    enforce = sub.add_parser("enforce", help="turn NetworkPolicy enforcement on or off")
    enforce.add_argument("state", choices=("on", "off"))
    sub.add_parser("build", help="build the binaries missing from the cache")
    sub.add_parser("leftovers", help="list lab objects still present (empty = clean)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "build":
        start = time.monotonic()
        timings = build.build()
        for module, seconds in timings.items():
            print(f"built {module}/ in {seconds:.0f} s")
        for name in build.BINARIES:
            print(f"{name:<24} {build.binary(name)}")
        print(f"total {time.monotonic() - start:.0f} s")
        return 0
    if args.command == "up":
        current = lab.load_spec()
        spec = lab.make_spec(
            flavor=args.flavor or (current.flavor if current else "generic"),
            node_count=args.nodes or (len(current.nodes) if current else 2),
            enforce=False if args.no_enforce else None,
        )
        start = time.monotonic()
        timings = lab.up(spec)
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        print(f"lab up in {time.monotonic() - start:.1f} s ({phases})")
        print(f"kubeconfig: {controlplane.paths().admin_kubeconfig}")
        return 0
    if args.command == "down":
        left = lab.down()
        for item in left:
            print(f"leftover: {item}")
        return 1 if left else 0
    if args.command == "status":
        rows = lab.status()
        for name, state in rows:
            print(f"{name:<24} {state}")
        return 0
    if args.command == "enforce":
        lab.set_enforcement(args.state == "on")
        print(f"enforcement {args.state}")
        return 0
    if args.command == "leftovers":
        # Processes count too: network.leftovers() lists every one carrying the lab's marker.
        left = network.leftovers()
        for item in left:
            print(item)
        return 1 if left else 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("up", "down", "enforce"):
            with lab.exclusive(log=lambda text: print(f"lab: {text}", file=sys.stderr)):
                return _run(args)
        return _run(args)
    except (controlplane.LabError, network.LabNetworkError, build.BuildError, ValueError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
