"""The lab API server's way into the cluster network: an HTTP CONNECT proxy on a Unix socket.

A managed control plane reaches pods and kubelets over the cluster's network (EKS through its
cross-account ENIs in the VPC, GKE and AKS through Konnectivity). The lab's kube-apiserver runs in
the root namespace, which by design has no route to pods (tests/lab/network.py), so it reaches
them the way kube-apiserver's own egress selector provides for: `--egress-selector-config-file`
sends the `cluster` traffic (aggregated API servers such as Calico's, kubelets for logs)
as HTTP CONNECT through a Unix socket. This process owns that socket and runs inside the
`netiso-egress` network namespace, a host on the lab's fabric with routes to the pod ranges, so
the tunnelled connections come from the fabric like a control plane's, pass the nodes' FORWARD
chains like any other cluster traffic, and never touch the root namespace's routes.

Only destinations inside the given `--allow` ranges are dialled (the lab's pod and fabric ranges);
anything else gets 403, so the socket cannot be used to reach the host or an uplink.

Usage: python egress_proxy.py --socket PATH --allow CIDR [--allow CIDR ...] [--pidfile FILE]
Stdlib only on purpose: it is started with the interpreter directly, outside the package.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import selectors
import signal
import socket
import sys
import threading
from types import FrameType

HEADER_LIMIT = 16384
DIAL_TIMEOUT = 10.0
BUFFER = 65536

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_connect(head: bytes) -> tuple[str, int]:
    """The (host, port) of a CONNECT request head; ValueError for anything else."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not a CONNECT request: {line[:100]!r}")
    host, sep, port = parts[1].rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad CONNECT target {parts[1][:100]!r}")
    return host.strip("[]"), int(port)


def allowed(host: str, networks: list[Network]) -> bool:
    """Literal IP addresses inside the allowed ranges only: names are never resolved here."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("connection closed before the request head")
        data += chunk
        if len(data) > HEADER_LIMIT:
            raise ValueError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _splice(a: socket.socket, b: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    open_ends = 2
    try:
        while open_ends:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                try:
                    chunk = src.recv(BUFFER)
                except OSError:
                    chunk = b""
                if chunk:
                    dst.sendall(chunk)
                    continue
                # Half-close: TLS and HTTP/2 peers may still answer after the other side's FIN.
                sel.unregister(src)
                open_ends -= 1
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sel.close()


def handle(conn: socket.socket, networks: list[Network]) -> None:
    upstream: socket.socket | None = None
    try:
        try:
            head, rest = _read_head(conn)
            host, port = parse_connect(head)
        except (ValueError, OSError) as err:
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            print(f"egress: {err}", file=sys.stderr, flush=True)
            return
        if not allowed(host, networks):
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            print(f"egress: refused {host}:{port} (outside the lab's ranges)", file=sys.stderr,
                  flush=True)
            return
        try:
            upstream = socket.create_connection((host, port), timeout=DIAL_TIMEOUT)
        except OSError as err:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            print(f"egress: {host}:{port}: {err}", file=sys.stderr, flush=True)
            return
        upstream.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        _splice(conn, upstream)
    finally:
        if upstream is not None:
            upstream.close()
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--allow", action="append", required=True)
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    networks: list[Network] = [ipaddress.ip_network(c) for c in args.allow]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(args.socket)
    os.chmod(args.socket, 0o600)
    server.listen(128)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.socket)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.pidfile:
        with open(args.pidfile, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn, networks), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
