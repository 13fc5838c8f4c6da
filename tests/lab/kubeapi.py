"""A raw-JSON seam over the official Kubernetes client, for the lab's node agent.

The agent handles every pod of the cluster (hundreds in benchmarks), so it works on plain dicts:
the generated model classes cost a deserialisation per object and per watch event, and the agent
only needs a handful of fields. Authentication, TLS and kubeconfig parsing stay the official
client's (`new_client_from_config`); this module only builds paths and decodes JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

JSON = dict[str, Any]
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        cfg = client.Configuration()
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        # Every pod worker talks to the API server at once when a namespace's pods start or go;
        # the default pool (5 per CPU) would discard connections and pay a TLS handshake each.
        cfg.connection_pool_maxsize = 128
        self.client = client.ApiClient(cfg)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = 30,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        m, url, hdrs, data, _ = self.client.param_serialize(
            method,
            path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.client.call_api(m, url, header_params=hdrs, body=data, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 30,
    ) -> JSON:
        resp = self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        raw = resp.read()
        data: JSON = json.loads(raw) if raw else {}
        if resp.status >= 400:
            raise ApiError(resp.status, str(data.get("message", raw[:200])), data.get("reason", ""))
        return data

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: JSON, content_type: str = STRATEGIC) -> JSON:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def apply(self, path: str, body: JSON, *, field_manager: str, force: bool = True) -> JSON:
        """Server-side apply of ``body`` at its object path (JSON is valid YAML)."""
        return self.request("PATCH", path, body=body, content_type=APPLY,
                            query={"fieldManager": field_manager, "force": str(force).lower()})

    def text(self, path: str, **query: Any) -> str:
        """A GET whose answer is not JSON (a container log)."""
        resp = self._send("GET", path, query=query)
        raw: bytes = resp.read()
        if resp.status >= 400:
            raise ApiError(resp.status, raw[:300].decode(errors="replace"))
        return raw.decode(errors="replace")

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body=body)

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 240, **query: Any
    ) -> Iterator[JSON]:
        """Yields watch events (dicts with type/object) until the server closes the stream."""
        q = dict(query)
        q.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        resp = self._send("GET", path, query=q, timeout=(10, timeout_seconds + 30))
        if resp.status >= 400:
            raw = resp.read()
            raise ApiError(resp.status, raw[:300].decode(errors="replace"))
        buffer = b""
        try:
            for chunk in resp.response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.response.release_conn()
