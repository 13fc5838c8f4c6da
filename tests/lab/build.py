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

Calico (the Tigera operator and calico-node, calico-typha, kube-controllers, the API server) is
built from the upstream tag archives in the project's shared directory (``../shared/sources``
beside the checkout, or ``$NETISO_SHARED_DIR/sources``), because the Go module proxy refuses both
trees at these versions (the operator's nested ``api`` module, the Calico monorepo); every other
dependency comes from the proxy as usual. Each archive's sha256 is checked against ``SOURCES``
before it is unpacked into ``<cache>/src/`` (never into the repository), and the trees get
exactly the two additions upstream's own build makes:

* the operator embeds four Istio chart archives (``pkg/render/istio/*.tgz``) that its Makefile
  downloads at build time and git does not carry; empty gzip files satisfy ``go:embed``, and
  nothing in the lab renders Istio;
* calico-node links libbpf statically through cgo (felix cleans up BPF state even in iptables
  mode, and a ``CGO_ENABLED=0`` build panics there with "LIBBPF syscall stub"), so libbpf (the
  version Calico's metadata.mk pins) is unpacked at ``felix/bpf-gpl/libbpf`` and built with
  upstream's own make invocation (needs libelf-dev, zlib1g-dev; the link needs libpcap-dev).

The Calico binaries are not needed to start the lab, so ``up`` builds only ``CORE`` and the image
map names the missing build when a Calico pod is created.
"""

from __future__ import annotations

import gzip
import hashlib
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
TIGERA_OPERATOR_VERSION = "v1.42.3"
CALICO_VERSION = "v3.32.1"
LIBBPF_VERSION = "v1.6.2"

REPO_DIR = TOOLS_DIR.parents[2]

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
class Source:
    """An upstream tag archive in the shared directory, unpacked as ``<cache>/src/<top>``."""

    archive: str
    sha256: str
    top: str


SOURCES: dict[str, Source] = {
    "tigera-operator": Source(
        f"tigera-operator-{TIGERA_OPERATOR_VERSION}.tar.gz",
        "7515b4a8c5d963ac1ce6b17458ccba9486a0af580d34b742f9947b324a7cf4ff",
        f"tigera-operator-{TIGERA_OPERATOR_VERSION}",
    ),
    "calico": Source(
        f"calico-{CALICO_VERSION}.tar.gz",
        "dcd3b574adf2330cb9739c8ef69575f77c00a5969543d8f4dc817aacde9fc994",
        f"calico-{CALICO_VERSION}",
    ),
    "libbpf": Source(
        f"libbpf-{LIBBPF_VERSION}.tar.gz",
        "9a15368cae93f57625e403c0058bb2b9a0d8c811488ad403db2b5f3d9749dd96",
        f"libbpf-{LIBBPF_VERSION}",
    ),
}

_CALICO_LDFLAGS = (f"-X github.com/projectcalico/calico/pkg/buildinfo.Version={CALICO_VERSION}",)

# The one source change the lab makes to Calico, for the Go toolchain (upstream builds v3.32.1 with
# Go 1.25.11, metadata.mk; the lab has Go 1.26). Go 1.26 stores a struct of one pointer plus
# zero-size fields directly in an interface (golang/go CL 681937, issue #74935); before, only a
# struct with a single pointer field was. uniquelabels.Map is `struct{ _ [0]func(); m map }`, and
# json-iterator (libcalico-go's JSON) reaches its value-receiver MarshalJSON with the old layout:
# under Go 1.26 typha panics serialising its first snapshot ("makeslice: len out of range" in
# encoding/json's mapEncoder, from uniquelabels.Map.MarshalJSON). Dropping the zero-size marker
# field (it only made Map non-comparable at compile time; nothing compares Maps with ==) makes
# Map a single-pointer struct, laid out the same way by both toolchains.
CALICO_PATCHES = (
    ("lib/std/uniquelabels/unique_labels.go",
     "\t_ [0]func() // Explicitly non-comparable; must use Equals() method.\n", ""),
)
# Part of the cache key of the patched binaries: a change to CALICO_PATCHES bumps it, so a binary
# built from differently patched sources is never reused.
CALICO_LAB_BUILD = "lab1"
_CALICO_BUILD_VERSION = f"{CALICO_VERSION}+{CALICO_LAB_BUILD}"


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    module_dir: Path
    package: str
    ldflags: tuple[str, ...] = ()
    source: str = ""  # a SOURCES key: module_dir is relative to that unpacked tree
    cgo: bool = False
    tags: str = ""

    def directory(self) -> Path:
        return source_dir(self.source) / self.module_dir if self.source else self.module_dir


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
        # The image's command is `operator`; upstream's Makefile builds with these tags.
        Binary("operator", TIGERA_OPERATOR_VERSION, Path("."), "./cmd/main.go",
               (f"-X github.com/tigera/operator/version.VERSION={TIGERA_OPERATOR_VERSION}",),
               source="tigera-operator", tags="osusergo,netgo"),
        # Every Calico binary with cgo, in calico-node's one `go build` (calico-node needs cgo
        # for libbpf; CGO_ENABLED changes the build of `net` and everything above it, so the
        # others built without cgo would compile the whole Kubernetes client stack a second
        # time: most of a cold build's time).
        Binary("calico-node", _CALICO_BUILD_VERSION, Path("."), "./node/cmd/calico-node",
               _CALICO_LDFLAGS, source="calico", cgo=True),
        Binary("calico-typha", _CALICO_BUILD_VERSION, Path("."), "./typha/cmd/calico-typha",
               _CALICO_LDFLAGS, source="calico", cgo=True),
        Binary("kube-controllers", _CALICO_BUILD_VERSION, Path("."),
               "./kube-controllers/cmd/kube-controllers", _CALICO_LDFLAGS, source="calico",
               cgo=True),
        # The kube-controllers image's probes run /usr/bin/check-status; its entrypoint is
        # /usr/bin/wrapper (restarts kube-controllers when it exits with 129).
        Binary("check-status", _CALICO_BUILD_VERSION, Path("."),
               "./kube-controllers/cmd/check-status",
               _CALICO_LDFLAGS, source="calico", cgo=True),
        Binary("cmdwrapper", _CALICO_BUILD_VERSION, Path("."), "./kube-controllers/cmd/wrapper",
               _CALICO_LDFLAGS, source="calico", cgo=True),
        # The calico/apiserver image's /code/apiserver: the aggregated API server that serves
        # projectcalico.org/v3, which the operator's tiers controller needs (APIServer resource).
        Binary("calico-apiserver", _CALICO_BUILD_VERSION, Path("."), "./apiserver/cmd/apiserver",
               _CALICO_LDFLAGS, source="calico", cgo=True),
    )
}

# What `up` needs: the control plane, kubectl, kube-router. The Calico binaries are built by
# `python -m tests.lab build` (tests/lab/setup.sh) and only Calico's images use them.
CORE = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "kube-router")


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


def shared_dir() -> Path:
    """The project's shared inputs: ``$NETISO_SHARED_DIR``, else ``shared/`` beside the checkout
    (where CI puts its copy)."""
    env = os.environ.get("NETISO_SHARED_DIR")
    return Path(env) if env else REPO_DIR.parent / "shared"


def source_dir(key: str) -> Path:
    return cache_dir() / "src" / SOURCES[key].top


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_source(key: str, *, log: Log | None = None) -> Path:
    """Verify and unpack one shared archive into the cache (once; the marker file is written
    last, so an interrupted unpack is redone, never half-used)."""
    src = SOURCES[key]
    target = source_dir(key)
    marker = target / ".netiso-unpacked"
    if marker.is_file() and marker.read_text().strip() == src.sha256:
        return target
    archive = shared_dir() / "sources" / src.archive
    if not archive.is_file():
        raise BuildError(
            f"{archive} is missing: the Calico builds read the project's shared source archives "
            f"(set NETISO_SHARED_DIR to the directory holding sources/)"
        )
    actual = _sha256(archive)
    if actual != src.sha256:
        raise BuildError(f"{archive}: sha256 {actual}, expected {src.sha256}; refusing to build it")
    _say(log, f"unpacking {src.archive} (sha256 verified)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run(["tar", "-xzf", str(archive), "-C", tmp], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0 or not (Path(tmp) / src.top).is_dir():
            raise BuildError(f"unpacking {archive} failed: {proc.stderr.strip()[-2000:]}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / src.top, target)
    marker.write_text(src.sha256 + "\n")
    return target


def _prepare_operator(tree: Path, log: Log | None) -> None:
    # Upstream's Makefile downloads these Istio charts at build time (they are not in git) and
    # go:embed needs them to exist; empty archives suffice because the lab never renders Istio.
    for chart in ("base", "istiod", "cni", "ztunnel"):
        path = tree / "pkg" / "render" / "istio" / f"{chart}.tgz"
        if not path.is_file():
            path.write_bytes(gzip.compress(b""))


def _patch_calico(tree: Path) -> None:
    marker = tree / ".netiso-patched"
    if marker.is_file() and marker.read_text().strip() == CALICO_LAB_BUILD:
        return
    for rel, before, after in CALICO_PATCHES:
        path = tree / rel
        text = path.read_text()
        if before not in text:
            raise BuildError(f"{path}: the lab's patch does not apply (expected {before!r})")
        path.write_text(text.replace(before, after, 1))
    marker.write_text(CALICO_LAB_BUILD + "\n")


def _prepare_calico(tree: Path, log: Log | None) -> None:
    _patch_calico(tree)
    libbpf = tree / "felix" / "bpf-gpl" / "libbpf"
    if not (libbpf / ".netiso-unpacked").is_file():
        if libbpf.exists():
            shutil.rmtree(libbpf)
        shutil.copytree(unpack_source("libbpf", log=log), libbpf, symlinks=True)
    if (libbpf / "src" / "amd64" / "libbpf.a").is_file():
        return
    if shutil.which("make") is None or shutil.which("cc") is None:
        raise BuildError("building libbpf for calico-node needs make and a C compiler (gcc)")
    _say(log, f"building libbpf {LIBBPF_VERSION} (static) for calico-node")
    # Upstream's own invocation (felix/Makefile); OBJDIR=amd64 is where calico-node's cgo
    # directives look for libbpf.a.
    proc = subprocess.run(["make", "-C", str(libbpf / "src"), "BUILD_STATIC_ONLY=1",
                           "OBJDIR=amd64", "-j2"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BuildError(f"libbpf build failed (needs libelf-dev and zlib1g-dev):\n{tail}")


_PREPARE: dict[str, Callable[[Path, Log | None], None]] = {
    "tigera-operator": _prepare_operator,
    "calico": _prepare_calico,
}


def _go_env(cgo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # GOTOOLCHAIN=local: a dependency's `toolchain` line must not make go try to download a
    # toolchain (only module downloads are possible here). -mod=mod: go.sum is committed but the
    # build may still need to record a missing hash on a fresh module cache.
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["CGO_ENABLED"] = "1" if cgo else "0"
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
    # One `go build` per (tree, cgo, tags): cgo changes the build of shared packages anyway.
    groups: dict[tuple[str, Path, bool, str], list[Binary]] = {}
    for b in todo:
        groups.setdefault((b.source, b.module_dir, b.cgo, b.tags), []).append(b)
    stage_root = cache_dir() / "tmp"
    stage_root.mkdir(parents=True, exist_ok=True)
    for (source, _, cgo, tags), group in groups.items():
        start = time.monotonic()
        if source:
            unpack_source(source, log=log)
            _PREPARE[source](source_dir(source), log)
        module_dir = group[0].directory()
        label = source or module_dir.name
        ldflags = ["-s", "-w"]
        for b in group:
            ldflags += [f for f in b.ldflags if f not in ldflags]
        with tempfile.TemporaryDirectory(dir=stage_root) as stage:
            cmd = ["go", "build", "-p", "2", "-trimpath", "-ldflags", " ".join(ldflags),
                   *(["-tags", tags] if tags else []),
                   "-o", stage + "/", *[b.package for b in group]]
            _say(log, f"building {', '.join(b.name for b in group)} in {label}/")
            proc = subprocess.run(cmd, cwd=module_dir, env=_go_env(cgo), capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
                raise BuildError(f"go build in {module_dir} failed:\n{tail}")
            for b in group:
                # `go build -o dir/` names a binary after its package directory, or after the
                # file for a single .go file (the operator's ./cmd/main.go).
                built = Path(stage) / Path(b.package).name.removesuffix(".go")
                dest = binary(b.name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                # Same filesystem: rename is atomic, so a half-written binary is never "cached".
                os.replace(built, dest)
        key = f"{label}{' (cgo)' if cgo else ''}"
        timings[key] = timings.get(key, 0.0) + time.monotonic() - start
        _say(log, f"built {', '.join(b.name for b in group)} in {time.monotonic() - start:.0f} s")
    return timings


def _say(log: Log | None, text: str) -> None:
    if log is not None:
        log(text)
    else:
        print(f"lab build: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    build()
