"""Image -> local program map for the lab's node agent.

The lab has no container engine and no registry access, so an "image" here is a recipe for running
a program already on this machine, with the image's entrypoint/cmd semantics kept:

- any busybox image (`busybox`, `busybox:1.36`, `registry.k8s.io/e2e-test-images/busybox:...`,
  anything whose last path component contains `busybox`) and `alpine`: Debian's busybox-static.
  The container gets a PATH whose first entry is a directory of applet symlinks, so `sh -c "nc ..."`
  runs busybox's shell and applets exactly as in the real image; absolute `/bin/<applet>` argv[0]s
  are rewritten to the applet too: on this host `/bin/sh` is dash and `/bin/nc` may not exist.
- `registry.k8s.io/pause`: a busybox `sleep` (pause does nothing but wait for a signal); so is the
  EKS flavour's `amazon-k8s-cni` (aws-node's inert CNI container, aws_node.py).
- the clouds' managed policy engines (ENGINE_DOUBLE_IMAGES: GKE's Calico, Azure NPM, AKS's
  Calico and Cilium; and `*/amazon/aws-network-policy-agent`, aws-node's agent container): the
  lab's engine double, kube-router for the pod's node as the container's own process
  (engine_double.py; the EKS agent only with `--enable-network-policy=true`, else a `sleep`).
- `netiso.lab/dnsmasq`: the lab's DNS image; its entrypoint is Debian's dnsmasq serving the hosts
  directory the node agent keeps up to date (see tests/lab/dns.py). coredns images are NOT mapped:
  their Corefile arguments cannot be honoured by dnsmasq and pretending would be dishonest.

- Calico, exactly the versions the lab builds from the project's shared source archives
  (tests/lab/build.py): `quay.io/tigera/operator:v1.42.3` runs the built operator, and the images
  that operator renders for Calico v3.32.1 run the built Calico binaries:
  `quay.io/calico/node` (its image's `start_runit`: `calico-node -startup`, the one-shot tunnel
  address allocation, then `-node-services` and `-felix` kept running as runit would, see
  CALICO_NODE_START), `quay.io/calico/typha` and `quay.io/calico/kube-controllers` (behind the
  image's `wrapper`, which restarts it on exit code 129), and `quay.io/calico/apiserver` (the
  aggregated API server behind an `APIServer` resource, its image's `/code/apiserver`). What
  each image's Dockerfile sets besides the binary is kept: the image's absolute paths that
  probes and hooks exec (`/bin/calico-node -felix-ready`, `/usr/bin/check-status -r`) map to the
  built binaries, and the config files the images ship (`/etc/calico/felix.cfg`,
  `/etc/calico/typha.cfg`: no log file, no syslog) become the equivalent environment defaults,
  since the lab's containers see the host's filesystem. A tag other than the built version
  is unknown.
- Calico's storage helpers, which have nothing to do with policy, are no-op stand-ins: the
  flexvol driver installer (`quay.io/calico/pod2daemon-flexvol`, an init container that copies a
  driver onto the host) exits 0 at once, and the CSI node driver and its registrar
  (`quay.io/calico/csi`, `quay.io/calico/node-driver-registrar`) sleep until stopped.

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

from tests.lab import build

BUSYBOX = "/bin/busybox"
DNSMASQ = "/usr/sbin/dnsmasq"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DNS_IMAGE = "netiso.lab/dnsmasq:2.90"
# The EKS flavour's aws-node DaemonSet (aws_node.py): the CNI container is inert, like pause.
# Nothing of the VPC CNI needs to run; the node agent wires pods the way it would.
AWS_NODE_IMAGES = ("amazon-k8s-cni",)

# The lab's doubles of the clouds' managed policy engines (engine_double.py): image repository ->
# engine. Any tag: the clouds move their tags (`v3.26.3-gke.13`, `1.16.6`), netiso reads names,
# namespaces and flags, and the double is kube-router whatever the version. The EKS agent's
# registry is regional (`<account>.dkr.ecr.<region>.amazonaws.com/amazon/...`), so it is matched by
# its last path component, as AWS_NODE_IMAGES are. None of these collides with the real Calico
# images the lab runs (`quay.io/calico/*`, CALICO_IMAGES), which are exact tags of a real build.
ENGINE_DOUBLE_IMAGES = {
    "gke.gcr.io/calico/node": "gke-calico",
    "mcr.microsoft.com/containernetworking/azure-npm": "azure-npm",
    "mcr.microsoft.com/oss/calico/node": "aks-calico",
    "mcr.microsoft.com/oss/cilium/cilium": "cilium",
}
EKS_AGENT_IMAGE = "aws-network-policy-agent"
EKS_AGENT_ENGINE = "aws-network-policy-agent"


def engine_double(image: str) -> str | None:
    """The engine whose double ``image`` runs, or None for any other image."""
    name, _tag = normalize(image)
    if name.rsplit("/", 1)[-1] == EKS_AGENT_IMAGE:
        return EKS_AGENT_ENGINE
    return ENGINE_DOUBLE_IMAGES.get(name)


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
    # Absolute paths inside the image -> the host programs standing in for them (probes and
    # lifecycle hooks exec the image's own paths, e.g. /bin/calico-node).
    files: tuple[tuple[str, str], ...] = ()
    # The program a container of this image runs whatever its command and args say; it gets
    # them as its own arguments (an engine double reads the real program's flags from them).
    # Only the container's own process: exec probes and hooks still resolve through argv().
    wrapper: tuple[str, ...] = ()

    def container_argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """The argv of a container's process (argv(), or the wrapper around the raw one)."""
        if self.wrapper:
            return [*self.wrapper, *_raw_argv(self, command, args)]
        return self.argv(command, args)

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """Kubernetes' rule: command replaces ENTRYPOINT, args replace CMD (and a command alone
        drops CMD)."""
        argv = _raw_argv(self, command, args)
        if not argv:
            raise ImageNotFound(
                f"image {self.reference} has no entrypoint or cmd and none was given"
            )
        head = argv[0]
        mapped = dict(self.files).get(head)
        if mapped is not None:
            argv[0] = mapped
        elif self.applet_dir and head.startswith("/") and os.path.basename(head) in self.applets:
            argv[0] = os.path.join(self.applet_dir, os.path.basename(head))
        elif "/" not in head:
            # Resolve on the image's PATH here, as a container runtime does: the container init
            # is busybox-static's shell, which would run its own applet for a bare `sh`.
            argv[0] = shutil.which(head, path=self.path) or head
        return argv


