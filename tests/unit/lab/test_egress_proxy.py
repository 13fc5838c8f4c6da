"""The lab API server's CONNECT proxy (tests/lab/egress_proxy.py), over real sockets on loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab import controlplane, egress_proxy

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture()
def echo_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers each connection with what it got, upper-cased."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        server.close()


def _through_proxy(request: bytes, networks: list[egress_proxy.Network]) -> socket.socket:
    ours, theirs = socket.socketpair()
    threading.Thread(target=egress_proxy.handle, args=(theirs, networks), daemon=True).start()
    ours.settimeout(10)
    ours.sendall(request)
    return ours


def _status(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def test_connect_inside_the_allowed_ranges_is_spliced(echo_port: int) -> None:
    conn = _through_proxy(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                          LOOPBACK)
    with conn:
        assert _status(conn) == b"HTTP/1.1 200 Connection established"
        conn.sendall(b"hello")
        assert conn.recv(1024) == b"HELLO"


def test_bytes_sent_with_the_request_head_reach_the_destination(echo_port: int) -> None:
    conn = _through_proxy(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\nearly".encode(),
                          LOOPBACK)
    with conn:
        assert _status(conn) == b"HTTP/1.1 200 Connection established"
        assert conn.recv(1024) == b"EARLY"


@pytest.mark.parametrize("target", ["10.0.0.1:443", "example.com:443", "[::1]:443"])
def test_destinations_outside_the_ranges_or_by_name_are_forbidden(target: str) -> None:
    with _through_proxy(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode(), LOOPBACK) as conn:
        assert _status(conn) == b"HTTP/1.1 403 Forbidden"


def test_a_refused_destination_is_a_bad_gateway() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with _through_proxy(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode(), LOOPBACK) as conn:
        assert _status(conn) == b"HTTP/1.1 502 Bad Gateway"


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\n\r\n", b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
                                  b"CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n"])
def test_anything_but_a_connect_to_ip_and_port_is_a_bad_request(head: bytes) -> None:
    with _through_proxy(head, LOOPBACK) as conn:
        assert _status(conn) == b"HTTP/1.1 400 Bad Request"


def test_the_api_server_sends_only_cluster_traffic_through_the_socket() -> None:
    socket_path = Path("/var/tmp/netiso-lab/egress.sock")
    doc = yaml.safe_load(controlplane.egress_selector_config(socket_path))
    assert doc["kind"] == "EgressSelectorConfiguration"
    assert doc["egressSelections"] == [{"name": "cluster", "connection": {
        "proxyProtocol": "HTTPConnect",
        "transport": {"uds": {"udsName": "/var/tmp/netiso-lab/egress.sock"}}}}]
