"""A wire-level Azure Resource Manager for AKS's managedClusters, over real HTTPS.

How the real SDK reaches it, with standard settings only (netiso has no test flag):

* **ARM through a proxy.** The server is an HTTP proxy: azure-core's requests transport honours
  ``HTTPS_PROXY`` (and ``NO_PROXY``), so ``management.azure.com:443`` is tunnelled here with
  CONNECT and the server terminates TLS with a certificate for that name, signed by its own CA.
  ``REQUESTS_CA_BUNDLE`` hands that CA to requests (as for any TLS-inspecting corporate proxy).
  The SDK's default endpoint, scopes and URLs stay exactly as in production.
* **A managed identity token.** ``DefaultAzureCredential`` reaches ``ManagedIdentityCredential``,
  which takes App Service's ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` (API 2019-08-01) when
  both are set; the server answers that endpoint (plain HTTP, as App Service's local one) with a
  bearer token that its ARM side then requires.
  ``AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential`` keeps the chain from trying developer
  logins. :meth:`ArmServer.env` returns them all (and ``NO_PROXY`` for local hosts).

What it plays: managedClusters list, GET and PUT (ETag / ``If-Match``, 412 on a stale one; 409
``OperationNotAllowed`` while an operation runs; AKS's backfill of networkProfile fields a PUT
leaves out), PUT as a long-running operation polled through ``Azure-AsyncOperation`` (ending
Succeeded or Failed with ARM's code and message), 429 with ``Retry-After`` and any other error
as queued faults, and a call log. A completed PUT plays AKS on the lab: ``on_policy(policy)``
(the lab's ``tests.lab.engines.aks_network_policy``) runs before the operation succeeds.

``python -m tests.servers.arm --port N [--lab]`` runs it for the demo: it prints the environment
to export and serves the call log as JSON at ``http://127.0.0.1:N/_calls``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import ipaddress
import json
import re
import secrets
import shutil
import signal
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ARM_HOST = "management.azure.com"
RP = "Microsoft.ContainerService"
_CLUSTER = re.compile(rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{RP}/"
                      r"managedClusters/([^/]+)$", re.IGNORECASE)
_LIST = re.compile(rf"^/subscriptions/([^/]+)/providers/{RP}/managedClusters$", re.IGNORECASE)
_OPERATION = re.compile(rf"^/subscriptions/([^/]+)/providers/{RP}/locations/([^/]+)/"
                        r"operations/([^/]+)$", re.IGNORECASE)
_POLICIES = ("none", "azure", "calico", "cilium")


@dataclass
class Call:
    method: str
    path: str
    status: int
    if_match: str | None = None
    body: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "status": self.status,
                "ifMatch": self.if_match}


@dataclass
class Fault:
    """One queued answer instead of the real one (for the next matching request)."""

    method: str
    status: int
    code: str
    message: str
    path_contains: str = ""
    retry_after: int | None = None


@dataclass
class _Operation:
    id: str
    cluster: tuple[str, str, str]
    polls_left: int
    started: str
    fail: tuple[str, str] | None = None
    hook: threading.Thread | None = None
    hook_error: str | None = None
    status: str = "InProgress"


@dataclass
class _Cert:
    ca_file: Path
    context: ssl.SSLContext


def _certificates(directory: Path) -> _Cert:
    """A CA and a leaf for management.azure.com (and localhost) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netiso ARM test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ARM_HOST)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(ARM_HOST), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file = directory / "arm-ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    chain = directory / "arm-server.pem"
    chain.write_bytes(leaf.public_bytes(pem) + key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain)
    return _Cert(ca_file, ctx)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def managed_cluster(subscription: str, resource_group: str, name: str, *,
                    location: str = "westeurope", network_plugin: str = "azure",
                    network_policy: str = "none", network_dataplane: str = "azure",
                    network_plugin_mode: str | None = None, fqdn: str | None = None,
                    pools: tuple[tuple[str, int, str], ...] = (("nodepool1", 2, "Linux"),),
                    node_resource_group: str | None = None) -> dict[str, Any]:
    """A managed cluster as ARM returns it (API 2026-08-01 shape, the fields netiso reads and
    the ones a round trip must keep)."""
    network: dict[str, Any] = {
        "networkPlugin": network_plugin, "networkPolicy": network_policy,
        "networkDataplane": network_dataplane, "loadBalancerSku": "standard",
        "outboundType": "loadBalancer", "serviceCidr": "10.0.0.0/16",
        "dnsServiceIP": "10.0.0.10", "ipFamilies": ["IPv4"],
    }
    if network_plugin_mode:
        network["networkPluginMode"] = network_plugin_mode
        network["podCidr"] = "10.244.0.0/16"
    if network_plugin == "kubenet":
        network["podCidr"] = "10.244.0.0/16"
    return {
        "id": f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{RP}/"
              f"managedClusters/{name}",
        "location": location, "name": name, "type": f"{RP}/ManagedClusters",
        "eTag": uuid.uuid4().hex,
        "sku": {"name": "Base", "tier": "Free"},
        "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                     "tenantId": str(uuid.uuid4())},
        "properties": {
            "provisioningState": "Succeeded",
            "powerState": {"code": "Running"},
            "kubernetesVersion": "1.37", "currentKubernetesVersion": "1.37.2",
            "dnsPrefix": f"{name}-dns",
            "fqdn": fqdn or f"{name}-dns-{secrets.token_hex(4)}.hcp.{location}.azmk8s.io",
            "agentPoolProfiles": [
                {"name": pool, "count": count, "vmSize": "Standard_D2s_v3", "osType": os_type,
                 "osSKU": "Ubuntu" if os_type == "Linux" else "Windows2022",
                 "mode": "System" if i == 0 else "User", "type": "VirtualMachineScaleSets",
                 "orchestratorVersion": "1.37", "currentOrchestratorVersion": "1.37.2",
                 "provisioningState": "Succeeded", "powerState": {"code": "Running"},
                 "maxPods": 30, "osDiskSizeGB": 128}
                for i, (pool, count, os_type) in enumerate(pools)],
            "nodeResourceGroup": node_resource_group
                                 or f"MC_{resource_group}_{name}_{location}",
            "enableRBAC": True,
            "networkProfile": network,
        },
    }


