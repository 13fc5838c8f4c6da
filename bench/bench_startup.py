"""Start-up benchmark: `netiso --help` against `python -c pass`, measured in the same run.

The anchor matters more than the absolute number: on a loaded CI machine both slow down, and
the ratio says how much of the start-up is netiso's own (imports it should have kept lazy).
Runs are interleaved so a burst of background load hits both series alike. Both the median and
the minimum are reported: start-up times have a long right tail, and on a busy machine the
minimum is the closest to what an idle one would show. CPU time (user + system of the child) is
reported beside wall time because it barely moves with other processes' load, so a figure taken
on a busy machine can still be compared with one taken on a quiet one.

Usage: python bench/bench_startup.py [--runs N] [--check]   (--check: exit 1 above the goal)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

GOAL_SECONDS = 0.25


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit 2 (argparse would add the usage block)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _netiso_argv() -> list[str]:
    script = Path(sys.executable).with_name("netiso")
    if script.exists():
        return [str(script)]
    found = shutil.which("netiso")
    if found:
        return [found]
    return [sys.executable, "-c", "from netiso.cli import main; main()"]


@dataclass
class Sample:
    wall: float
    cpu: float  # user + system time of the child


def _time(argv: list[str]) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu)


def main() -> int:
    parser = _Parser(
        prog="bench_startup.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--runs", type=_runs, default=21, help="interleaved runs (>= 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the median is too slow")
    args = parser.parse_args()
    runs: int = args.runs

    netiso = [*_netiso_argv(), "--help"]
    anchor = [sys.executable, "-c", "pass"]
    _time(netiso)  # warm the page cache and .pyc files: measure start-up, not the first compile
    _time(anchor)
    netiso_samples: list[Sample] = []
    anchor_samples: list[Sample] = []
    for _ in range(runs):
        netiso_samples.append(_time(netiso))
        anchor_samples.append(_time(anchor))

    n_wall = [s.wall for s in netiso_samples]
    a_wall = [s.wall for s in anchor_samples]
    n_med = statistics.median(n_wall)
    ok = n_med < GOAL_SECONDS

    def row(label: str, samples: list[Sample]) -> str:
        wall = [s.wall * 1000 for s in samples]
        cpu = [s.cpu * 1000 for s in samples]
        return (
            f"{label:<22}wall median {statistics.median(wall):7.1f} ms  min {min(wall):7.1f} ms"
            f"   cpu median {statistics.median(cpu):7.1f} ms  min {min(cpu):7.1f} ms"
        )

    print(f"runs:                 {runs} (interleaved)")
    print(row("python -c pass:", anchor_samples))
    print(row("netiso --help:", netiso_samples))
    print(f"ratio (median):       {n_med / statistics.median(a_wall):.1f}x python -c pass")
    print(f"ratio (min):          {min(n_wall) / min(a_wall):.1f}x python -c pass")
    print(f"goal:                 < {GOAL_SECONDS * 1000:.0f} ms -> {'met' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
