"""The lab's cloud metadata host: a stdlib HTTP server for 169.254.169.254 and friends.

It runs inside the `netiso-meta` network namespace (started there by `tests.lab.network.up`), so the
addresses it binds are the lab's own copies of the link-local metadata addresses and never the
host's real cloud metadata endpoint. It binds each given address explicitly (never 0.0.0.0) so a
mistake in where it is started cannot make it listen on a host interface.

The answers are plain text in the shape of the three clouds' metadata services: enough for a probe
pod's `wget -qO- http://169.254.169.254/latest/meta-data/instance-id` to prove reachability, and
for an egress NetworkPolicy to prove it is blocked. Nothing here is secret; the "credentials" on
169.254.170.23 (the EKS Pod Identity agent address) are obviously fake.

Usage: python metadata_server.py --address A [--address B ...] [--port 80] [--pidfile FILE]
Stdlib only on purpose: it is started with the interpreter directly, outside the package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

INSTANCE_ID = "i-0netisolab000001"

AWS_META: dict[str, str] = {
    "instance-id": INSTANCE_ID,
    "instance-type": "m5.large",
    "local-ipv4": "10.250.0.11",
    "placement/availability-zone": "us-west-2a",
    "placement/region": "us-west-2",
    "iam/security-credentials/": "netiso-lab-node-role",
}

FAKE_CREDENTIALS = {
    "AccessKeyId": "ASIANETISOLABFAKE000",
    "SecretAccessKey": "netiso-lab-fake-secret",
    "Token": "netiso-lab-fake-token",
    "Expiration": "2099-01-01T00:00:00Z",
}


def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """Pure routing: (status, content type, body) for a request. Unit-tested directly."""
    text = "text/plain"
    if method == "PUT" and path == "/latest/api/token":
        return 200, text, "netiso-lab-imdsv2-token"
    if method != "GET":
        return 405, text, "method not allowed\n"
    if path in ("/", "/latest", "/latest/"):
        return 200, text, "meta-data\n"
    if path in ("/latest/meta-data", "/latest/meta-data/"):
        keys = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in AWS_META})
        return 200, text, "\n".join(keys) + "\n"
    if path.startswith("/latest/meta-data/"):
        key = path.removeprefix("/latest/meta-data/")
        if key in AWS_META:
            return 200, text, AWS_META[key]
        if key.startswith("iam/security-credentials/") and key.count("/") == 2:
            return 200, "application/json", json.dumps(FAKE_CREDENTIALS)
        return 404, text, "not found\n"
    if path.startswith("/computeMetadata/v1/"):
        # The GCE server refuses requests without this header; mirror that so probes notice.
        if headers.get("metadata-flavor", "") != "Google":
            return 403, text, "Missing Metadata-Flavor:Google header.\n"
        gce = {
            "instance/id": "4242424242424242424",
            "instance/zone": "projects/123/zones/us-central1-a",
            "project/project-id": "netiso-lab",
        }
        key = path.removeprefix("/computeMetadata/v1/")
        if key in gce:
            return 200, text, gce[key]
        return 404, text, "not found\n"
    if path.startswith("/metadata/instance"):
        if headers.get("metadata", "") != "true":
            return (
                400,
                "application/json",
                json.dumps({"error": "Bad request. Required metadata header not specified"}),
            )
        body = {
            "compute": {"vmId": "00000000-0000-0000-0000-00000000beef", "location": "westeurope"}
        }
        return 200, "application/json", json.dumps(body)
    if path.startswith("/v1/credentials"):
        return 200, "application/json", json.dumps(FAKE_CREDENTIALS)
    return 404, text, "not found\n"


class Handler(BaseHTTPRequestHandler):
    server_version = "netiso-lab-metadata/1"

    def _reply(self) -> None:
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, ctype, body = answer(self.command, path, headers)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _reply
    do_PUT = _reply

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", action="append", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    servers = [ThreadingHTTPServer((addr, args.port), Handler) for addr in args.address]
    for srv in servers:
        srv.daemon_threads = True
    if args.pidfile:
        with open(args.pidfile, "w") as fh:
            fh.write(f"{os.getpid()}\n")

    def stop(signum: int, frame: FrameType | None) -> None:
        for srv in servers:
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=srv.serve_forever, daemon=True) for srv in servers]
    for t in threads:
        t.start()
    sys.stderr.write(f"metadata server on {', '.join(args.address)} port {args.port}\n")
    sys.stderr.flush()
    for t in threads:
        t.join()
    if args.pidfile:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
