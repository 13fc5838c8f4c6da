"""The render per provider is pinned by golden files tied to BUNDLE_VERSION (tests/golden)."""

from __future__ import annotations

import difflib

import pytest

from netiso.bundle import BUNDLE_VERSION
from tests import golden


@pytest.mark.parametrize("provider", golden.PROVIDERS)
def test_render_matches_its_golden_file_at_this_bundle_version(provider: str) -> None:
    version, body = golden.recorded(provider)
    rendered = golden.render(provider)
    why = golden.compare(version, body, BUNDLE_VERSION, rendered)
    if why is not None:
        diff = "".join(difflib.unified_diff(body.splitlines(True), rendered.splitlines(True),
                                            f"golden/{provider} ({version})",
                                            f"render ({BUNDLE_VERSION})", n=1))
        pytest.fail(f"{provider}: {why}\n{diff[:4000]}")


def test_providers_render_differently() -> None:
    # Otherwise one golden file would do, and a provider's defaults could silently vanish.
    bodies = {p: golden.recorded(p)[1] for p in golden.PROVIDERS}
    assert len(set(bodies.values())) >= 3  # generic and AKS share the metadata list today


def test_a_changed_render_without_a_new_version_fails() -> None:
    body = "kind: NetworkPolicy\n"
    assert golden.compare("v7", body, "v7", body) is None
    assert "bump it" in str(golden.compare("v7", body, "v7", body + "# more\n"))
    assert "run `python -m tests.golden`" in str(golden.compare("v7", body, "v8", body + "x"))
    assert "same output" in str(golden.compare("v7", body, "v8", body))
