"""Retries like client-go: which calls, which answers, how long — against a real HTTP server.

The server here is a few lines of ``http.server`` answering scripted statuses; the request
goes through netiso's real client (urllib3 pool, ``Retry``), so what is counted is what went
over the socket. The lab test (tests/cluster/test_kube_throttling.py) provokes real 429s from a
real API server with API Priority and Fairness.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso import kube
from netiso.kube import client as kube_client

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}}


# --- the policy, pure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "content_type", "body", "expected"),
    [
        ("GET", None, None, True),
        ("PATCH", kube.APPLY_PATCH, {}, True),
        ("PATCH", "application/merge-patch+json", {}, False),
        ("PATCH", "application/strategic-merge-patch+json", {}, False),
        ("POST", "application/json", {}, False),
        ("DELETE", "application/json", {"preconditions": {"uid": "u-1"}}, True),
        ("DELETE", "application/json", {"propagationPolicy": "Background"}, False),
        ("PUT", "application/json", {}, False),
    ],
)
def test_which_calls_are_idempotent(method: str, content_type: str | None,
                                    body: dict[str, Any] | None, expected: bool) -> None:
    assert kube.is_idempotent(method, content_type=content_type, body=body) is expected


def test_policy_retries_429_and_503_only_for_idempotent_calls() -> None:
    safe = kube.retry_policy("PATCH", True)
    unsafe = kube.retry_policy("POST", False)
    for status in (429, 503):
        assert safe.is_retry("PATCH", status, has_retry_after=True)
        assert safe.is_retry("PATCH", status, has_retry_after=False)
        assert not unsafe.is_retry("POST", status, has_retry_after=True)
        assert not unsafe.is_retry("POST", status, has_retry_after=False)
    for status in (400, 404, 409, 413, 500, 502, 504):
        assert not safe.is_retry("PATCH", status, has_retry_after=True), status
    assert safe.status == kube_client.STATUS_RETRIES == 10  # client-go's maxRetries
    assert safe.respect_retry_after_header
    # A connection dropped mid-request is retried for a read only: a write may have landed.
    assert kube.retry_policy("GET", True).read == 2
    assert kube.retry_policy("PATCH", True).read == 0
    assert unsafe.read == 0
    # Refused connections (nothing was sent) are retried for every call.
    assert unsafe.connect == safe.connect == 2


# --- the behaviour, over a socket ----------------------------------------------------------


class Scripted:
    """Answers per (method, path): a queue of (status, Retry-After or None); then 200."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[tuple[int, str | None]]] = {}
        self.seen: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.seen if (m, p) == (method, path))

    def times(self, method: str, path: str) -> list[float]:
        return [t for m, p, t in self.seen if (m, p) == (method, path)]


@pytest.fixture
def server() -> Iterator[tuple[Scripted, str]]:
    scripted = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null") if length else None
            path = self.path.split("?", 1)[0]
            with scripted.lock:
                scripted.seen.append((self.command, path, time.monotonic()))
                queue = scripted.script.get((self.command, path)) or []
                status, retry_after = queue.pop(0) if queue else (200, None)
            if status == 200:
                out: Any = body if isinstance(body, dict) and "metadata" in body else {
                    "kind": "ConfigMapList", "items": [], "metadata": {}}
            else:
                out = {"kind": "Status", "status": "Failure", "code": status,
                       "reason": "TooManyRequests" if status == 429 else "ServiceUnavailable",
                       "message": "slow down"}
            data = json.dumps(out).encode()
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_DELETE = _answer

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield scripted, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Backoff without Retry-After grows to 8 s per retry; the count is what is tested here.
    monkeypatch.setattr(kube_client, "BACKOFF_FACTOR", 0.0)


def _connect(tmp_path: Path, url: str) -> kube.Kube:
    cfg = {"clusters": [{"name": "c", "cluster": {"server": url}}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
           "users": [{"name": "u", "user": {"token": "t"}}], "current-context": "x"}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(cfg))
    return kube.connect(str(path), environ={}, timeout=5)


LIST = "/api/v1/namespaces/x/configmaps"
ONE = "/api/v1/namespaces/x/configmaps/c"


def test_list_retries_429_until_it_passes(server: tuple[Scripted, str], tmp_path: Path,
                                          no_backoff: None) -> None:
    scripted, url = server
    scripted.script[("GET", LIST)] = [(429, None), (429, None)]
    with _connect(tmp_path, url) as k:
        assert k.list_objects(kube.CONFIGMAP, "x") == []
        assert k.throttled == 2
    assert scripted.count("GET", LIST) == 3


def test_server_side_apply_honours_retry_after(server: tuple[Scripted, str],
                                               tmp_path: Path) -> None:
    scripted, url = server
    scripted.script[("PATCH", ONE)] = [(503, "1")]
    with _connect(tmp_path, url) as k:
        applied = k.server_side_apply(CM)
        assert applied.obj["metadata"]["name"] == "c"
        assert k.throttled == 1
    first, second = scripted.times("PATCH", ONE)
    assert second - first >= 0.95  # waited as the server asked, not the backoff's 0 s


def test_create_is_never_repeated(server: tuple[Scripted, str], tmp_path: Path,
                                  no_backoff: None) -> None:
    scripted, url = server
    scripted.script[("POST", LIST)] = [(429, "1")]
    with _connect(tmp_path, url) as k, pytest.raises(kube.KubeError) as err:
        k.create(CM)
    assert err.value.status == 429
    assert "throttling requests (429)" in err.value.one_line()
    assert scripted.count("POST", LIST) == 1


def test_only_a_uid_guarded_delete_is_retried(server: tuple[Scripted, str], tmp_path: Path,
                                              no_backoff: None) -> None:
    scripted, url = server
    scripted.script[("DELETE", ONE)] = [(429, None), (429, None)]
    with _connect(tmp_path, url) as k:
        with pytest.raises(kube.KubeError):
            k.delete(kube.CONFIGMAP, "c", "x")
        assert scripted.count("DELETE", ONE) == 1
        assert k.delete(kube.CONFIGMAP, "c", "x", uid="u-1") is True
        assert scripted.count("DELETE", ONE) == 3


def test_retries_run_out_and_say_so(server: tuple[Scripted, str], tmp_path: Path,
                                    no_backoff: None) -> None:
    scripted, url = server
    scripted.script[("GET", LIST)] = [(429, None)] * 20
    with _connect(tmp_path, url) as k, pytest.raises(kube.KubeError) as err:
        k.list_objects(kube.CONFIGMAP, "x")
    assert scripted.count("GET", LIST) == 11  # the call and client-go's 10 retries
    assert err.value.status == 429
    assert "kept refusing (429 TooManyRequests) after 10 retries" in err.value.one_line()
    assert "--concurrency" in err.value.one_line()