def _raw_argv(image: Image, command: list[str] | None, args: list[str] | None) -> list[str]:
    if command:
        return list(command) + list(args or [])
    if args:
        return list(image.entrypoint) + list(args)
    return list(image.entrypoint) + list(image.cmd)


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
    calico = _calico_image(name, tag, ref, state_dir)
    if calico is not None:
        return calico
    engine = engine_double(ref)
    if engine is not None:
        return _engine_double_image(ref, engine, state_dir)
    raise ImageNotFound(
        f'failed to pull and unpack image "{ref}": the netiso lab has no registry access and no '
        f"local program for this image (known: busybox*, alpine, registry.k8s.io/pause, "
        f"netiso.lab/dnsmasq, {', '.join(f'{n}:{v}' for n, (v, _) in CALICO_IMAGES.items())}, "
        f"the engine doubles {', '.join([*ENGINE_DOUBLE_IMAGES, f'*/{EKS_AGENT_IMAGE}'])})"
    )


# `python -c` bootstrap of a double: the container's environment is the pod's (no PYTHONPATH),
# so the checkout that runs the node agent is put on sys.path by the argv itself.
_DOUBLE_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from tests.lab.engine_double import main; sys.exit(main(sys.argv[1:]))")


def _engine_double_image(ref: str, engine: str, state_dir: str | os.PathLike[str]) -> Image:
    """kube-router for the pod's node, in its netns, as the pod's own process (engine_double)."""
    kube_router = build.binary("kube-router")
    if not os.access(kube_router, os.X_OK):
        raise ImageNotFound(f'failed to pull and unpack image "{ref}": the lab runs it as '
                            f"kube-router, and {kube_router} is not built yet")
    applet_dir = ensure_applet_dir(state_dir)[0]
    wrapper = (sys.executable, "-c", _DOUBLE_BOOT, str(Path(__file__).resolve().parents[2]),
               "--engine", engine, "--state-dir", str(state_dir),
               "--kube-router", str(kube_router), "--sleep", f"{applet_dir}/sleep", "--")
    files: tuple[tuple[str, str], ...] = ()
    if engine.endswith("-calico"):
        probe = _write_script(Path(state_dir) / "images" / "doubles" / "calico-node",
                              CALICO_DOUBLE_PROBE)
        files = (("/bin/calico-node", probe),)
    return Image(ref, (), (), SYSTEM_PATH, files=files, wrapper=wrapper)


