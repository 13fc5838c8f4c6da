"""Pod volumes for the lab's node agent: what goes into them, and how each container sees them.

Design decisions:
- Contents are written by the agent into the pod's directory under the lab state
  (`<state>/pods/<ns>_<pod>_<uid>/volumes/<name>/`): configMap, secret, downwardAPI and projected
  volumes (ServiceAccount tokens from the TokenRequest API, bound to the pod), emptyDir. hostPath
  volumes map to per-node directories, `<state>/nodes/<node>/root/<path>`, never to the host's
  real paths: two lab nodes on one machine must not share a "host", and the lab must not write
  into the machine's /var/lib or /run. `down` removes the state dir, hence all of them.
- Each container sees its volumeMounts through bind mounts inside its own mount namespace (the
  container init in network.py runs the plan this module computes), so nothing is mounted in the
  host's namespace and nothing outlives the container's processes.
- A mountPath the host lacks (e.g. /var/run/secrets/kubernetes.io/serviceaccount: the host has no
  /run/secrets) is never created on the host. The deepest existing directory on its way is
  "shadowed" inside the container's mount namespace: a tmpfs holding binds of everything that
  directory held, in which the missing part is created. When that directory is `/` itself (e.g.
  /typha-certs), the container gets its own root: a tmpfs with binds of `/`'s entries, moved onto
  `/` and entered with chroot, the way switch_root does.
- Values follow kubelet: file modes from defaultMode/items[].mode (0644 by default), downward API
  labels/annotations as `key="value"` lines, resourceFieldRef rounded up to the divisor with the
  node's allocatable as the default limit.
"""

from __future__ import annotations

import base64
import math
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

NODE_CPU = "2"
NODE_MEMORY = "8Gi"
NODE_EPHEMERAL = "50Gi"
# Directories that are private to each container already (fresh tmpfs mounted by its init; a
# container never sees the host's /run, as with any runtime).
PRIVATE_DIRS = ("/dev", "/tmp", "/run")

_SUFFIX = {
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
    "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}


class ConfigError(Exception):
    """A container's configuration cannot be resolved (missing ConfigMap/Secret or key, bad
    hostPath type, unsupported volume...): it waits in CreateContainerConfigError with this
    message, as with kubelet, and the agent retries."""



def quantity(text: str | int | float) -> Fraction:
    """A Kubernetes resource quantity ("250m", "1.5Gi", "2e3") as an exact number."""
    raw = str(text).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and raw.endswith(suffix):
            return Fraction(raw[: -len(suffix)]) * _SUFFIX[suffix]
    try:
        return Fraction(raw)
    except ValueError:
        pass
    if "e" in raw.lower():
        mantissa, _, exp = raw.lower().partition("e")
        return Fraction(mantissa) * Fraction(10) ** int(exp)
    raise ValueError(f"not a quantity: {text!r}")


def resource_value(ref: JSON, containers: list[JSON], default_container: str | None) -> str:
    """resourceFieldRef as kubelet renders it: the limit (or request), node allocatable when no
    limit is set, divided by `divisor` and rounded up (cpu: at least 1)."""
    resource = str(ref.get("resource", ""))
    name = ref.get("containerName") or default_container
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef: no container {name!r}")
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"resourceFieldRef: unsupported resource {resource!r}")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(what)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(what)
    if value is None:
        value = {"cpu": NODE_CPU, "memory": NODE_MEMORY}.get(what, NODE_EPHEMERAL)
        if kind == "requests":
            value = "0"
    divisor = quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ConfigError("resourceFieldRef: divisor 0")
    result = math.ceil(quantity(value) / divisor)
    if what == "cpu":
        result = max(1, result)
    return str(result)


