"""Kubeconfig: which file, which context, and whether its contents can work at all.

Design decisions:

* **kubectl's rules, not the Python client's.** ``--kubeconfig`` names exactly one file (a
  ``:`` in it is part of the path), ``$KUBECONFIG`` is a ``:``-separated list whose missing and
  empty entries are skipped, the first file that defines a cluster/user/context name wins, and
  the *first* file that sets ``current-context`` wins (the client's merger lets the last one
  win). Relative paths are resolved against the file that holds them. The client's own loader
  does the rest, which is why exec credential plugins (``aws eks get-token``,
  ``gke-gcloud-auth-plugin``, ``kubelogin``) keep working, including their token refresh. With
  no kubeconfig at all and the pod environment present, netiso uses the in-cluster
  ServiceAccount.
* **Local faults are named locally (exit 2).** What a kubeconfig holds is checked before any
  request, for the active context only (as kubectl does): the server URL parses, every
  ``*-data`` field is base64, the CA holds a certificate, the client certificate is one and
  matches its key. Otherwise the fault surfaces much later as "cannot reach the API server"
  (a TLS handshake that never starts), an internal error (the client's base64 decoder), or a
  urllib3 FutureWarning (a URL without a scheme).
* **Facts for detection.** ``read_cluster_ref`` reads the active context's cluster name, server
  URL and exec plugin (command and args) by the same file rules, without the network and without
  failing: detection treats them as hints, and ``connect`` is the one that reports bad files.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes.client import Configuration
from kubernetes.config import ConfigException
from kubernetes.config import incluster_config as _incluster
from kubernetes.config import kube_config as _kube_config

from netiso.errors import OperationFailed, UsageError

# The client's loader functions are untyped; call them through Any-typed names.
_InClusterLoader: Any = _incluster.InClusterConfigLoader
_Merger: Any = _kube_config.KubeConfigMerger
_Loader: Any = _kube_config.KubeConfigLoader

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

@dataclass
class KubeconfigSource:
    """Where the connection settings came from (for messages and ``-o json``)."""

    files: list[str] = field(default_factory=list)
    context: str | None = None
    in_cluster: bool = False


def kubeconfig_paths(explicit: str | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """kubectl's precedence: --kubeconfig (one file), else $KUBECONFIG (a list), else
    ~/.kube/config."""
    if explicit:
        # kubectl never splits --kubeconfig: only the environment variable is a list.
        return [os.path.expanduser(explicit)]
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG", "")
    if raw:
        return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def first_current_context(configs: Sequence[Mapping[str, Any] | None]) -> str | None:
    """kubectl takes current-context from the first file that sets it (the client: the last)."""
    for cfg in configs:
        if cfg and cfg.get("current-context"):
            return str(cfg["current-context"])
    return None


def _in_cluster_available(environ: Mapping[str, str], sa_dir: Path) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").exists()


class _LogCapture(logging.Handler):
    """The client logs (and swallows) exec-plugin failures; keep them to report them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def load_configuration(
    kubeconfig: str | None, context: str | None, environ: Mapping[str, str], sa_dir: Path
) -> tuple[Any, KubeconfigSource]:
    """The client ``Configuration`` for a context, and where it came from."""
    cfg = Configuration()
    paths = kubeconfig_paths(kubeconfig, environ)
    existing = [p for p in paths if os.path.exists(p)]
    if kubeconfig and not existing:
        raise UsageError(f"kubeconfig not found: {kubeconfig}")
    if not existing:
        if _in_cluster_available(environ, sa_dir) and not context:
            try:
                _InClusterLoader(
                    token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt"),
                    environ=environ,
                ).load_and_set(cfg)
            except ConfigException as exc:
                raise UsageError(f"in-cluster configuration unusable: {exc}") from exc
            return cfg, KubeconfigSource(in_cluster=True, context="in-cluster")
        raise UsageError(
            f"no kubeconfig found (looked at {', '.join(paths)})",
            hint="pass --kubeconfig or set KUBECONFIG",
        )
    configs: list[Any] = []
    loaded: list[str] = []
    for path in existing:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"kubeconfig {path} is not a kubeconfig: binary content, not "
                             "YAML text") from exc
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"kubeconfig {path} is not readable YAML: {exc}") from exc
        if doc is None:
            # kubectl reads an empty file as an empty config; the client's merger refuses it
            # ("file is empty"), so it must not reach the merger at all.
            continue
        if not isinstance(doc, Mapping):
            raise UsageError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping)")
        configs.append(doc)
        loaded.append(path)
    if not loaded:
        raise UsageError(f"kubeconfig {', '.join(existing)} holds no configuration",
                         hint="pass --kubeconfig or set KUBECONFIG to a non-empty file")
    existing = loaded
    try:
        # File by file: the merger's own constructor splits a path string at ':', which
        # would break a --kubeconfig whose name contains one.
        merger = _Merger("")
        for path in existing:
            merger.load_config(path)
        merged = merger.config
        if merged is None:
            raise UsageError(f"kubeconfig {', '.join(existing)} holds no configuration")
        # The merger wraps each entry in a ConfigNode (its ``value`` is the dict).
        names = [str(getattr(c, "value", c).get("name"))
                 for c in (merged.value.get("contexts") or [])]
        active = context or first_current_context(configs)
        if not active:
            raise UsageError(
                f"kubeconfig {', '.join(existing)} sets no current-context",
                hint=f"pass --context (one of: {', '.join(names) or 'none defined'})",
            )
        if active not in names:
            raise UsageError(
                f"context {active!r} is not in {', '.join(existing)}",
                hint=f"known contexts: {', '.join(names) or 'none'}",
            )
        where = f"kubeconfig {', '.join(existing)}"
        cluster_name, cluster, user_name, user_entry = _active_entries(merged, active)
        check_entries(where, cluster_name, cluster, user_name, user_entry)
        capture = _LogCapture()
        root = logging.getLogger()
        root.addHandler(capture)
        try:
            loader = _Loader(
                config_dict=merged, config_base_path=None, active_context=active
            )
            loader.load_and_set(cfg)
        finally:
            root.removeHandler(capture)
    except ConfigException as exc:
        raise UsageError(f"kubeconfig {', '.join(existing)}: {exc}") from exc
    user = loader._user  # the loader exposes no accessor for the active user entry
    if user is not None and "exec" in user and not (
        cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization") or cfg.cert_file
    ):
        command = getattr(user["exec"], "value", {}).get("command", "?")
        why = "; ".join(capture.messages) or "it returned no credentials"
        raise OperationFailed(
            f"the exec credential plugin {command!r} of context {active!r} failed: {why}",
            hint="run the plugin by hand to see its error (is it installed and logged in?)",
        )
    if str(cfg.host).startswith("https://"):
        check_tls_material(where, cluster_name, user_name, ca_file=cfg.ssl_ca_cert,
                           cert_file=cfg.cert_file, key_file=cfg.key_file)
    return cfg, KubeconfigSource(files=existing, context=active)


