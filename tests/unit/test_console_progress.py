"""The reporter's progress: which drawing for which situation, and the plain lines' content."""

from __future__ import annotations

import pytest

from netiso.console import (
    BarProgress,
    GlobalOptions,
    OutputFormat,
    PlainProgress,
    Reporter,
)


class _Tty(Reporter):
    """A reporter that believes stderr is a terminal (the real one is checked in the lab test
    on a pseudo-terminal)."""

    @property
    def interactive(self) -> bool:
        return True


@pytest.mark.parametrize(("options", "tty", "bar"), [
    (GlobalOptions(), True, True),
    (GlobalOptions(no_color=True), True, True),  # NO_COLOR keeps the bar, drops its colour
    (GlobalOptions(verbosity=-1), True, False),  # -q
    (GlobalOptions(output=OutputFormat.JSON), True, False),  # scripts read -o json
    (GlobalOptions(output=OutputFormat.YAML), True, True),
    (GlobalOptions(), False, False),  # no terminal
])
def test_which_progress(options: GlobalOptions, tty: bool, bar: bool) -> None:
    rep = _Tty(options) if tty else Reporter(options)
    with rep.progress("applying") as progress:
        assert isinstance(progress, BarProgress if bar else PlainProgress)


def test_plain_lines_count_each_tenth_of_a_long_run(capsys: pytest.CaptureFixture[str]) -> None:
    rep = Reporter(GlobalOptions())
    with rep.progress("deleting") as progress:
        progress.start(100)
        for i in range(100):
            progress.advance(f"NetworkPolicy ns/p-{i}", "deleted", failed=(i == 42),
                             count=1)
    err = capsys.readouterr().err
    counts = [line.rsplit(" ", 1)[-1] for line in err.splitlines() if "info deleting:" in line]
    assert counts == [f"{n}/100" for n in range(10, 100, 10)]
    failed = [line for line in err.splitlines() if " failed " in line]
    assert len(failed) == 1 and failed[0].endswith("failed NetworkPolicy ns/p-42: deleted")
    assert "p-41" not in err  # items themselves only with -v


def test_plain_lines_item_by_item_with_v_and_nothing_but_failures_with_q(
        capsys: pytest.CaptureFixture[str]) -> None:
    with Reporter(GlobalOptions(verbosity=1)).progress("applying") as progress:
        progress.start(3)
        progress.advance("namespace a", "applied")
    assert capsys.readouterr().err.endswith("info namespace a: applied\n")
    with Reporter(GlobalOptions(verbosity=-1)).progress("applying") as progress:
        progress.start(300)
        for i in range(300):
            progress.advance(f"namespace n{i}", "applied")
        progress.advance("namespace z", "boom", failed=True)
    err = capsys.readouterr().err
    assert err.endswith("failed namespace z: boom\n") and len(err.splitlines()) == 1