def map_lines(data: dict[str, str]) -> str:
    """Downward API rendering of labels/annotations: sorted `key="value"` lines."""
    return "\n".join(f'{k}="{_escape(v)}"' for k, v in sorted(data.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Sources:
    """What volume contents come from (the agent supplies these; pure code otherwise)."""

    config_map: Callable[[str], JSON | None]   # name -> ConfigMap object or None
    secret: Callable[[str], JSON | None]       # name -> Secret object or None
    token: Callable[[str | None, int], str]    # (audience, expirationSeconds) -> token
    field: Callable[[str], str | None]         # downward API fieldPath -> value
    resource: Callable[[JSON], str]            # resourceFieldRef -> value


def _items(data: dict[str, bytes], items: list[JSON] | None, default_mode: int, what: str,
           ) -> list[tuple[str, bytes, int]]:
    if not items:
        return [(k, v, default_mode) for k, v in sorted(data.items())]
    out = []
    for item in items:
        key = item.get("key", "")
        if key not in data:
            raise ConfigError(f"{what}: no key {key!r}")
        out.append((item.get("path") or key, data[key], int(item.get("mode") or default_mode)))
    return out


def _object_data(obj: JSON, secret: bool) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    for k, v in (obj.get("data") or {}).items():
        data[k] = base64.b64decode(v) if secret else str(v).encode()
    for k, v in (obj.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    return data


def _config_files(src: JSON, secret: bool, sources: Sources, default_mode: int,
                  ) -> list[tuple[str, bytes, int]]:
    name = src.get("secretName" if secret and "secretName" in src else "name", "")
    obj = (sources.secret if secret else sources.config_map)(name)
    what = f"{'secret' if secret else 'configmap'} {name!r}"
    if obj is None:
        if src.get("optional"):
            return []
        raise ConfigError(f"{what} not found")
    mode = int(src.get("defaultMode") or default_mode)
    return _items(_object_data(obj, secret), src.get("items"), mode, what)


def _downward_files(src: JSON, sources: Sources, default_mode: int,
                    ) -> list[tuple[str, bytes, int]]:
    out = []
    for item in src.get("items") or []:
        mode = int(item.get("mode") or src.get("defaultMode") or default_mode)
        if "fieldRef" in item:
            path = item["fieldRef"].get("fieldPath", "")
            value = sources.field(path)
            if value is None:
                raise ConfigError(f"downwardAPI: unsupported fieldPath {path!r}")
        elif "resourceFieldRef" in item:
            value = sources.resource(item["resourceFieldRef"])
        else:
            raise ConfigError(f"downwardAPI item {item.get('path')!r} has no source")
        out.append((item.get("path", ""), value.encode(), mode))
    return out


def volume_files(volume: JSON, sources: Sources) -> list[tuple[str, bytes, int]] | None:
    """(relative path, content, mode) for a content volume; None for emptyDir/hostPath/others."""
    if "configMap" in volume:
        return _config_files(volume["configMap"] or {}, False, sources, 0o644)
    if "secret" in volume:
        return _config_files(volume["secret"] or {}, True, sources, 0o644)
    if "downwardAPI" in volume:
        return _downward_files(volume["downwardAPI"] or {}, sources, 0o644)
    if "projected" in volume:
        projected = volume["projected"] or {}
        mode = int(projected.get("defaultMode") or 0o644)
        files: list[tuple[str, bytes, int]] = []
        for src in projected.get("sources") or []:
            if "serviceAccountToken" in src:
                tok = src["serviceAccountToken"] or {}
                token = sources.token(tok.get("audience"), int(tok.get("expirationSeconds")
                                                                or 3600))
                files.append((tok.get("path", "token"), token.encode(), mode))
            elif "configMap" in src:
                files += _config_files(src["configMap"] or {}, False, sources, mode)
            elif "secret" in src:
                files += _config_files(src["secret"] or {}, True, sources, mode)
            elif "downwardAPI" in src:
                files += _downward_files(src["downwardAPI"] or {}, sources, mode)
            else:
                raise ConfigError(f"projected volume source {sorted(src)} is not supported")
        return files
    return None


def safe_relative(path: str) -> str:
    """A volume-relative path that stays inside the volume (no absolute path, no `..`)."""
    norm = os.path.normpath(path)
    if not path or os.path.isabs(path) or norm == ".." or norm.startswith("../"):
        raise ConfigError(f"path {path!r} escapes its volume")
    return norm


def write_files(target: Path, files: list[tuple[str, bytes, int]]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for rel, content, mode in files:
        dest = target / safe_relative(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode & 0o777)
        os.replace(tmp, dest)


# What a real node has before any pod runs, so hostPath volumes of type Directory find it:
# kubelet's plugin directories (the CSI node driver's registrar mounts them) and the BPF
# filesystem's mount point (calico-node mounts /sys/fs/bpf with type Directory).
NODE_DIRS = ("var/lib/kubelet/plugins", "var/lib/kubelet/plugins_registry", "sys/fs/bpf")


def host_path(node_root: Path, volume: JSON) -> Path:
    """The per-node directory (or file) a hostPath volume maps to, created per its `type`."""
    for seeded in NODE_DIRS:
        (node_root / seeded).mkdir(parents=True, exist_ok=True)
    spec = volume.get("hostPath") or {}
    raw = str(spec.get("path", ""))
    if not raw.startswith("/"):
        raise ConfigError(f"hostPath {raw!r} is not absolute")
    path = node_root / os.path.normpath(raw).lstrip("/")
    kind = spec.get("type") or ""
    if kind in ("", "DirectoryOrCreate"):
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise ConfigError(f"hostPath type check failed: {raw} is not a directory")
    elif kind == "File" and not path.is_file():
        raise ConfigError(f"hostPath type check failed: {raw} is not a file")
    elif kind in ("Socket", "CharDevice", "BlockDevice") and not path.exists():
        raise ConfigError(f"hostPath type check failed: {raw} is not a {kind}")
    return path


# ---------------------------------------------------------------- the container's view

Lookup = Callable[[str], str | None]  # absolute path -> "dir", "file" or None (after symlinks)


def host_lookup(path: str) -> str | None:
    try:
        real = os.path.realpath(path)
        if os.path.isdir(real):
            return "dir"
        return "file" if os.path.exists(real) else None
    except OSError:
        return None


@dataclass(frozen=True)
class Plan:
    """How a container sees its mounts: `new_root` when `/` itself must be shadowed, then shell
    lines for the container init (functions nlab_shadow, nlab_mkdir, nlab_touch, nlab_bind)."""

    new_root: bool
    lines: tuple[str, ...]

    @property
    def script(self) -> str:
        return "\n".join(self.lines)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def mount_plan(mounts: list[tuple[str, str, bool]], lookup: Lookup = host_lookup,
               realpath: Callable[[str], str] = os.path.realpath) -> Plan:
    """Mount plan for (host source, container path, read-only) triples.

    Parents are mounted before children. Nothing is ever created on the host: a missing part of
    a container path is created only where the container alone sees it: under its own /dev or
    /tmp, under a directory this plan created, in a mounted volume, or as a new entry of a
    directory this plan shadowed first (`/` itself: new_root).
    """
    ordered = sorted(mounts, key=lambda m: os.path.normpath(m[1]).count("/"))
    owned: list[str] = list(PRIVATE_DIRS)  # everything under these is the container's own
    shadowed: set[str] = set()
    lines: list[str] = []
    new_root = False

    def is_owned(path: str) -> bool:
        return any(_under(path, p) for p in owned)

    for src, mount_path, readonly in ordered:
        if not mount_path.startswith("/"):
            raise ConfigError(f"mountPath {mount_path!r} is not absolute")
        src_kind = lookup(src)
        if src_kind is None:
            raise ConfigError(f"volume source {src} does not exist")
        parts = [p for p in os.path.normpath(mount_path).split("/") if p]
        cur, rest = "/", list(parts)
        while rest:
            nxt = os.path.join(cur, rest[0])
            if is_owned(nxt):
                cur = nxt  # the container's own: no host lookup, no symlink on the host matters
            elif lookup(nxt) is not None:
                cur = realpath(nxt)  # as the container resolves it (e.g. /var/run -> /run)
            else:
                break
            rest.pop(0)
        target = os.path.join(cur, *rest) if rest else cur
        if rest and not is_owned(cur):
            # The first missing entry goes into `cur`, which must become private first.
            if cur == "/":
                new_root = True
            elif cur not in shadowed:
                lines.append(f"nlab_shadow {shlex.quote(cur)}")
                shadowed.add(cur)
            owned.append(os.path.join(cur, rest[0]))
        if is_owned(target):
            parent = os.path.dirname(target) if src_kind == "file" else target
            if is_owned(parent):
                lines.append(f"nlab_mkdir {shlex.quote(parent)}")
            if src_kind == "file":
                lines.append(f"nlab_touch {shlex.quote(target)}")
        elif lookup(target) != src_kind:
            raise ConfigError(
                f"cannot mount a {src_kind} on {mount_path}: it is a {lookup(target)}")
        ro = "ro" if readonly else "rw"
        lines.append(f"nlab_bind {shlex.quote(src)} {shlex.quote(target)} {ro}")
        if src_kind == "dir":
            # Mounts nested in this one are made in its (lab-owned) source directory.
            owned.append(target)
    return Plan(new_root, tuple(lines))