# The calico/node image's /bin/calico-node as its probes call it, for the Calico doubles: ready
# (`-felix-ready`) once the double did its first policy sync (engine_double.SYNCED_FILE, in the
# container's private /tmp, which exec probes see); any other probe flag is refused, since
# nothing here could answer it honestly.
CALICO_DOUBLE_PROBE = r"""#!/bin/sh
case "$*" in
  -felix-ready) exec test -e /tmp/.netiso-engine-double-synced ;;
  *) echo "netiso lab: the Calico double answers only -felix-ready, not: $*" >&2; exit 1 ;;
esac
"""


# The calico/node image's /sbin/start_runit + /etc/rc.local + runit services, for the lab: the
# same steps in the same order, minus BIRD/confd (the lab runs Calico only for policy: bgp
# Disabled, CNI AmazonVPC, so CALICO_NETWORKING_BACKEND is "none"; anything else fails loudly
# instead of pretending to route). runsv restarts a service a second after it exits (felix exits
# to restart on some config changes), so each service runs in such a loop; the container's
# process group is what the node agent signals on stop. The `: ${VAR:=value}` lines are the
# image's /etc/calico/felix.cfg (file logging and syslog off); the pod's env still wins, as it
# does over that file.
CALICO_NODE_START = r"""#!/bin/sh
if [ -n "${CALICO_NETWORKING:-}" ]; then
  if [ "$CALICO_NETWORKING" = "false" ]; then export CALICO_NETWORKING_BACKEND=none
  else export CALICO_NETWORKING_BACKEND=bird; fi
fi
calico-node -startup || exit 1
if [ ! -f /var/lib/calico/nodename ]; then
  echo "/var/lib/calico/nodename does not exist, exiting"
  exit 1
fi
NODENAME=$(cat /var/lib/calico/nodename)
export NODENAME
calico-node -allocate-tunnel-addrs -allocate-tunnel-addrs-run-once || exit 1
case "${CALICO_NETWORKING_BACKEND:-}" in
  none|vxlan)
    echo "CALICO_NETWORKING_BACKEND is $CALICO_NETWORKING_BACKEND - no BGP daemon running" ;;
  *)
    echo "netiso lab: CALICO_NETWORKING_BACKEND=${CALICO_NETWORKING_BACKEND:-}" \
      "needs BIRD and confd, which the lab does not run" >&2
    exit 1 ;;
esac
echo "Calico node started successfully"
runsv() { while :; do "$@"; sleep 1; done; }
runsv calico-node -node-services &
if [ -z "${CALICO_DISABLE_FELIX:-}" ]; then
  (
    export FELIX_FELIXHOSTNAME="$NODENAME"
    if [ -n "${DATASTORE_TYPE:-}" ]; then export FELIX_DATASTORETYPE="$DATASTORE_TYPE"; fi
    : "${FELIX_METADATAADDR:=None}" "${FELIX_LOGFILEPATH:=None}"
    : "${FELIX_LOGSEVERITYFILE:=None}" "${FELIX_LOGSEVERITYSYS:=None}"
    export FELIX_METADATAADDR FELIX_LOGFILEPATH FELIX_LOGSEVERITYFILE FELIX_LOGSEVERITYSYS
    runsv calico-node -felix
  ) &
fi
wait
"""

# The calico/typha image's /etc/calico/typha.cfg as environment defaults, then its CMD.
CALICO_TYPHA_START = r"""#!/bin/sh
: "${TYPHA_METADATAADDR:=None}" "${TYPHA_LOGFILEPATH:=None}" "${TYPHA_LOGSEVERITYFILE:=None}"
export TYPHA_METADATAADDR TYPHA_LOGFILEPATH TYPHA_LOGSEVERITYFILE
exec calico-typha "$@"
"""

# The kube-controllers image ships a writable /status/status.json, which kube-controllers writes
# and its probes (`/usr/bin/check-status -r|-l`) read. The lab's containers see the host's
# filesystem, so that file moves into the container's private /tmp (probes are exec'd in the
# container's mount namespace and see it too); the entrypoint is the image's own
# `/usr/bin/wrapper /usr/bin/kube-controllers`.
KUBE_CONTROLLERS_STATUS = "/tmp/.image-status/status.json"
KUBE_CONTROLLERS_START = rf"""#!/bin/sh
mkdir -p {os.path.dirname(KUBE_CONTROLLERS_STATUS)}
exec cmdwrapper kube-controllers --status-file={KUBE_CONTROLLERS_STATUS} "$@"
"""
CHECK_STATUS = rf"""#!/bin/sh
exec check-status --file={KUBE_CONTROLLERS_STATUS} "$@"
"""