# --- cluster reference (for detection) ------------------------------------------------------


@dataclass(frozen=True)
class ClusterRef:
    """What the kubeconfig says about the cluster, read without the network.

    The one kubeconfig reading detection uses (``netiso.bootstrap.detect``): the context and
    cluster names, the server URL and the user's exec credential plugin are *hints* (users
    rename contexts and front servers with proxies), reported as such, never decisive.
    """

    context: str | None = None
    cluster: str | None = None
    server: str | None = None
    exec_command: str | None = None
    exec_args: tuple[str, ...] = ()
    in_cluster: bool = False


def _named(docs: Sequence[Mapping[str, Any]], section: str, name: str) -> Mapping[str, Any]:
    # kubectl's merge: the first file that defines a name wins.
    for doc in docs:
        for entry in doc.get(section) or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                body = entry.get(section.rstrip("s"))
                return body if isinstance(body, Mapping) else {}
    return {}


def read_cluster_ref(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> ClusterRef:
    """The active context's cluster, server and exec plugin, by kubectl's file rules.

    Files that cannot be read are skipped here (``connect`` is the one that reports them); an
    absent kubeconfig with the pod environment present is the in-cluster ServiceAccount.
    """
    env = os.environ if environ is None else environ
    docs: list[Mapping[str, Any]] = []
    for path in kubeconfig_paths(kubeconfig, env):
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # a binary file too
            continue
        if isinstance(doc, Mapping):
            docs.append(doc)
    if not docs:
        if _in_cluster_available(env, in_cluster_dir) and not context:
            host = env.get("KUBERNETES_SERVICE_HOST", "")
            port = env.get("KUBERNETES_SERVICE_PORT", "443")
            host = f"[{host}]" if ":" in host else host
            return ClusterRef(context="in-cluster", server=f"https://{host}:{port}",
                              in_cluster=True)
        return ClusterRef(context=context)
    active = context or first_current_context(docs)
    if not active:
        return ClusterRef()
    ctx = _named(docs, "contexts", active)
    cluster = str(ctx["cluster"]) if ctx.get("cluster") else None
    user = str(ctx["user"]) if ctx.get("user") else None
    server = _named(docs, "clusters", cluster).get("server") if cluster else None
    exec_cfg = _named(docs, "users", user).get("exec") if user else None
    command: str | None = None
    args: tuple[str, ...] = ()
    if isinstance(exec_cfg, Mapping) and exec_cfg.get("command"):
        command = str(exec_cfg["command"])
        args = tuple(str(a) for a in exec_cfg.get("args") or [])
    return ClusterRef(context=active, cluster=cluster,
                      server=str(server) if server else None,
                      exec_command=command, exec_args=args)


# --- checks of what the active context holds ------------------------------------------------


def _value(node: Any) -> Any:
    """The merger wraps each entry in a ConfigNode (its ``value`` is the dict)."""
    return getattr(node, "value", node)


def _find(merged: Any, section: str, name: str | None) -> Mapping[str, Any] | None:
    for node in _value(merged).get(section) or []:
        entry = _value(node)
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def _active_entries(merged: Any, active: str) -> tuple[str, Mapping[str, Any], str,
                                                          Mapping[str, Any]]:
    """(cluster name, cluster, user name, user) of the active context; empty when absent (the
    client's loader names a missing cluster or user itself)."""
    ctx = _value((_find(merged, "contexts", active) or {}).get("context")) or {}
    cluster_name = str(ctx.get("cluster") or "")
    user_name = str(ctx.get("user") or "")
    cluster = _value((_find(merged, "clusters", cluster_name) or {}).get("cluster")) or {}
    user = _value((_find(merged, "users", user_name) or {}).get("user")) or {}
    return cluster_name, cluster, user_name, user


# A host as RFC 3986 allows it in a URL: a name or IPv4 address, or an IPv6 literal.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.%]+\])$")


def server_url_problem(server: str) -> str | None:
    """Why ``server`` is no usable API server URL, or None. Pure."""
    if not server:
        return "it is empty"
    if any(c.isspace() for c in server):
        return "it contains whitespace"
    if "://" not in server:
        return "it has no scheme (write https://HOST:PORT)"
    try:
        parts = urlsplit(server)
        port = parts.port  # parsing the port is what raises for "6443x" or 99999
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("https", "http"):
        return f"the scheme {parts.scheme!r} is neither https nor http"
    host = parts.netloc.rpartition("@")[2]
    if port is not None or host.endswith(":"):
        host = host.rpartition(":")[0]
    if not host or not _HOST_RE.match(host):
        return f"{host!r} is not a host name or address" if host else "it names no host"
    return None


def _decode(where: str, owner: str, key: str, value: Any) -> bytes:
    # Go's decoder (kubectl) skips line breaks and nothing else; so does this.
    text = str(value).replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"{where}: {key} of {owner} is not valid base64 ({exc})",
                         hint="it must be the base64 of the PEM file, e.g. `base64 -w0 FILE`"
                         ) from exc


