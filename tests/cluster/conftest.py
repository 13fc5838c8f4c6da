"""Fixtures for tests that need the lab: ``lab`` (session) and ``namespace`` (per test).

The lab is shared: other engineers and other pytest sessions may be using the same one on this
machine. So the ``lab`` fixture reuses a running lab, starts one only when none is running, and
at the end of the session tears down only a lab it started itself — and not even that one while
another live session still uses it (each session registers its pid under ``<state>/users``), or
when ``NETISO_LAB_KEEP=1``. Starting is serialised by a file lock so two sessions starting at once
do not both build a lab.

API of the object the ``lab`` fixture yields: see tests/lab/client.py and tests/lab/README.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import controlplane
from tests.lab import lab as lab_mod
from tests.lab.client import LabClient


def _users_dir() -> Path:
    return controlplane.state_dir() / "users"


def _other_live_users() -> list[int]:
    live: list[int] = []
    directory = _users_dir()
    if not directory.is_dir():
        return live
    for entry in directory.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            os.kill(int(entry.name), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        live.append(int(entry.name))
    return live


@pytest.fixture(scope="session")
def lab() -> Iterator[LabClient]:
    """The running lab (started if none is running), shared by the whole session."""
    reason = lab_mod.host_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"lab test cannot run in CI: {reason}", pytrace=False)
        pytest.skip(f"lab unavailable: {reason}")

    started = False
    with lab_mod.exclusive():
        if not lab_mod.is_up():
            flavor = os.environ.get("NETISO_LAB_FLAVOR", "generic")
            lab_mod.up(lab_mod.make_spec(flavor=flavor))
            started = True
        _users_dir().mkdir(parents=True, exist_ok=True)
        (_users_dir() / str(os.getpid())).touch()
    spec = lab_mod.load_spec()
    assert spec is not None
    client = LabClient(kubeconfig=controlplane.paths().admin_kubeconfig, spec=spec)
    try:
        yield client
    finally:
        with lab_mod.exclusive():
            (_users_dir() / str(os.getpid())).unlink(missing_ok=True)
            if (started and os.environ.get("NETISO_LAB_KEEP") != "1"
                    and not _other_live_users()):
                lab_mod.down(log=lambda _text: None)


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(lab: LabClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount and kube-root-ca.crt
    ready: every pod mounts both); deleted after."""
    name = _namespace_name(request.node.name)
    lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-lab/test": "true"}}})
    deadline = time.monotonic() + 30
    while True:
        try:
            lab.core.read_namespaced_service_account("default", name)
            lab.core.read_namespaced_config_map("kube-root-ca.crt", name)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            lab.core.delete_namespace(name, propagation_policy="Background")