# name -> (the one tag the lab has, recipe); see _calico_image.
CALICO_IMAGES: dict[str, tuple[str, str]] = {
    "quay.io/tigera/operator": (build.TIGERA_OPERATOR_VERSION, "operator"),
    "quay.io/calico/node": (build.CALICO_VERSION, "node"),
    "quay.io/calico/typha": (build.CALICO_VERSION, "typha"),
    "quay.io/calico/kube-controllers": (build.CALICO_VERSION, "kube-controllers"),
    "quay.io/calico/apiserver": (build.CALICO_VERSION, "apiserver"),
    "quay.io/calico/pod2daemon-flexvol": (build.CALICO_VERSION, "no-op-exit"),
    "quay.io/calico/csi": (build.CALICO_VERSION, "no-op-sleep"),
    "quay.io/calico/node-driver-registrar": (build.CALICO_VERSION, "no-op-sleep"),
}

_RECIPE_BINARIES = {
    "operator": ("operator",),
    "node": ("calico-node",),
    "typha": ("calico-typha",),
    "kube-controllers": ("kube-controllers", "check-status", "cmdwrapper"),
    "apiserver": ("calico-apiserver",),
}


def _write_script(path: Path, text: str) -> str:
    """Write an image's script atomically: pod workers (threads of one agent) resolve the same
    image at once, so the temporary file is unique per call, not per process."""
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return str(path)


def _calico_image(
    name: str, tag: str, ref: str, state_dir: str | os.PathLike[str]
) -> Image | None:
    known = CALICO_IMAGES.get(name)
    if known is None or known[0] != tag:
        return None
    recipe = known[1]
    if recipe == "no-op-exit" or recipe == "no-op-sleep":
        # The rendered containers pass the real program's flags as args (--nodeid=..., --v=5):
        # a shell that ignores its positional parameters takes them without complaint.
        applet_dir, applets = ensure_applet_dir(state_dir)
        body = "exit 0" if recipe == "no-op-exit" else f"exec {applet_dir}/sleep 2147483647"
        return Image(ref, (f"{applet_dir}/sh", "-c", body, f"netiso-lab {recipe}"), (),
                     SYSTEM_PATH, applets, applet_dir)
    bins = {b: build.binary(b) for b in _RECIPE_BINARIES[recipe]}
    absent = [str(p) for p in bins.values() if not os.access(p, os.X_OK)]
    if absent:
        raise ImageNotFound(
            f'failed to pull and unpack image "{ref}": the lab runs it from binaries built from '
            f"the shared Calico sources, and {', '.join(absent)} is not built yet (run "
            f"`python -m tests.lab build`)"
        )
    path = ":".join([*(str(p.parent) for p in bins.values()), SYSTEM_PATH])
    scripts = Path(state_dir) / "images" / "calico"
    if recipe == "operator":
        # The Deployment's command is `operator`, found on the image's PATH.
        return Image(ref, (str(bins["operator"]),), (), path)
    if recipe == "node":
        node = str(bins["calico-node"])
        start = _write_script(scripts / "start_runit", CALICO_NODE_START)
        return Image(ref, (), (start,), path, files=(("/bin/calico-node", node),))
    if recipe == "apiserver":
        # The image's ENTRYPOINT ["/code/apiserver"]; the operator passes only args.
        apiserver = str(bins["calico-apiserver"])
        return Image(ref, (apiserver,), (), path, files=(("/code/apiserver", apiserver),))
    if recipe == "typha":
        start = _write_script(scripts / "calico-typha", CALICO_TYPHA_START)
        return Image(ref, (), (start,), path,
                     files=(("/usr/bin/calico-typha", str(bins["calico-typha"])),))
    start = _write_script(scripts / "kube-controllers", KUBE_CONTROLLERS_START)
    check = _write_script(scripts / "check-status", CHECK_STATUS)
    return Image(ref, (start,), (), path, files=(
        ("/usr/bin/wrapper", start),
        ("/usr/bin/check-status", check),
    ))


if __name__ == "__main__":
    # `python -m tests.lab.images fetch-busybox`: for the lab's setup script.
    if sys.argv[1:] == ["fetch-busybox"]:
        print(fetch_image_busybox())
        sys.exit(0)
    print("usage: python -m tests.lab.images fetch-busybox", file=sys.stderr)
    sys.exit(2)
