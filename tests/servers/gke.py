"""A wire-level GKE API test server (container.googleapis.com v1, REST), with an OAuth2 token
endpoint so Application Default Credentials work against it.

What it speaks, as GKE does: ``GET v1/projects/*/locations/*/clusters/*`` (and the list, with
``-`` for every location), ``POST ...:setAddons``, ``POST ...:setNetworkPolicy``,
``GET v1/projects/*/locations/*/operations[/*]``, errors as ``{"error": {"code", "message",
"status"}}``. And what GKE enforces:

* one operation at a time per cluster: a mutating call while another runs is a 400
  FAILED_PRECONDITION naming it ("Cluster is running incompatible operation operation-...");
* the order rule: ``setNetworkPolicy`` enabling Calico while the network policy addon is off is
  a 400 "The network policy addon must be enabled before updating the nodes.";
* operations go PENDING → RUNNING (with progress metrics) → DONE, one state per poll
  (``polls_to_done``); their effect on the cluster lands when they are DONE, and a DONE
  setNetworkPolicy calls ``on_network_policy(enabled)`` (in the lab: GKE's managed calico-node
  DaemonSet appears, ``tests.lab.engines.gke_network_policy``);
* scripted faults: :meth:`GkeServer.fail_operation` (an operation ending DONE with an error),
  :meth:`GkeServer.answer` (the next matching request gets a status and GKE error body: 429, 503,
  400), :meth:`GkeServer.start_foreign` (an operation someone else started).

Every request lands in :attr:`GkeServer.calls` (method, path, body), what the tests assert on.
``python -m tests.servers.gke --port N [--lab]`` runs it standalone (the README's demo);
``--lab`` plays GKE's side effects on the running lab's cluster.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_CLUSTER = re.compile(r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters/(?P<c>[^/:]+)"
                      r"(?::(?P<verb>\w+))?")
_CLUSTERS = re.compile(r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters")
_OPERATION = re.compile(r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations/"
                        r"(?P<o>[^/]+)")
_OPERATIONS = re.compile(r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations")

ORDER_RULE = "The network policy addon must be enabled before updating the nodes."
MUTATING = (":setAddons", ":setNetworkPolicy")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None
    #: The Authorization header's scheme ("Bearer"), "" when the call carried none.
    auth: str = ""

    @property
    def verb(self) -> str:
        """``get``, ``list``, ``setAddons``, ``setNetworkPolicy``, ``token``."""
        if self.path == "/token":
            return "token"
        if ":" in self.path.rsplit("/", 1)[-1]:
            return self.path.rsplit(":", 1)[1]
        if self.path.endswith(("/clusters", "/operations")):
            return "list"
        return "get"

    @property
    def mutating(self) -> bool:
        return self.method != "GET" and self.path.endswith(MUTATING)


@dataclass
class _Op:
    doc: dict[str, Any]
    cluster: str  # the cluster's key (project/location/name)
    polls_left: int
    effect: Callable[[], None] | None = None
    error: str | None = None


@dataclass
class _Answer:
    method: str
    path_suffix: str
    status: int
    message: str
    grpc_status: str
    times: int


@dataclass
class GkeServer:
    """The server's state and behaviour; :func:`serve` puts it behind HTTP."""

    project: str = "netiso-lab"
    polls_to_done: int = 2
    on_network_policy: Callable[[bool], None] | None = None
    calls: list[Call] = field(default_factory=list)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, _Op] = field(default_factory=dict)
    _answers: list[_Answer] = field(default_factory=list)
    _failures: dict[str, str] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- scenario set-up ----------------------------------------------------------------------

    def add_cluster(self, name: str = "lab", location: str = "us-central1-a", *,
                    datapath: str = "LEGACY_DATAPATH", autopilot: bool = False,
                    addon: bool = False, policy: bool = False,
                    node_pools: tuple[str, ...] = ("default-pool",)) -> dict[str, Any]:
        """A cluster as GKE returns it (the fields netiso reads, and a few it does not)."""
        doc: dict[str, Any] = {
            "name": name,
            "location": location,
            "zone": location,
            "status": "RUNNING",
            "currentMasterVersion": "1.37.2-gke.100",
            "selfLink": f"https://container.googleapis.com/v1/projects/{self.project}/"
                        f"locations/{location}/clusters/{name}",
            "addonsConfig": {
                "httpLoadBalancing": {},
                "networkPolicyConfig": {"disabled": True} if not addon else {},
                "gcePersistentDiskCsiDriverConfig": {"enabled": True},
            },
            "networkConfig": {"network": "projects/netiso-lab/global/networks/default",
                              "datapathProvider": datapath},
            "nodePools": [{"name": p, "status": "RUNNING", "initialNodeCount": 2}
                          for p in node_pools],
        }
        if policy:
            doc["networkPolicy"] = {"provider": "CALICO", "enabled": True}
        if autopilot:
            doc["autopilot"] = {"enabled": True}
        self.clusters[f"{self.project}/{location}/{name}"] = doc
        return doc

    def answer(self, method: str, path_suffix: str, status: int, message: str,
               grpc_status: str = "", times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path_suffix`` get this error."""
        with self._lock:
            self._answers.append(_Answer(method, path_suffix, status, message,
                                         grpc_status or _GRPC.get(status, "UNKNOWN"), times))

    def fail_operation(self, operation_type: str, message: str) -> None:
        """The next operation of this type ends DONE with this error (code FAILED_PRECONDITION)."""
        self._failures[operation_type] = message

    def start_foreign(self, cluster: str = "lab", location: str = "us-central1-a",
                      operation_type: str = "UPGRADE_MASTER", polls: int | None = None) -> str:
        """An operation someone else started on the cluster (netiso must wait for it)."""
        with self._lock:
            op = self._start(f"{self.project}/{location}/{cluster}", operation_type, None,
                             polls)
            return str(op.doc["name"])

    # --- views for tests ------------------------------------------------------------------

    def mutating_calls(self) -> list[Call]:
        return [c for c in self.calls if c.mutating]

    def cluster(self, name: str = "lab", location: str = "us-central1-a") -> dict[str, Any]:
        return self.clusters[f"{self.project}/{location}/{name}"]

    # --- behaviour --------------------------------------------------------------------------

    def _start(self, key: str, operation_type: str, effect: Callable[[], None] | None,
               polls: int | None = None) -> _Op:
        project, location, name = key.split("/")
        op_name = f"operation-{next(self._ids)}-{operation_type.lower().replace('_', '')}"
        base = f"https://container.googleapis.com/v1/projects/{project}/locations/{location}"
        doc = {
            "name": op_name,
            "zone": location,
            "location": location,
            "operationType": operation_type,
            "status": "PENDING",
            "selfLink": f"{base}/operations/{op_name}",
            "targetLink": f"{base}/clusters/{name}",
            "startTime": "2026-12-04T21:00:00.000000Z",
        }
        op = _Op(doc, key, self.polls_to_done if polls is None else polls, effect,
                 self._failures.pop(operation_type, None))
        self.operations[op_name] = op
        return op

    def _advance(self, op: _Op) -> None:
        doc = op.doc
        if doc["status"] == "DONE":
            return
        op.polls_left -= 1
        if op.polls_left > 0:
            doc["status"] = "RUNNING"
            doc["progress"] = {"status": "RUNNING"}
            if doc["operationType"] == "SET_NETWORK_POLICY":
                # Recreating the nodes is what GKE counts: the pools' nodes, done so far.
                pools = self.clusters.get(op.cluster, {}).get("nodePools", [])
                total = sum(int(p.get("initialNodeCount", 1)) for p in pools) or 1
                done = total * (self.polls_to_done - op.polls_left) // max(self.polls_to_done, 1)
                doc["progress"]["metrics"] = [
                    {"name": "NODES_DONE", "intValue": str(done)},
                    {"name": "NODES_TOTAL", "intValue": str(total)}]
            return
        doc["status"] = "DONE"
        doc["endTime"] = "2026-12-04T21:05:00.000000Z"
        doc.pop("progress", None)
        if op.error is not None:
            doc["statusMessage"] = op.error
            doc["error"] = {"code": 9, "message": op.error}
            return
        if op.effect is not None:
            op.effect()

    def _running_on(self, key: str) -> _Op | None:
        return next((o for o in self.operations.values()
                     if o.cluster == key and o.doc["status"] != "DONE"), None)

    def handle(self, method: str, path: str, body: dict[str, Any] | None, auth: str = ""
               ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls.append(Call(method, path, body, auth))
            for ans in self._answers:
                if ans.method == method and path.endswith(ans.path_suffix) and ans.times > 0:
                    ans.times -= 1
                    return ans.status, _error(ans.status, ans.message, ans.grpc_status)
            if path == "/token" and method == "POST":
                return 200, {"access_token": "lab-token", "expires_in": 3600,
                             "token_type": "Bearer"}
            if method == "GET" and (m := _OPERATION.fullmatch(path)):
                found = self.operations.get(m["o"])
                if found is None:
                    return 404, _error(404, f"Not found: operation {m['o']}.", "NOT_FOUND")
                self._advance(found)
                return 200, copy.deepcopy(found.doc)
            if method == "GET" and (m := _OPERATIONS.fullmatch(path)):
                ops = [copy.deepcopy(o.doc) for o in self.operations.values()
                       if m["l"] in ("-", o.doc["location"])]
                return 200, {"operations": ops}
            if method == "GET" and (m := _CLUSTERS.fullmatch(path)):
                found_clusters = [copy.deepcopy(c) for k, c in self.clusters.items()
                                  if k.startswith(f"{m['p']}/")
                                  and m["l"] in ("-", c["location"])]
                return 200, {"clusters": found_clusters}
            m = _CLUSTER.fullmatch(path)
            if m is None:
                return 404, _error(404, f"no such path {path}", "NOT_FOUND")
            key = f"{m['p']}/{m['l']}/{m['c']}"
            cluster = self.clusters.get(key)
            if cluster is None:
                return 404, _error(404, f"Not found: projects/{m['p']}/locations/{m['l']}/"
                                        f"clusters/{m['c']}.", "NOT_FOUND")
            if method == "GET" and m["verb"] is None:
                return 200, copy.deepcopy(cluster)
            if method != "POST" or m["verb"] not in ("setAddons", "setNetworkPolicy"):
                return 404, _error(404, f"no such method {method} {path}", "NOT_FOUND")
            busy = self._running_on(key)
            if busy is not None:
                return 400, _error(400, "Cluster is running incompatible operation "
                                        f"{busy.doc['name']}.", "FAILED_PRECONDITION")
            body = body or {}
            if m["verb"] == "setAddons":
                wanted = (body.get("addonsConfig") or {}).get("networkPolicyConfig")

                def addons() -> None:
                    if wanted is not None:
                        cluster["addonsConfig"]["networkPolicyConfig"] = (
                            {"disabled": True} if wanted.get("disabled") else {})
                op = self._start(key, "UPDATE_CLUSTER", addons)
                return 200, copy.deepcopy(op.doc)
            policy = body.get("networkPolicy") or {}
            enabled = bool(policy.get("enabled", False))
            npc = cluster["addonsConfig"].get("networkPolicyConfig")
            addon_off = npc is None or bool(npc.get("disabled", False))
            if enabled and addon_off:
                return 400, _error(400, ORDER_RULE, "FAILED_PRECONDITION")

            def network_policy() -> None:
                if enabled:
                    cluster["networkPolicy"] = {"provider": "CALICO", "enabled": True}
                else:
                    cluster.pop("networkPolicy", None)
                if self.on_network_policy is not None:
                    self.on_network_policy(enabled)
            op = self._start(key, "SET_NETWORK_POLICY", network_policy)
            return 200, copy.deepcopy(op.doc)


_GRPC = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
         429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _error(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "netiso-gke-test"
    gke: GkeServer  # set on the subclass serve() makes

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: dict[str, Any] | None = None
        if raw:
            ctype = self.headers.get("Content-Type", "")
            # The OAuth2 token request is a form; GKE's calls are JSON.
            body = json.loads(raw) if "json" in ctype else {"form": raw.decode()}
        path = self.path.split("?", 1)[0]
        auth = (self.headers.get("Authorization") or "").split(" ", 1)[0]
        status, doc = self.gke.handle(method, path, body, auth)
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply("GET")

    def do_POST(self) -> None:
        self._reply("POST")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve(gke: GkeServer, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``gke`` in a thread; yields its base URL (``http://127.0.0.1:PORT``)."""
    handler = type("Handler", (_Handler,), {"gke": gke})
    httpd = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def adc_file(directory: Path, base_url: str) -> Path:
    """An Application Default Credentials file that works offline against this server: a
    service account key made now (never committed) whose ``token_uri`` is this server.

    ``GOOGLE_APPLICATION_CREDENTIALS`` names it, as for any Google client. (An
    ``authorized_user`` file cannot serve: google-auth always sends its refresh to Google's own
    token endpoint.) The GKE client signs its own JWT with the key (``always_use_jwt_access``),
    so calls carry a bearer token without a token exchange; the token endpoint is there for
    clients that do exchange.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = directory / "gke-test-adc.json"
    path.write_text(json.dumps({
        "type": "service_account",
        "project_id": "netiso-lab",
        "private_key_id": "lab-key",
        "private_key": pem,
        "client_email": "netiso-test@netiso-lab.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{base_url}/token",
    }), encoding="utf-8")
    path.chmod(0o600)
    return path


def lab_hook(kubeconfig: str) -> Callable[[bool], None]:
    """GKE's side of setNetworkPolicy on the lab: its managed calico-node DaemonSet."""
    from tests.lab import engines
    from tests.lab.kubeapi import Kube

    kube = Kube(kubeconfig)

    def hook(enabled: bool) -> None:
        engines.gke_network_policy(kube, enabled)

    return hook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cluster", default="lab")
    parser.add_argument("--location", default="us-central1-a")
    parser.add_argument("--datapath", default="LEGACY_DATAPATH")
    parser.add_argument("--lab", metavar="KUBECONFIG", nargs="?",
                        const="/var/tmp/netiso-lab/admin.kubeconfig",
                        help="play GKE's side effects on the lab's cluster")
    parser.add_argument("--adc", metavar="DIR", type=Path,
                        help="write an Application Default Credentials file for this server "
                             "into DIR (GOOGLE_APPLICATION_CREDENTIALS names it)")
    args = parser.parse_args()
    gke = GkeServer(on_network_policy=lab_hook(args.lab) if args.lab else None)
    gke.add_cluster(args.cluster, args.location, datapath=args.datapath)
    with serve(gke, args.host, args.port) as url:
        print(f"GKE test server on {url}: export CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER={url}/",
              flush=True)
        if args.adc:
            args.adc.mkdir(parents=True, exist_ok=True)
            print(f"export GOOGLE_APPLICATION_CREDENTIALS={adc_file(args.adc, url)}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
