"""Start-up benchmark: `netiso --help` against `python -c pass`, measured in the same run.

The anchor matters more than the absolute number: on a loaded CI machine both slow down, and
the ratio says how much of the start-up is netiso's own (imports it should have kept lazy).
Runs are interleaved so a burst of background load hits both series alike; the median is
reported because start-up times have a long right tail.

Usage: python bench/bench_startup.py [--runs N] [--check]   (--check: exit 1 above the goal)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_SECONDS = 0.25


def _netiso_argv() -> list[str]:
    script = Path(sys.executable).with_name("netiso")
    if script.exists():
        return [str(script)]
    found = shutil.which("netiso")
    if found:
        return [found]
    return [sys.executable, "-c", "from netiso.cli import main; main()"]


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--check", action="store_true", help="exit 1 if the median is too slow")
    args = parser.parse_args()

    netiso = [*_netiso_argv(), "--help"]
    anchor = [sys.executable, "-c", "pass"]
    _time(netiso)  # warm the page cache and .pyc files: measure start-up, not the first compile
    _time(anchor)
    netiso_times: list[float] = []
    anchor_times: list[float] = []
    for _ in range(args.runs):
        netiso_times.append(_time(netiso))
        anchor_times.append(_time(anchor))

    n_med, a_med = statistics.median(netiso_times), statistics.median(anchor_times)
    ok = n_med < GOAL_SECONDS

    def row(label: str, times: list[float]) -> str:
        med, low = statistics.median(times) * 1000, min(times) * 1000
        return f"{label:<22}median {med:7.1f} ms   min {low:7.1f} ms"

    print(f"runs:                 {args.runs} (interleaved)")
    print(row("python -c pass:", anchor_times))
    print(row("netiso --help:", netiso_times))
    print(f"ratio (median):       {n_med / a_med:.1f}x python -c pass")
    print(f"goal:                 < {GOAL_SECONDS * 1000:.0f} ms -> {'met' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
