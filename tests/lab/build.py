"""Build the lab's binaries from the Go module proxy into a version-keyed cache.

No registry ships kube-apiserver, so the lab compiles it (and the rest of the control plane,
kubectl, etcd and kube-router) from three small Go modules under ``tests/lab/tools``:

* ``tools/``             k8s.io/kubernetes pinned, staging modules replaced by their v0.x.y twins;
* ``tools/etcd/``        a few-line main over etcd's ``etcdmain`` (etcd ships only as libraries);
* ``tools/kube-router/`` kube-router, whose client-go v0.29 cannot share a build list with v0.37.

Each binary lands in ``<cache>/bin/<name>-<version>/<name>``: the directory name carries the
version, so bumping a pin in ``BINARIES`` (and its go.mod) builds a new binary beside the old one
instead of silently reusing it, and a cache restored by CI is reused as is. Binaries of one module
are built by ONE ``go build`` so shared packages compile once; ``-p 2`` because the machine has two
cores and the apiserver's link step alone needs several GiB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Log = Callable[[str], None]

TOOLS_DIR = Path(__file__).resolve().parent / "tools"

K8S_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
KUBE_ROUTER_VERSION = "v2.1.0"

_K8S_VERSION_PKGS = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def _k8s_ldflags() -> tuple[str, ...]:
    # Without these stamps the binaries report v0.0.0-master and kubectl warns about version skew;
    # netiso reads the server version, so the lab must tell the truth about it.
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in _K8S_VERSION_PKGS:
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    module_dir: Path
    package: str
    ldflags: tuple[str, ...] = ()


BINARIES: dict[str, Binary] = {
    b.name: b
    for b in (
        Binary("kube-apiserver", K8S_VERSION, TOOLS_DIR,
               "k8s.io/kubernetes/cmd/kube-apiserver", _k8s_ldflags()),
        Binary("kube-controller-manager", K8S_VERSION, TOOLS_DIR,
               "k8s.io/kubernetes/cmd/kube-controller-manager", _k8s_ldflags()),
        Binary("kubectl", K8S_VERSION, TOOLS_DIR, "k8s.io/kubernetes/cmd/kubectl", _k8s_ldflags()),
        Binary("etcd", ETCD_VERSION, TOOLS_DIR / "etcd", "netiso.lab/tools/etcd"),
        Binary("kube-router", KUBE_ROUTER_VERSION, TOOLS_DIR / "kube-router",
               "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",
               (f"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version="
                f"{KUBE_ROUTER_VERSION}",)),
    )
}


class BuildError(RuntimeError):
    """A binary could not be built; the message carries the tail of the compiler output."""


def cache_dir() -> Path:
    return Path(os.environ.get("NETISO_LAB_CACHE", "/root/.cache/netiso-lab"))


def binary(name: str) -> Path:
    """Path of the cached binary ``name`` (whether or not it has been built yet)."""
    b = BINARIES[name]
    return cache_dir() / "bin" / f"{b.name}-{b.version}" / b.name


def missing() -> list[str]:
    return [name for name in BINARIES if not binary(name).is_file()]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # GOTOOLCHAIN=local: a dependency's `toolchain` line must not make go try to download a
    # toolchain (only module downloads are possible here). -mod=mod: go.sum is committed but the
    # build may still need to record a missing hash on a fresh module cache.
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env.setdefault("CGO_ENABLED", "0")
    return env


def build(
    names: list[str] | None = None, *, force: bool = False, log: Log | None = None
) -> dict[str, float]:
    """Build the named binaries (default: all) that are not cached yet.

    Returns seconds spent per module directory (empty when everything was cached).
    """
    wanted = list(BINARIES) if names is None else names
    todo = [BINARIES[n] for n in wanted if force or not binary(n).is_file()]
    if not todo:
        return {}
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain (go >= 1.26) is not on PATH; the lab builds from source")
    timings: dict[str, float] = {}
    by_module: dict[Path, list[Binary]] = {}
    for b in todo:
        by_module.setdefault(b.module_dir, []).append(b)
    stage_root = cache_dir() / "tmp"
    stage_root.mkdir(parents=True, exist_ok=True)
    for module_dir, group in by_module.items():
        ldflags = ["-s", "-w"]
        for b in group:
            ldflags += [f for f in b.ldflags if f not in ldflags]
        start = time.monotonic()
        with tempfile.TemporaryDirectory(dir=stage_root) as stage:
            cmd = ["go", "build", "-p", "2", "-trimpath", "-ldflags", " ".join(ldflags),
                   "-o", stage + "/", *[b.package for b in group]]
            _say(log, f"building {', '.join(b.name for b in group)} in {module_dir.name}/")
            proc = subprocess.run(cmd, cwd=module_dir, env=_go_env(), capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
                raise BuildError(f"go build in {module_dir} failed:\n{tail}")
            for b in group:
                built = Path(stage) / Path(b.package).name
                dest = binary(b.name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                # Same filesystem: rename is atomic, so a half-written binary is never "cached".
                os.replace(built, dest)
        timings[module_dir.name] = time.monotonic() - start
        _say(log, f"built {', '.join(b.name for b in group)} in {timings[module_dir.name]:.0f} s")
    return timings


def _say(log: Log | None, text: str) -> None:
    if log is not None:
        log(text)
    else:
        print(f"lab build: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    build()
