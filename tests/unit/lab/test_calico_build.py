"""The Calico part of the lab's build recipe and image map (pure: no Go build, no lab).

The real builds and the real operator run in tests/cluster/test_calico.py; here only the rules
around them: which archive bytes are accepted, where things land, and what each Calico image
runs.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.lab import build, images


def _archive(path: Path, top: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_calico_binaries_are_cached_by_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path))
    assert build.binary("operator") == (
        tmp_path / "bin" / f"operator-{build.TIGERA_OPERATOR_VERSION}" / "operator")
    # The Calico binaries carry the lab's patch level too: a changed patch never reuses a binary.
    for name in ("calico-node", "calico-typha", "kube-controllers"):
        assert build.binary(name) == (
            tmp_path / "bin" / f"{name}-{build.CALICO_VERSION}+{build.CALICO_LAB_BUILD}" / name)
    # One cgo `go build` for the whole Calico tree: calico-node needs cgo, and the others share
    # its compiled packages only when built the same way.
    calico = [b for b in build.BINARIES.values() if b.source == "calico"]
    assert {b.name for b in calico} >= {"calico-node", "calico-typha", "kube-controllers",
                                        "calico-apiserver"}
    assert {(b.cgo, b.tags, b.module_dir) for b in calico} == {(True, "", Path("."))}
    # `up` never needs the shared sources: it builds the control plane and kube-router only.
    assert not any(build.BINARIES[name].source for name in build.CORE)


def test_shared_dir_defaults_beside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETISO_SHARED_DIR", raising=False)
    assert build.shared_dir() == build.REPO_DIR.parent / "shared"
    monkeypatch.setenv("NETISO_SHARED_DIR", "/elsewhere/shared")
    assert build.shared_dir() == Path("/elsewhere/shared")


def test_source_pins_match_the_shared_readme() -> None:
    readme = build.shared_dir() / "README.md"
    if not readme.is_file():
        pytest.skip(f"no shared directory at {readme.parent} (NETISO_SHARED_DIR)")
    text = readme.read_text()
    for src in build.SOURCES.values():
        assert re.search(rf"{src.sha256}\s+{re.escape(src.archive)}", text), src.archive


def test_an_archive_with_another_checksum_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NETISO_SHARED_DIR", str(tmp_path / "shared"))
    src = build.SOURCES["libbpf"]
    (tmp_path / "shared" / "sources").mkdir(parents=True)
    _archive(tmp_path / "shared" / "sources" / src.archive, src.top, {"README": b"tampered"})
    with pytest.raises(build.BuildError, match="expected " + src.sha256):
        build.unpack_source("libbpf", log=lambda _t: None)
    assert not build.source_dir("libbpf").exists()


def test_a_missing_archive_names_the_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NETISO_SHARED_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(build.BuildError, match="NETISO_SHARED_DIR"):
        build.unpack_source("calico", log=lambda _t: None)


def test_a_verified_archive_is_unpacked_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NETISO_SHARED_DIR", str(tmp_path / "shared"))
    (tmp_path / "shared" / "sources").mkdir(parents=True)
    archive = tmp_path / "shared" / "sources" / "x.tar.gz"
    _archive(archive, "x-v1", {"go.mod": b"module x\n"})
    digest = build._sha256(archive)
    monkeypatch.setitem(build.SOURCES, "x", build.Source("x.tar.gz", digest, "x-v1"))
    tree = build.unpack_source("x", log=lambda _t: None)
    assert (tree / "go.mod").read_text() == "module x\n"
    (tree / "go.mod").write_text("edited")
    assert build.unpack_source("x", log=lambda _t: None) == tree
    assert (tree / "go.mod").read_text() == "edited"  # the marker says done: not unpacked again


def test_operator_tree_gets_empty_istio_charts(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "render" / "istio").mkdir(parents=True)
    build._prepare_operator(tmp_path, None)
    charts = sorted(p.name for p in (tmp_path / "pkg" / "render" / "istio").iterdir())
    assert charts == ["base.tgz", "cni.tgz", "istiod.tgz", "ztunnel.tgz"]
    for chart in charts:
        assert gzip.decompress((tmp_path / "pkg" / "render" / "istio" / chart).read_bytes()) == b""


def test_the_calico_patch_applies_once_and_refuses_a_changed_tree(tmp_path: Path) -> None:
    rel, before, after = build.CALICO_PATCHES[0]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(f"type Map struct {{\n{before}\tm handleMap\n}}\n")
    build._patch_calico(tmp_path)
    assert (tmp_path / rel).read_text() == f"type Map struct {{\n{after}\tm handleMap\n}}\n"
    build._patch_calico(tmp_path)  # marker: a second run is a no-op, not an error
    (tmp_path / ".netiso-patched").unlink()
    with pytest.raises(build.BuildError, match="does not apply"):
        build._patch_calico(tmp_path)


def _fake_binaries(root: Path) -> None:
    for name in ("operator", "calico-node", "calico-typha", "kube-controllers", "check-status",
                 "cmdwrapper"):
        path = root / "bin" / f"{name}-{build.BINARIES[name].version}" / name
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_calico_images_run_the_built_binaries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    _fake_binaries(tmp_path / "cache")
    state = tmp_path / "state"

    operator = images.resolve("quay.io/tigera/operator:v1.42.3", state)
    assert operator.argv(["operator"], ["-manage-crds=true"]) == [
        str(build.binary("operator")), "-manage-crds=true"]

    node = images.resolve("quay.io/calico/node:v3.32.1", state)
    start = node.argv(None, None)
    assert len(start) == 1 and os.access(start[0], os.X_OK)
    assert "calico-node -startup" in Path(start[0]).read_text()
    # The readiness probe execs the image's own path; the init container a bare name.
    assert node.argv(["/bin/calico-node", "-felix-ready"], None) == [
        str(build.binary("calico-node")), "-felix-ready"]
    assert node.argv(["calico-node", "-init", "-best-effort"], None)[0] == str(
        build.binary("calico-node"))

    # kube-controllers' status file lives in the container's private /tmp, for it and its probes.
    controllers = images.resolve("quay.io/calico/kube-controllers:v3.32.1", state)
    entry = Path(controllers.argv(None, None)[0]).read_text()
    assert "exec cmdwrapper kube-controllers --status-file=/tmp/" in entry
    check = controllers.argv(["/usr/bin/check-status", "-r"], None)
    assert "exec check-status --file=/tmp/" in Path(check[0]).read_text() and check[1:] == ["-r"]
    assert controllers.path.split(":")[:3] == [
        str(build.binary(n).parent) for n in ("kube-controllers", "check-status", "cmdwrapper")]

    typha = images.resolve("quay.io/calico/typha:v3.32.1", state)
    assert "exec calico-typha" in Path(typha.argv(None, None)[0]).read_text()


def test_calico_storage_helpers_are_no_op_stand_ins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not Path(images.BUSYBOX).exists():
        pytest.skip("busybox-static not installed")
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    flexvol = images.resolve("quay.io/calico/pod2daemon-flexvol:v3.32.1", tmp_path)
    assert subprocess.run(flexvol.argv(None, None), check=False, timeout=10).returncode == 0
    for ref in ("quay.io/calico/csi:v3.32.1", "quay.io/calico/node-driver-registrar:v3.32.1"):
        # The DaemonSet passes the real driver's flags; the stand-in keeps sleeping regardless.
        argv = images.resolve(ref, tmp_path).argv(None, ["--nodeid=lab-node-1", "--v=5"])
        proc = subprocess.Popen(argv)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        finally:
            proc.kill()
            proc.wait()


def test_calico_images_of_other_versions_or_unbuilt_are_not_pulled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETISO_LAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(images.ImageNotFound, match=r"python -m tests\.lab build"):
        images.resolve("quay.io/calico/node:v3.32.1", tmp_path)
    _fake_binaries(tmp_path / "cache")
    for ref in ("quay.io/calico/node:v3.31.0", "docker.io/calico/node:v3.32.1",
                "quay.io/calico/key-cert-provisioner:v3.32.1", "quay.io/tigera/operator:latest"):
        with pytest.raises(images.ImageNotFound, match="no local program"):
            images.resolve(ref, tmp_path)