class ArmServer:
    """The test server: state, faults, call log; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, *, port: int = 0, poll_steps: int = 1,
                 on_policy: Callable[[str], None] | None = None,
                 state_dir: Path | None = None) -> None:
        self._own_dir = state_dir is None
        self._dir = state_dir or Path(tempfile.mkdtemp(prefix="netiso-arm-"))
        self._cert = _certificates(self._dir)
        self.token = secrets.token_urlsafe(24)
        self.identity_header = secrets.token_hex(8)
        self.poll_steps = poll_steps
        self.on_policy = on_policy
        self.clusters: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        #: The next operation ends Failed with this (code, message).
        self.fail_next_operation: tuple[str, str] | None = None
        #: After the next cluster GET, someone else changes the cluster (a new ETag).
        self.change_after_next_get = False
        self._operations: dict[str, _Operation] = {}
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- running --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def ca_file(self) -> Path:
        return self._cert.ca_file

    def start(self) -> ArmServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="arm-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ArmServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def env(self, no_proxy: str = "") -> dict[str, str]:
        """The standard variables that point the Azure SDK (and only it) here."""
        local = "127.0.0.1,localhost"
        return {
            "HTTPS_PROXY": f"http://127.0.0.1:{self.port}",
            "NO_PROXY": f"{no_proxy},{local}" if no_proxy else local,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.port}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        }

    # --- state and faults -----------------------------------------------------------------

    def add(self, cluster: dict[str, Any]) -> dict[str, Any]:
        m = _CLUSTER.match(cluster["id"])
        assert m is not None, cluster["id"]
        with self._lock:
            self.clusters[_key(*m.groups())] = cluster
        return cluster

    def cluster(self, subscription: str, resource_group: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self.clusters[_key(subscription, resource_group, name)]

    def fault(self, method: str, status: int, code: str, message: str, *,
              path_contains: str = "", retry_after: int | None = None) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), status, code, message, path_contains,
                                     retry_after))

    def busy(self, subscription: str, resource_group: str, name: str) -> None:
        """Another client's operation is running on the cluster (PUTs get 409)."""
        with self._lock:
            self.cluster(subscription, resource_group, name)["properties"][
                "provisioningState"] = "Updating"

    def reset(self) -> None:
        """Forget every cluster, queued fault and logged call."""
        with self._lock:
            self.clusters.clear()
            self.calls.clear()
            self.faults.clear()
            self.fail_next_operation = None
            self.change_after_next_get = False

    def log(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if method is None or c.method == method]

    def puts(self) -> list[Call]:
        return self.log("PUT")

    # --- the API (called by the handler, under the lock) ----------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for i, f in enumerate(self.faults):
            if f.method == method and f.path_contains.lower() in path.lower():
                return self.faults.pop(i)
        return None

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            status, out_headers, out = self._route(method, path, headers, body)
            self.calls.append(Call(method, path, status, headers.get("if-match"), body))
            return status, out_headers, out

    def _route(self, method: str, path: str, headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                         'microsoftonline.com/common", error="invalid_token"'}, _error(
                "InvalidAuthenticationToken", "The access token is invalid.")
        fault = self._take_fault(method, path)
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return fault.status, extra, _error(fault.code, fault.message)
        if m := _LIST.match(path):
            if method != "GET":
                return 405, {}, _error("MethodNotAllowed", f"{method} not allowed")
            sub = m[1].lower()
            return 200, {}, {"value": [copy.deepcopy(c) for k, c in self.clusters.items()
                                       if k[0] == sub]}
        if m := _OPERATION.match(path):
            return self._operation(m[3])
        if m := _CLUSTER.match(path):
            key = _key(*m.groups())
            if method == "GET":
                return self._get(key, m[3], m[2])
            if method == "PUT":
                return self._put(key, m.groups(), headers, body)
            return 405, {}, _error("MethodNotAllowed", f"{method} not allowed")
        return 404, {}, _error("InvalidResourceType", f"The resource type could not be found "
                               f"for path '{path}'.")

    def _get(self, key: tuple[str, str, str], name: str,
             group: str) -> tuple[int, dict[str, str], Any]:
        cluster = self.clusters.get(key)
        if cluster is None:
            return 404, {}, _error("ResourceNotFound", f"The Resource '{RP}/managedClusters/"
                                   f"{name}' under resource group '{group}' was not found.")
        out = copy.deepcopy(cluster)
        if self.change_after_next_get:
            self.change_after_next_get = False
            cluster["eTag"] = uuid.uuid4().hex  # someone else's update lands after this read
        return 200, {"ETag": out["eTag"]}, out

    def _put(self, key: tuple[str, str, str], ids: tuple[str, ...], headers: dict[str, str],
             body: Any) -> tuple[int, dict[str, str], Any]:
        cluster = self.clusters.get(key)
        if cluster is None:
            return 404, {}, _error("ResourceNotFound", "creating clusters is not played here")
        props = cluster["properties"]
        if props["provisioningState"] not in ("Succeeded", "Failed"):
            return 409, {}, _error(
                "OperationNotAllowed",
                "Operation is not allowed because there's an in progress update managed "
                "cluster operation on the managed cluster started at "
                f"{props.get('_started', _now())}. Please try again later.")
        if_match = headers.get("if-match")
        if if_match is not None and if_match.strip('"') not in ("*", cluster["eTag"]):
            return 412, {}, _error(
                "PreconditionFailed",
                f"Operation is not allowed since the provided If-Match header '{if_match}' "
                f"does not match the current ETag of the managed cluster '{cluster['eTag']}'.")
        new_props = (body or {}).get("properties") or {}
        sent = dict(new_props.get("networkProfile") or {})
        old = props["networkProfile"]
        # AKS backfills what a PUT leaves out with its defaults, not with the current values:
        # a partial body silently resets them.
        network = {**old, "networkPolicy": sent.get("networkPolicy", "none"),
                   "networkDataplane": sent.get("networkDataplane", "azure"), **sent}
        before, after = old.get("networkPolicy") or "none", network["networkPolicy"]
        if after not in _POLICIES:
            return 400, {}, _error("InvalidParameter", f"networkPolicy '{after}' is invalid.")
        if before != after and "none" not in (before, after) and after != "cilium":
            return 400, {}, _error(
                "BadRequest", f"Updating network policy from {before} to {after} is not "
                "supported. Set networkPolicy to none first.")
        if network.get("networkDataplane") == "cilium" and after not in ("cilium",):
            return 400, {}, _error("InvalidParameter", "networkDataplane cilium requires "
                                   "networkPolicy cilium.")
        for pool in new_props.get("agentPoolProfiles") or []:
            for mine in props["agentPoolProfiles"]:
                if mine["name"] == pool.get("name") and "count" in pool:
                    mine["count"] = pool["count"]
        props["networkProfile"] = network
        props["provisioningState"] = "Updating"
        props["_started"] = _now()
        cluster["eTag"] = uuid.uuid4().hex
        op = _Operation(id=str(uuid.uuid4()), cluster=key, polls_left=self.poll_steps,
                        started=_now(), fail=self.fail_next_operation)
        self.fail_next_operation = None
        # AKS reconciles the engine on every successful PUT (idempotent: a PUT of the same
        # policy after a Failed operation brings the engine up too).
        if op.fail is None and self.on_policy is not None:
            op.hook = threading.Thread(target=self._run_hook, args=(op, after), daemon=True)
            op.hook.start()
        self._operations[op.id] = op
        sub, location = ids[0], cluster["location"]
        url = (f"https://{ARM_HOST}/subscriptions/{sub}/providers/{RP}/locations/{location}/"
               f"operations/{op.id}?api-version=2016-03-30")
        return 200, {"Azure-AsyncOperation": url, "Retry-After": "1"}, _public(cluster)

    def _run_hook(self, op: _Operation, policy: str) -> None:
        assert self.on_policy is not None
        try:
            self.on_policy(policy)
        except Exception as exc:  # the operation fails as AKS's would, with the reason
            op.hook_error = f"{type(exc).__name__}: {exc}"

    def _operation(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._operations.get(op_id)
        if op is None:
            return 404, {}, _error("NotFound", f"operation {op_id} not found")
        doc: dict[str, Any] = {"name": op.id, "startTime": op.started}
        hook_running = op.hook is not None and op.hook.is_alive()
        if op.status == "InProgress" and (op.polls_left > 0 or hook_running):
            op.polls_left -= 1
            return 200, {"Retry-After": "1"}, {**doc, "status": "InProgress"}
        cluster = self.clusters[op.cluster]
        if op.status == "InProgress":
            fail = op.fail or (("ReconcileVMSSAgentPoolFailed", op.hook_error)
                               if op.hook_error else None)
            op.status = "Failed" if fail else "Succeeded"
            cluster["properties"]["provisioningState"] = op.status
            cluster["properties"].pop("_started", None)
            cluster["eTag"] = uuid.uuid4().hex
            op.fail = fail
        doc.update(status=op.status, endTime=_now())
        if op.fail:
            doc["error"] = {"code": op.fail[0], "message": op.fail[1]}
        return 200, {}, doc

    def token_for(self, headers: dict[str, str], query: dict[str, list[str]]) -> tuple[int, Any]:
        if headers.get("x-identity-header") != self.identity_header:
            return 401, {"error": "invalid_request", "error_description": "bad header"}
        resource = (query.get("resource") or [""])[0]
        return 200, {"access_token": self.token, "expires_on": str(int(time.time()) + 3600),
                     "resource": resource, "token_type": "Bearer"}


def _key(subscription: str, group: str, name: str) -> tuple[str, str, str]:
    return subscription.lower(), group.lower(), name.lower()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _public(cluster: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(cluster)
    out["properties"].pop("_started", None)
    return out


def _handler(server: ArmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        tunnelled = False

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, headers: dict[str, str], doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self._body()
            if not self.tunnelled:
                # Plain HTTP: the managed identity endpoint and the call log, nothing of ARM.
                if url.path == "/msi/token":
                    status, doc = server.token_for(headers, parse_qs(url.query))
                    self._send(status, {}, doc)
                elif url.path == "/_calls":
                    self._send(200, {}, [c.to_json() for c in server.log()])
                else:
                    self._send(404, {}, _error("NotFound", "ARM is served through CONNECT"))
                return
            status, extra, doc = server.handle(method, url.path, headers, body)
            self._send(status, extra, doc)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def do_CONNECT(self) -> None:
            # The proxy's tunnel: TLS for management.azure.com ends here, then plain requests.
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            try:
                tls = server._cert.context.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                self.close_connection = True
                return
            inner = type("Tunnel", (Handler,), {"tunnelled": True})
            with contextlib.suppress(TimeoutError, ssl.SSLError, ConnectionError):
                inner(tls, self.client_address, self.server)
            self.close_connection = True

    return Handler


def lab_hook(kubeconfig: str) -> Callable[[str], None]:
    """AKS's side effect on the lab: the policy's engine DaemonSet, enforcing for its node.

    AKS reports the operation Succeeded once the reimaged nodes run the engine, so the hook (and
    with it the operation) ends when every node's engine finished its first policy sync.
    """

    def on_policy(policy: str) -> None:
        from tests.lab import engines
        from tests.lab.kubeapi import Kube

        kube = Kube(kubeconfig)
        engines.aks_network_policy(kube, policy)
        if policy == "none":
            engines.wait_not_enforcing(kube)
        else:
            engines.wait_enforcing(kube)

    return on_policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.arm", description=__doc__
                                     .split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lab", action="store_true",
                        help="play AKS's engine on the running lab (its admin kubeconfig)")
    parser.add_argument("--network-plugin", default="azure", choices=["azure", "kubenet", "none"])
    parser.add_argument("--network-policy", default="none", choices=list(_POLICIES))
    parser.add_argument("--network-dataplane", default="azure", choices=["azure", "cilium"])
    args = parser.parse_args(argv)
    hook = None
    no_proxy = ""
    if args.lab:
        from tests.lab import controlplane

        hook = lab_hook(str(controlplane.paths().admin_kubeconfig))
        no_proxy = "10.250.0.1"
    server = ArmServer(port=args.port, on_policy=hook)
    # The lab's AKS flavour: subscription and node resource group as its nodes' providerID.
    server.add(managed_cluster(
        "00000000-0000-0000-0000-000000000000", "netiso-lab", "lab",
        network_plugin=args.network_plugin, network_policy=args.network_policy,
        network_dataplane=args.network_dataplane, fqdn="10.250.0.1",
        node_resource_group="mc_netiso-lab_lab_westeurope"))
    server.start()
    for k, v in server.env(no_proxy).items():
        print(f"export {k}={v}", flush=True)
    print(f"# call log: curl -s http://127.0.0.1:{server.port}/_calls", flush=True)
    stop = threading.Event()
    # SIGTERM (the demo's kill) and Ctrl-C both stop it cleanly: its key and CA are removed.
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
