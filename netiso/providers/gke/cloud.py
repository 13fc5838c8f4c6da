"""The GKE API: the only module that imports the Google Cloud SDK (google-cloud-container).

Design decisions:

* **The SDK's own client, REST transport, Application Default Credentials.** Credentials come
  from ``google.auth.default()`` as for ``gcloud`` and every Google library
  (``GOOGLE_APPLICATION_CREDENTIALS``, the gcloud ADC file, the metadata server). The endpoint is
  ``container.googleapis.com`` unless ``CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER`` is set: the
  environment form of gcloud's own ``api_endpoint_overrides/container`` property, so one setting
  points both gcloud and netiso at a private endpoint (or at the project's test server). The
  Python client reads no per-service endpoint variable of its own.
* **The body as sent, not as parsed.** The REST transport parses responses with
  ``ignore_unknown_fields=True``: an enum value newer than the SDK
  (``MIGRATE_TO_ADVANCED_DATAPATH``) becomes ``UNSPECIFIED`` without a word. A response hook
  on the transport's HTTP session keeps each response's JSON, and netiso reads that
  (``plan.ClusterView.from_json``).
* **Retries for what GKE says is transient.** The SDK retries only 503 and only on reads; GKE
  also answers 429 (quota) to both reads and writes. Every call here retries 429 and 503 with
  backoff. A retried write is safe: GKE refuses a second concurrent operation with a 400 naming
  the first, which :meth:`GkeCloud.mutate` waits for.
* **Errors leave as netiso errors with GKE's own words**: ``google.api_core`` exceptions become
  :class:`~netiso.errors.OperationFailed` (exit 1) carrying the error body's message and status,
  never the SDK's ``POST https://...: `` prefix.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as gauth_exc
from google.cloud import container_v1

from netiso.errors import OperationFailed, PreconditionFailed
from netiso.providers.gke.plan import (
    ClusterView,
    OperationView,
    operation_named_in,
    running_on,
)

#: gcloud's endpoint override for the container API, in its environment-variable form.
ENDPOINT_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER"

_TRANSIENT = gretry.if_exception_type(gexc.TooManyRequests, gexc.ServiceUnavailable)


def endpoint_from_env(value: str | None) -> str | None:
    """The client's ``api_endpoint`` for gcloud's override value.

    gcloud takes the API root with a trailing slash (``https://host/``) and adds ``v1/`` itself;
    the Python client wants scheme, host and port only, and adds the path.
    """
    if not value:
        return None
    text = value.strip().rstrip("/")
    return text.removesuffix("/v1") or None


def _message(exc: gexc.GoogleAPICallError) -> tuple[str, str]:
    """GKE's own message and status from an error response (not the SDK's URL prefix)."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            err = response.json().get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        if err.get("message"):
            return str(err["message"]), str(err.get("status") or exc.code or "")
    return str(exc.message), str(exc.code or "")


