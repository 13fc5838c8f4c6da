"""The slice of the kubelet API the lab serves: container logs, so `kubectl logs` works.

The API server reaches a kubelet at `<node InternalIP>:10250` over TLS. A lab node's IP lives in
its node netns, so the listening socket is created there: a short-lived thread enters the netns
(setns is per thread), creates and binds the socket, and the socket stays in that netns after
the thread is gone; the agent's other threads never change namespace.

Who may ask: the API server, whose connections to kubelets go through its egress selector and
so arrive from the egress host, 10.250.0.2 (network.py, egress_proxy.py). Requests from any
other address are refused, so a lab pod (which can reach its node's IP, and cannot take another
address: no CAP_NET_ADMIN) cannot read other pods' logs. A client certificate signed by the lab
CA is verified when one is presented; the API server sends none unless it is started with
--kubelet-client-certificate.

Served: GET /containerLogs/<ns>/<pod>/<container> (follow, tailLines, previous, limitBytes,
timestamps ignored) and /healthz. exec/attach/port-forward answer 501 with a message naming
`tests.lab.network.exec_in_pod` instead.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import ipaddress
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab import network

KUBELET_PORT = 10250
CLONE_NEWNET = 0x40000000

# (namespace, pod, container, previous) -> (log file, still running?) or None
LogLookup = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]


def serving_certificate(directory: Path, node_name: str, ip: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for the node (the API server does not verify kubelet
    certificates unless --kubelet-certificate-authority is set)."""
    cert_path, key_path = (
        directory / f"kubelet-{node_name}.crt",
        directory / f"kubelet-{node_name}.key",
    )
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@netiso-lab")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(node_name), x509.IPAddress(ipaddress.IPv4Address(ip))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def socket_in_netns(netns: str, address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket created inside `netns` (see the module docstring)."""
    result: dict[str, Any] = {}

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(64)
            result["sock"] = sock
        except OSError as exc:
            result["error"] = exc

    # The thread ends still inside the netns; it is never reused, so nothing else runs there.
    thread = threading.Thread(target=make, name=f"bind-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


def tail_lines(data: bytes, n: int) -> bytes:
    if n < 0:
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[len(lines) - n :]) if n < len(lines) else data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lookup: LogLookup
    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        if client_address[0] != network.EGRESS_HOST_IP:
            request.close()
            return
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        super().finish_request(conn, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _plain(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            self._plain(200, "ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._plain(
                501,
                "the netiso lab node agent serves only /containerLogs; exec into "
                "lab pods with tests.lab.network.exec_in_pod\n",
            )
            return
        _, ns, pod, container = parts
        previous = query.get("previous", ["false"])[0] == "true"
        found = self.server.lookup(ns, pod, container, previous)
        if found is None:
            self._plain(404, f'container "{container}" in pod "{pod}" not found\n')
            return
        path, running = found
        follow = query.get("follow", ["false"])[0] == "true"
        tail = int(query.get("tailLines", ["-1"])[0] or -1)
        limit = int(query.get("limitBytes", ["0"])[0] or 0)
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        offset = len(data)
        if tail >= 0:
            data = tail_lines(data, tail)
        if limit > 0:
            data = data[:limit]
        if not follow:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._chunk(data)
            while True:
                more = b""
                try:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        more = fh.read()
                except OSError:
                    pass
                offset += len(more)
                self._chunk(more)
                if not more and not running():
                    break
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


def serve(node: network.NodeSpec, state_dir: Path, lookup: LogLookup) -> ThreadingHTTPServer:
    """Start the log endpoint for one node in a background thread; returns the server."""
    cert, key = serving_certificate(state_dir / "kubelet", node.name, node.ip)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    ca = state_dir / "pki" / "ca.crt"
    if ca.exists():
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    sock = socket_in_netns(node.netns, (node.ip, KUBELET_PORT))
    server = _Server((node.ip, KUBELET_PORT), _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    server.lookup = lookup
    server.context = context
    threading.Thread(target=server.serve_forever, name=f"kubelet-{node.name}", daemon=True).start()
    return server