def check_entries(where: str, cluster_name: str, cluster: Mapping[str, Any], user_name: str,
                  user: Mapping[str, Any]) -> None:
    """Raise UsageError for a malformed server URL or a ``*-data`` field that is no base64.
    Pure."""
    if cluster:
        problem = server_url_problem(str(cluster.get("server") or ""))
        if problem:
            raise UsageError(f"{where}: the server URL {str(cluster.get('server'))!r} of "
                             f"cluster {cluster_name!r} is malformed: {problem}")
        if cluster.get("certificate-authority-data"):
            _decode(where, f"cluster {cluster_name!r}", "certificate-authority-data",
                    cluster["certificate-authority-data"])
    for key in ("client-certificate-data", "client-key-data"):
        if user and user.get(key):
            _decode(where, f"user {user_name!r}", key, user[key])


def check_tls_material(where: str, cluster_name: str, user_name: str, *, ca_file: Any,
                       cert_file: Any, key_file: Any) -> None:
    """Load the CA and the client certificate/key as the TLS handshake will, and name what
    cannot work: a CA that holds no certificate, a client certificate that is none, a key that
    is none or does not belong to the certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"{where}: the certificate authority of cluster {cluster_name!r} holds no PEM "
                f"certificate ({exc.reason if isinstance(exc, ssl.SSLError) else exc})",
            ) from exc
    if not cert_file:
        return
    try:
        ctx.load_verify_locations(cadata=Path(str(cert_file)).read_text(errors="replace"))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"{where}: the client certificate of user {user_name!r} is not a PEM "
                         "certificate") from exc
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH" or "mismatch" in str(exc):
            raise UsageError(f"{where}: the client key of user {user_name!r} does not belong "
                             "to its client certificate") from exc
        raise UsageError(f"{where}: the client key of user {user_name!r} is not a PEM private "
                         "key") from exc
    except OSError as exc:
        raise UsageError(f"{where}: cannot read the client certificate or key of user "
                         f"{user_name!r}: {exc}") from exc