class GkeCloud:
    """One project's GKE API, through ``ClusterManagerClient`` (REST)."""

    def __init__(self, *, credentials: Any = None, endpoint: str | None = None,
                 retry_timeout: float = 120.0, poll: float = 1.0) -> None:
        self._poll = poll
        endpoint = endpoint or endpoint_from_env(os.environ.get(ENDPOINT_ENV))
        options = {"api_endpoint": endpoint} if endpoint else None
        self.endpoint = endpoint or "https://container.googleapis.com"
        try:
            self._client = container_v1.ClusterManagerClient(
                credentials=credentials, transport="rest", client_options=options)
        except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and kin
            raise OperationFailed(
                f"GKE: no Google credentials: {exc}",
                hint="run `gcloud auth application-default login`, or set "
                     "GOOGLE_APPLICATION_CREDENTIALS",
            ) from exc
        self._retry = gretry.Retry(predicate=_TRANSIENT, initial=0.5, maximum=10.0,
                                   multiplier=2.0, timeout=retry_timeout)
        self._bodies: list[bytes] = []
        # The REST transport's requests session (AuthorizedSession): every call goes through it.
        transport: Any = self._client.transport
        transport._session.hooks["response"].append(self._keep_body)

    def _keep_body(self, response: Any, *_args: Any, **_kwargs: Any) -> None:
        self._bodies.append(response.content)

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except gexc.GoogleAPICallError as exc:
            message, status = _message(exc)
            raise OperationFailed(f"GKE {what}: {message}" + (f" ({status})" if status else "")
                                  ) from exc
        except gexc.RetryError as exc:
            cause = exc.cause
            detail = _message(cause)[0] if isinstance(cause, gexc.GoogleAPICallError) else exc
            raise OperationFailed(f"GKE {what}: still refused after retries: {detail}") from exc
        except (requests.exceptions.RequestException, gauth_exc.GoogleAuthError) as exc:
            # The REST transport lets requests' own errors out (connection refused, DNS, TLS),
            # and a token refresh that cannot reach its endpoint is google.auth's: one line.
            # requests nests urllib3's retry error around the socket's: the errno line is the
            # cause a user can act on.
            errno = re.search(r"\[Errno -?\d+\][^\"')]*", str(exc))
            why = errno[0].strip() if errno else type(exc).__name__
            raise OperationFailed(f"GKE {what}: unreachable at {self.endpoint}: {why}",
                                  hint=f"check the network and {ENDPOINT_ENV}") from exc

    def _raw(self, call: Callable[[], Any]) -> dict[str, Any]:
        self._bodies.clear()
        call()
        if not self._bodies:  # pragma: no cover - every SDK call here makes one request
            return {}
        doc: dict[str, Any] = json.loads(self._bodies[-1] or b"{}")
        return doc

    # --- reads -------------------------------------------------------------------------------

    def get_cluster(self, path: str) -> ClusterView | None:
        """The cluster at ``projects/P/locations/L/clusters/N``; None when GKE says 404."""
        try:
            with self._call(f"clusters.get {path}"):
                doc = self._raw(lambda: self._client.get_cluster(name=path, retry=self._retry))
        except OperationFailed as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return None
            raise
        return ClusterView.from_json(doc)

    def list_clusters(self, project: str, location: str = "-") -> list[ClusterView]:
        parent = f"projects/{project}/locations/{location}"
        with self._call(f"clusters.list {parent}"):
            doc = self._raw(lambda: self._client.list_clusters(parent=parent, retry=self._retry))
        return [ClusterView.from_json(c) for c in doc.get("clusters") or ()]

    def get_operation(self, path: str) -> OperationView:
        with self._call(f"operations.get {path}"):
            doc = self._raw(lambda: self._client.get_operation(name=path, retry=self._retry))
        return OperationView.from_json(doc)

    def list_operations(self, project: str, location: str) -> list[OperationView]:
        parent = f"projects/{project}/locations/{location}"
        with self._call(f"operations.list {parent}"):
            doc = self._raw(lambda: self._client.list_operations(parent=parent,
                                                                 retry=self._retry))
        return [OperationView.from_json(o) for o in doc.get("operations") or ()]

    # --- writes ------------------------------------------------------------------------------

    def set_network_policy_addon(self, path: str) -> OperationView:
        addons = container_v1.AddonsConfig(
            network_policy_config=container_v1.NetworkPolicyConfig(disabled=False))
        with self._call(f"clusters.setAddons {path}"):
            doc = self._raw(lambda: self._client.set_addons_config(
                name=path, addons_config=addons, retry=self._retry))
        return OperationView.from_json(doc)

    def set_network_policy(self, path: str) -> OperationView:
        policy = container_v1.NetworkPolicy(
            provider=container_v1.NetworkPolicy.Provider.CALICO, enabled=True)
        with self._call(f"clusters.setNetworkPolicy {path}"):
            doc = self._raw(lambda: self._client.set_network_policy(
                name=path, network_policy=policy, retry=self._retry))
        return OperationView.from_json(doc)

    # --- operations --------------------------------------------------------------------------

    def wait_operation(self, project: str, location: str, op: OperationView, *,
                       deadline: float, log: Callable[[str], None],
                       own: bool = True) -> OperationView:
        """Poll ``operations.get`` until DONE (every ``poll`` s, 1 s by default, growing to 10 s).

        The error of an operation netiso started (``own``) is raised; another's is only said.
        """
        path = f"projects/{project}/locations/{location}/operations/{op.name}"
        last = ""
        delay = self._poll
        while True:
            if op.line() != last:
                log(op.line())
                last = op.line()
            if op.done:
                if op.error and not own:
                    log(f"{op.name} ended in error: {op.error}")
                elif op.error:
                    code = f" ({op.error_code})" if op.error_code else ""
                    raise OperationFailed(f"GKE operation {op.name} ({op.operation_type}) "
                                          f"failed: {op.error}{code}")
                return op
            if time.monotonic() + delay > deadline:
                raise OperationFailed(
                    f"GKE operation {op.name} ({op.operation_type}) still {op.status} at the "
                    "timeout", hint="raise --timeout, or follow it with gcloud container "
                                    f"operations describe {op.name} --location {location}")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
            op = self.get_operation(path)

    def wait_idle(self, project: str, location: str, cluster: str, *, deadline: float,
                  log: Callable[[str], None]) -> None:
        """Wait for every operation already running on the cluster (GKE runs one at a time)."""
        for op in running_on(self.list_operations(project, location), cluster):
            log(f"waiting for {op.name} ({op.operation_type}), already running on {cluster}")
            self.wait_operation(project, location, op, deadline=deadline, log=log, own=False)

    def mutate(self, project: str, location: str, cluster: str,
               send: Callable[[], OperationView], *, deadline: float,
               log: Callable[[str], None]) -> OperationView:
        """Send one mutating call and wait for its operation.

        Another operation on the cluster first is waited for; one that starts between that check
        and the call makes GKE refuse with a 400 naming it, which is waited for and the call
        sent once more. A refusal naming no operation is raised as GKE said it.
        """
        self.wait_idle(project, location, cluster, deadline=deadline, log=log)
        try:
            op = send()
        except OperationFailed as exc:
            other = operation_named_in(exc.message)
            if not isinstance(exc.__cause__, gexc.BadRequest) or other is None:
                raise
            log(f"GKE refused: another operation ({other}) runs on {cluster}; waiting for it")
            try:
                running = self.get_operation(
                    f"projects/{project}/locations/{location}/operations/{other}")
            except OperationFailed:
                raise PreconditionFailed(
                    exc.message, hint=f"wait for {other} to finish, then rerun") from exc
            self.wait_operation(project, location, running, deadline=deadline, log=log,
                                own=False)
            op = send()
        return self.wait_operation(project, location, op, deadline=deadline, log=log)
