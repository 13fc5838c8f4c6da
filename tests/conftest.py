"""Suite-wide test policy: when lab tests run, skip, or fail.

Tests marked ``lab`` need the local lab (root on Linux: network namespaces, iptables, a real
kube-apiserver). Outside CI they skip with the precise reason when the machine cannot host the
lab or when ``NETISO_SKIP_LAB=1``. In CI (``CI=true``) a lab test never skips: an unusable machine
is a failure with the same reason, so a green CI cannot hide untested enforcement.

Tests marked ``lab_teardown`` destroy the lab they run against; they run only when selected
explicitly (``-m lab_teardown``), as a separate, final pytest invocation, so a developer's shared
lab is never torn down by an ordinary test run.

In CI a running lab that another checkout started is refused (``tests.lab.lab.check_reuse``): its
node agent and network code are that checkout's, so passing tests would prove nothing about this
one. Locally it is reused, as the ``lab`` fixture always has.
"""

from __future__ import annotations

import os

import pytest

from tests.lab import controlplane
from tests.lab.lab import check_reuse, host_unavailable_reason


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lab_teardown: brings the lab down; runs only with -m lab_teardown, as a final invocation",
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = config.getoption("markexpr") or ""
    for item in items:
        if item.get_closest_marker("lab_teardown") and "lab_teardown" not in selected:
            item.add_marker(pytest.mark.skip(
                reason="tears the lab down: run separately with `pytest -m lab_teardown`"
            ))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not (item.get_closest_marker("lab") or item.get_closest_marker("lab_teardown")):
        return
    reason = host_unavailable_reason()
    if reason is None and os.environ.get("NETISO_SKIP_LAB") == "1":
        reason = "NETISO_SKIP_LAB=1"
    if reason is None:
        if item.get_closest_marker("lab"):
            try:
                check_reuse()
            except controlplane.LabError as exc:
                pytest.fail(str(exc), pytrace=False)
        return
    if _in_ci():
        pytest.fail(f"lab test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")
