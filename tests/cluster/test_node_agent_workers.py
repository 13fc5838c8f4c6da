"""Pod workers under concurrency and faults (issue #16): many pods at once on a fresh applet
directory all start, and a start that fails for a reason nobody foresaw is reported in the pod's
status (CreateContainerError, as kubelet does) and retried until the fault is gone.

Both tests change the lab's shared image directory (``<state>/images``) for a few seconds: a pod
another session starts meanwhile waits in CreateContainerError and starts on its next retry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.test_node_agent import apply, busybox, get, state, wait_for
from tests.lab import controlplane, images
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab


def _images_dir() -> Path:
    return controlplane.state_dir() / "images"


def _remove_images_dir() -> None:
    """Rename the image directory away first, so nobody sees it half-deleted."""
    target = _images_dir()
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=".images-trash-", dir=target.parent))
        os.rename(target, trash / "images")
        shutil.rmtree(trash)


@pytest.fixture
def fresh_images() -> Iterator[Path]:
    _remove_images_dir()
    yield _images_dir()


def test_many_pods_at_once_on_a_fresh_applet_dir_all_run(
    lab: LabClient, namespace: str, fresh_images: Path
) -> None:
    node = lab.spec.nodes[0].name
    names = [f"burst-{i}" for i in range(12)]
    pods = []
    for name in names:
        pod = busybox(name, ["sleep", "3600"], restart="Always")
        pod["spec"]["nodeName"] = node  # one node: every worker builds the applet dir at once
        pods.append(pod)
    assert not fresh_images.exists()
    apply(lab, namespace, *pods)
    for name in names:
        pod = wait_for(lab, namespace, name, lambda p: p["status"].get("phase") == "Running", 60)
        st = pod["status"]["containerStatuses"][0]
        assert st["ready"] is True and st["restartCount"] == 0, st
    applet_dir, applets = images.ensure_applet_dir(controlplane.state_dir())
    parent = Path(applet_dir).parent
    assert sorted(p.name for p in parent.iterdir() if p.name != ".lock") == ["bin"]
    assert {p.name for p in Path(applet_dir).iterdir()} == set(applets) | {"wget"}


def test_a_failing_start_is_reported_and_retried_until_the_fault_is_gone(
    lab: LabClient, namespace: str, fresh_images: Path
) -> None:
    # A real fault, not a mock: the image directory's place is taken by a file, so resolving the
    # busybox image fails with an OSError (the exception that used to kill the worker).
    fresh_images.write_text("not a directory\n")
    try:
        apply(lab, namespace, busybox("victim", ["sleep", "3600"], restart="Always"))
        pod = wait_for(
            lab,
            namespace,
            "victim",
            lambda p: state(p).get("waiting", {}).get("reason") == "CreateContainerError",
        )
        waiting = state(pod)["waiting"]
        assert "failed to create container c" in waiting["message"], waiting
        assert str(fresh_images) in waiting["message"], waiting
        assert pod["status"]["phase"] == "Pending"
        # Still failing on the next sync: the worker is alive and keeps the reason.
        assert state(get(lab, namespace, "victim"))["waiting"]["reason"] == "CreateContainerError"
    finally:
        fresh_images.unlink()
    pod = wait_for(lab, namespace, "victim", lambda p: p["status"].get("phase") == "Running", 45)
    st = pod["status"]["containerStatuses"][0]
    assert st["ready"] is True and "running" in st["state"], st
