"""Image -> local program map for the lab's node agent.

The lab has no container engine and no registry access, so an "image" here is a recipe for running
a program already on this machine, with the image's entrypoint/cmd semantics kept:

- any busybox image (`busybox`, `busybox:1.36`, `registry.k8s.io/e2e-test-images/busybox:...`,
  anything whose last path component contains `busybox`) and `alpine`: Debian's busybox-static.
  The container gets a PATH whose first entry is a directory of applet symlinks, so `sh -c "nc ..."`
  runs busybox's shell and applets exactly as in the real image; absolute `/bin/<applet>` argv[0]s
  are rewritten to the applet too: on this host `/bin/sh` is dash and `/bin/nc` may not exist.
- `registry.k8s.io/pause`: a busybox `sleep` (pause does nothing but wait for a signal); so are the
  EKS flavour's `amazon-k8s-cni` and `aws-network-policy-agent` (an inert aws-node, aws_node.py).
- `netiso.lab/dnsmasq`: the lab's DNS image; its entrypoint is Debian's dnsmasq serving the hosts
  directory the node agent keeps up to date (see tests/lab/dns.py). coredns images are NOT mapped:
  their Corefile arguments cannot be honoured by dnsmasq and pretending would be dishonest.

Every other image is unknown: `resolve` raises ImageNotFound with a real, specific message, and the
node agent reports it the way kubelet does (Waiting: ErrImagePull, then ImagePullBackOff).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = "/bin/busybox"
DNSMASQ = "/usr/sbin/dnsmasq"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DNS_IMAGE = "netiso.lab/dnsmasq:2.90"
# The EKS flavour's aws-node DaemonSet (aws_node.py): inert, like pause. Nothing of the VPC CNI
# needs to run; the node agent wires pods the way it would.
AWS_NODE_IMAGES = ("amazon-k8s-cni", "aws-network-policy-agent")


class ImageNotFound(Exception):
    """The image has no local program in the lab; the message is shown in the pod status."""


@dataclass(frozen=True)
class Image:
    """A resolved image: its reference, entrypoint/cmd and the environment it brings."""

    reference: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    path: str = SYSTEM_PATH
    applets: frozenset[str] = field(default_factory=frozenset)
    applet_dir: str = ""

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """Kubernetes' rule: command replaces ENTRYPOINT, args replace CMD (and a command alone
        drops CMD)."""
        if command:
            argv = list(command) + list(args or [])
        elif args:
            argv = list(self.entrypoint) + list(args)
        else:
            argv = list(self.entrypoint) + list(self.cmd)
        if not argv:
            raise ImageNotFound(
                f"image {self.reference} has no entrypoint or cmd and none was given"
            )
        head = argv[0]
        if self.applet_dir and head.startswith("/") and os.path.basename(head) in self.applets:
            argv[0] = os.path.join(self.applet_dir, os.path.basename(head))
        elif "/" not in head:
            # Resolve on the image's PATH here, as a container runtime does: the container init
            # is busybox-static's shell, which would run its own applet for a bare `sh`.
            argv[0] = shutil.which(head, path=self.path) or head
        return argv


def normalize(image: str) -> tuple[str, str]:
    """Docker reference normalisation: 'busybox' -> ('docker.io/library/busybox', 'latest')."""
    ref = image.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, tag = ref, ""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) == 1:
        name = f"docker.io/library/{name}"
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        name = f"docker.io/{name}"
    return name, tag or (f"@{digest}" if digest else "latest")


def lab_cache() -> Path:
    return Path(os.environ.get("NETISO_LAB_CACHE", "/root/.cache/netiso-lab"))


def image_busybox() -> str:
    """The busybox that busybox images run.

    Debian's busybox-static is built with a "standalone" shell: `sh -c "wget ..."` runs the
    built-in applet without a PATH lookup, so no wrapper on PATH can take effect inside scripts.
    Debian's dynamically linked `busybox` package (same version) does look commands up on PATH,
    like the shell of a real busybox image with its /bin links, so when `fetch_image_busybox` has
    unpacked it into the cache it is preferred; busybox-static is the fallback.
    """
    dynamic = lab_cache() / "busybox-deb" / "bin" / "busybox"
    return str(dynamic) if os.access(dynamic, os.X_OK) else BUSYBOX


def fetch_image_busybox() -> Path:
    """Unpack Debian's `busybox` package into the cache (it conflicts with busybox-static as an
    installed package, so it is downloaded and extracted instead). Idempotent."""
    target = lab_cache() / "busybox-deb"
    binary = target / "bin" / "busybox"
    if os.access(binary, os.X_OK):
        return binary
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(["apt-get", "download", "busybox"], cwd=tmp, check=True, capture_output=True)
        debs = sorted(Path(tmp).glob("busybox_*.deb"))
        staging = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(staging)], check=True)
        os.replace(staging, target)
    return binary


@functools.cache
def _applets(busybox: str) -> frozenset[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return frozenset(a for a in out.split() if a and "/" not in a)


# Debian 12's busybox wget has no timeout option and segfaults on `wget -T N` (before any I/O),
# while probe scripts use -T to bound a blocked connection. This wrapper strips -T/--timeout and
# enforces the limit with busybox `timeout`; every other wget behaviour is busybox's own.
WGET_SHIM = """#!/bin/busybox sh
t=
want=
for a do
  shift
  if [ -n "$want" ]; then t=$a; want=; continue; fi
  case $a in
    -T|--timeout) want=1; continue;;
    -T*) t=${a#-T}; continue;;
    --timeout=*) t=${a#--timeout=}; continue;;
  esac
  set -- "$@" "$a"
done
[ -z "$t" ] || exec /bin/busybox timeout "$t" @BUSYBOX@ wget "$@"
exec @BUSYBOX@ wget "$@"
"""


def ensure_applet_dir(state_dir: str | os.PathLike[str]) -> tuple[str, frozenset[str]]:
    """A directory of `<applet> -> busybox` symlinks: the busybox image's /bin.

    Pod workers (threads of the node agent) and `exec_in_pod` (the tests' own processes) call
    this concurrently, often on a fresh state dir. Checking then creating each link raced (two
    workers both saw a link missing; the second `symlink_to` failed with EEXIST). So the
    directory is built whole in a private temporary directory and renamed into place, under an
    flock that serialises builders across threads and processes; a reader either finds the
    complete directory or none. A complete directory from an earlier agent is reused as is.
    """
    busybox = image_busybox()
    flavour = "static" if busybox == BUSYBOX else "dynamic"
    parent = Path(state_dir) / "images" / f"busybox-{flavour}"
    target = parent / "bin"
    applets = _applets(busybox)
    if _applet_dir_complete(target, busybox):
        return str(target), applets
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _applet_dir_complete(target, busybox):
            # Whatever is here is incomplete (a build cut short by a crash, or an older layout):
            # nobody else builds while we hold the lock, so it can go.
            for stale in parent.glob(".bin-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists() or target.is_symlink():
                aside = Path(tempfile.mkdtemp(prefix=".bin-old-", dir=parent))
                os.rename(target, aside / "bin")
                shutil.rmtree(aside, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=".bin-new-", dir=parent))
            for applet in applets:
                (staging / applet).symlink_to(busybox)
            shim = staging / "wget"
            shim.unlink(missing_ok=True)
            shim.write_text(WGET_SHIM.replace("@BUSYBOX@", busybox))
            shim.chmod(0o755)
            staging.chmod(0o755)
            os.rename(staging, target)
    return str(target), applets


def _applet_dir_complete(target: Path, busybox: str) -> bool:
    """Built by ensure_applet_dir: the wget shim (written last before the rename) is there."""
    shim = target / "wget"
    return shim.is_file() and not shim.is_symlink() and busybox in shim.read_text()


def dns_hosts_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "dns" / "hosts.d"


def resolve(image: str, state_dir: str | os.PathLike[str]) -> Image:
    name, tag = normalize(image)
    ref = f"{name}:{tag}" if not tag.startswith("@") else f"{name}{tag}"
    last = name.rsplit("/", 1)[-1]
    if "busybox" in last or name == "docker.io/library/alpine":
        if not os.access(BUSYBOX, os.X_OK):
            raise ImageNotFound(f"{BUSYBOX} is missing: install busybox-static to run {ref}")
        applet_dir, applets = ensure_applet_dir(state_dir)
        cmd = ("/bin/sh",) if last == "alpine" else ("sh",)
        return Image(ref, (), cmd, f"{applet_dir}:{SYSTEM_PATH}", applets, applet_dir)
    if last in AWS_NODE_IMAGES:
        # Inert whatever its args say (they would be the real program's flags).
        applet_dir, applets = ensure_applet_dir(state_dir)
        entry = (f"{applet_dir}/sh", "-c", "exec sleep 2147483647", last)
        return Image(ref, entry, (), SYSTEM_PATH, applets, applet_dir)
    if name == "registry.k8s.io/pause":
        applet_dir, applets = ensure_applet_dir(state_dir)
        return Image(
            ref, (f"{applet_dir}/sleep", "2147483647"), (), SYSTEM_PATH, applets, applet_dir
        )
    if name == "netiso.lab/dnsmasq":
        if not shutil.which(DNSMASQ):
            raise ImageNotFound(f"{DNSMASQ} is missing: install dnsmasq-base to run {ref}")
        hosts = dns_hosts_dir(state_dir)
        hosts.mkdir(parents=True, exist_ok=True)
        entrypoint = (
            DNSMASQ,
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--hostsdir={hosts}",
            # Names under cluster.local that the lab does not know are NXDOMAIN here, never
            # forwarded: with no upstream at all, anything else gets REFUSED.
            "--local=/cluster.local/",
            "--domain-needed",
            "--user=root",
            "--pid-file",
            "--log-facility=-",
        )
        return Image(ref, entrypoint, ())
    raise ImageNotFound(
        f'failed to pull and unpack image "{ref}": the netiso lab has no registry access and no '
        f"local program for this image (known: busybox*, alpine, registry.k8s.io/pause, "
        f"netiso.lab/dnsmasq)"
    )


if __name__ == "__main__":
    # `python -m tests.lab.images fetch-busybox`: for the lab's setup script.
    if sys.argv[1:] == ["fetch-busybox"]:
        print(fetch_image_busybox())
        sys.exit(0)
    print("usage: python -m tests.lab.images fetch-busybox", file=sys.stderr)
    sys.exit(2)
