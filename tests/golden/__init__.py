"""Golden renders: `netiso render -p P -f tests/golden/values.yaml` per provider, pinned to
``BUNDLE_VERSION``.

A render that changes must come with a new bundle version (clusters tell bundles apart by the
`netiso.io/bundle-version` label), so each golden file records the version it was rendered at,
and tests/unit/test_golden_render.py fails when the render differs while the version does not.
After a deliberate change: bump ``BUNDLE_VERSION`` in netiso/bundle.py, then
``python -m tests.golden`` rewrites the files (and refuses to while the version is unchanged).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VALUES = HERE / "values.yaml"
PROVIDERS = ("generic", "eks", "gke", "aks")
HEADER = "# golden render, bundle version "


def path(provider: str) -> Path:
    return HERE / f"render-{provider}.yaml"


def render(provider: str) -> str:
    """The render through the CLI, as a user gets it (stdout of `netiso render`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "netiso", "render", "-p", provider, "-f", str(VALUES)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return proc.stdout


def recorded(provider: str) -> tuple[str, str]:
    """(bundle version, render) as recorded in the golden file."""
    text = path(provider).read_text()
    first, _, body = text.partition("\n")
    assert first.startswith(HEADER), f"{path(provider)}: first line must be '{HEADER}vN'"
    return first.removeprefix(HEADER), body


def compare(recorded_version: str, recorded_body: str, version: str, rendered: str
            ) -> str | None:
    """Why a render does not match its golden file (None when it does)."""
    if rendered == recorded_body and version == recorded_version:
        return None
    if rendered != recorded_body and version == recorded_version:
        return (f"the render changed but BUNDLE_VERSION is still {version}: bump it in "
                "netiso/bundle.py, then run `python -m tests.golden`")
    if rendered == recorded_body:
        return (f"BUNDLE_VERSION is {version} but the golden render was recorded at "
                f"{recorded_version} with the same output: run `python -m tests.golden`")
    return (f"BUNDLE_VERSION moved {recorded_version} -> {version} and the render changed: "
            "review the diff, then run `python -m tests.golden`")


def main() -> int:
    from netiso.bundle import BUNDLE_VERSION

    for provider in PROVIDERS:
        text = render(provider)
        if path(provider).exists():
            version, body = recorded(provider)
            if body == text:
                continue
            if version == BUNDLE_VERSION:
                print(f"{path(provider)}: the render changed but BUNDLE_VERSION is still "
                      f"{BUNDLE_VERSION}: bump it in netiso/bundle.py first", file=sys.stderr)
                return 1
        path(provider).write_text(f"{HEADER}{BUNDLE_VERSION}\n{text}")
        print(f"wrote {path(provider)}", file=sys.stderr)
    return 0
