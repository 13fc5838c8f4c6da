"""The connection to one API server: requests, retries, reads, waits, and server-side apply.

Design decisions:

* **Wire level.** Requests go through the client's urllib3 pool as plain JSON (dicts in, dicts
  out). The generated model classes are skipped on purpose: deserialising every NetworkPolicy
  into models and back costs more CPU than the request itself when applying thousands of
  objects, and netiso compares and prints objects as plain data anyway. The client still
  provides the TLS settings, the pool and the credential refresh (exec plugins).
* **One write path.** Writes are server-side apply (``PATCH`` with
  ``application/apply-patch+yaml``, field manager ``netiso``); JSON is valid YAML, so the body is
  JSON. No ``last-applied-configuration`` annotation is ever written: it would double the size of
  large objects (the Calico Installation CRD is ~1.4 MB; the annotation would push it past the
  API server's limits) and the API server's managedFields already record what netiso owns. Dry
  runs are the same request with ``dryRun=All``, so the API server decides what would change.
* **Retries like client-go, from urllib3's ``Retry``.** A 429 (API Priority and Fairness, max
  in-flight) or 503 is the server asking to come back later; it is retried, honouring
  ``Retry-After`` (else exponential backoff with jitter), up to 10 times as client-go does, but
  only for calls that are safe to repeat: GET/LIST/WATCH, server-side apply (a PATCH that states
  the whole intent), and a DELETE guarded by a uid precondition. A POST or an unguarded DELETE
  is never repeated, since the first attempt may have taken effect. Connection failures before
  a request was sent are retried twice for every call; a connection dropped mid-request only for
  a GET (client-go's rule), so an in-flight write is never silently re-sent. Each 429/503 the
  server answered is counted (``Kube.throttled``) so a caller can say so.
* **Discovery for kinds netiso does not know.** The known-kinds table answers without a request;
  anything else is looked up once per run in the server's discovery documents
  (``resources.Discovery``), and a CRD applied by ``apply_all`` tells its own kind's location.
* **``apply_all``/``delete_all``.** Any set of manifests, ranked by kind (``resources``): CRDs
  first and established before their custom resources, custom resources last; deletion in the
  reverse order, each object read first so the DELETE carries its uid (safe to retry, and never
  hits a same-named object created meanwhile).
* **Concurrency.** One ``Kube`` is shared by worker threads: urllib3's pool manager is
  thread-safe, and its pool is sized to the caller's worker count so threads do not queue for
  connections.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client import ApiClient
from urllib3.util.retry import Retry

from netiso.errors import UsageError
from netiso.kube.errors import (
    CRD_COMPONENTS,
    KubeError,
    MissingResourceType,
    NotFound,
    Request,
    Unreachable,
    UntrustedServer,
    explain_tls_failure,
    root_cause,
    translate_status,
)
from netiso.kube.kubeconfig import IN_CLUSTER_DIR, KubeconfigSource, load_configuration
from netiso.kube.objects import FIELD_MANAGER, Obj, describe, has_condition
from netiso.kube.resources import (
    CRD,
    NAMESPACE,
    NETWORK_POLICY,
    POD,
    RANK_CRD,
    RANK_CUSTOM,
    Discovery,
    ResourceType,
    _rt,
    apply_order,
    crd_defined_kinds,
    delete_order,
    group_of,
    kind_rank,
    known_resource_type,
    resource_types_of_crd,
)

APPLY_PATCH = "application/apply-patch+yaml"

# --- retries ----------------------------------------------------------------------------------

THROTTLE_STATUSES = frozenset({429, 503})
STATUS_RETRIES = 10  # client-go's default maxRetries for Retry-After responses
CONNECT_RETRIES = 2  # a dead server should fail in seconds, so the caller can report
BACKOFF_FACTOR = 0.25  # 0, 0.5, 1, 2, 4, 8 s ... when the server gives no Retry-After
BACKOFF_MAX = 8.0
RETRY_AFTER_MAX = 30  # a Retry-After beyond this is capped (a run should not stall for hours)


class _Retry(Retry):
    # urllib3 also honours Retry-After on 413; the API server's 413 (request too large) is
    # not transient.
    RETRY_AFTER_STATUS_CODES = THROTTLE_STATUSES


def is_idempotent(method: str, *, content_type: str | None = None,
                  body: Mapping[str, Any] | None = None) -> bool:
    """Whether repeating the call cannot do more than doing it once. Pure.

    GET (reads, lists, watches); a server-side apply PATCH (it restates the whole intent); a
    DELETE with a uid precondition (a repeat finds the object gone or a different uid)."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        return True
    if method == "PATCH":
        return content_type == APPLY_PATCH
    if method == "DELETE":
        return bool(((body or {}).get("preconditions") or {}).get("uid"))
    return False


def retry_policy(method: str, idempotent: bool) -> Retry:
    """urllib3's ``Retry`` for one call: which failures are retried, how often, how long."""
    return _Retry(
        total=None,  # each kind of failure has its own budget below
        connect=CONNECT_RETRIES,
        read=CONNECT_RETRIES if method.upper() == "GET" else 0,
        status=STATUS_RETRIES if idempotent else 0,
        other=0,  # TLS failures and protocol errors: retrying cannot help
        redirect=3,
        allowed_methods=None,  # idempotency is decided per call (above), not by method
        status_forcelist=THROTTLE_STATUSES if idempotent else frozenset(),
        respect_retry_after_header=idempotent,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        backoff_jitter=BACKOFF_FACTOR,  # workers throttled together must not retry together
        retry_after_max=RETRY_AFTER_MAX,
        raise_on_status=False,  # the last answer is translated like any other
        raise_on_redirect=False,
    )


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What server-side apply returned, with the object as it was before."""

    obj: Obj
    before: Obj | None

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def changed(self) -> bool:
        if self.before is None:
            return True
        rv_before = self.before.get("metadata", {}).get("resourceVersion")
        return bool(rv_before != self.obj.get("metadata", {}).get("resourceVersion"))


@dataclass(frozen=True)
class Applied:
    """One server-side apply: the object the server holds, and whether this call created it
    (the server answered 201, not 200: two concurrent applies cannot both claim it)."""

    obj: Obj
    created: bool

    @property
    def ref(self) -> str:
        return describe(self.obj)


@dataclass(frozen=True)
class Deleted:
    """One object of ``delete_all``: ``deleted`` is False when it was already gone."""

    ref: str
    deleted: bool


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


_DISCOVERY = _rt("v1", "APIDiscovery", "apis", namespaced=False)
_VERSION = _rt("v1", "Version", "version", False)


class Kube:
    """A connection to one API server. Thread-safe; share one across workers."""

    def __init__(self, api_client: Any, source: KubeconfigSource, *,
                 timeout: float = 30.0) -> None:
        self._api = api_client
        self.source = source
        self.server: str = str(api_client.configuration.host)
        self.timeout = timeout
        self.discovery = Discovery(self._fetch_discovery)
        self._count_lock = threading.Lock()
        self.throttled = 0  # 429/503 answers received (each retried while the budget lasted)

    @property
    def context(self) -> str | None:
        return self.source.context

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the one request function ---------------------------------------------------------

    def _headers(self, content_type: str | None, accept: str = "application/json"
                 ) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "netiso"}
        if content_type:
            headers["Content-Type"] = content_type
        # auth_settings() runs the client's refresh hook, which re-runs exec plugins when
        # their token expires.
        for setting in self._api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def _unreachable(self, exc: BaseException, req: Request) -> Unreachable:
        tls = explain_tls_failure(str(getattr(exc, "reason", None) or exc))
        if tls is not None:
            return UntrustedServer(
                f"{tls} (server {self.server}; {req.describe()})",
                hint="check certificate-authority(-data) of the cluster in your kubeconfig, "
                     "and that the context points at the cluster you mean",
            )
        return Unreachable(
            f"cannot reach the API server at {self.server} ({req.describe()}): "
            f"{root_cause(exc)}",
            hint="is the cluster up and the kubeconfig context right?",
        )

    def send(
        self,
        method: str,
        path: str,
        req: Request,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float | None = None,
        stream: bool = False,
    ) -> Response:
        """One API call: its status and decoded JSON (the raw response when streaming).

        Raises the translated error for any non-2xx answer (after the retries above)."""
        url = self.server + path + (("?" + urlencode(list(query))) if query else "")
        if body is not None and content_type is None:
            content_type = "application/json"
        payload = json.dumps(body).encode() if body is not None else None
        t = timeout if timeout is not None else self.timeout
        retries = retry_policy(method, is_idempotent(
            method, content_type=content_type, body=body if isinstance(body, Mapping) else None))
        try:
            resp = self._api.rest_client.pool_manager.request(
                method, url, body=payload, headers=self._headers(content_type, accept),
                timeout=urllib3.Timeout(connect=min(10.0, t), read=t), retries=retries,
                preload_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc, req) from exc
        history = getattr(getattr(resp, "retries", None), "history", ()) or ()
        throttled = sum(1 for h in history if h.status in THROTTLE_STATUSES)
        if throttled or resp.status in THROTTLE_STATUSES:
            with self._count_lock:
                self.throttled += throttled + (resp.status in THROTTLE_STATUSES)
        if stream and 200 <= resp.status < 300:
            return Response(resp.status, resp)
        try:
            data = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"the API server at {self.server} dropped the connection ({req.describe()}): "
                f"{root_cause(exc)}",
            ) from exc
        finally:
            resp.release_conn()
        decoded: Any = None
        if data:
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = {"message": data[:300].decode("utf-8", "replace")}
        if not 200 <= resp.status < 300:
            raise translate_status(
                resp.status, decoded if isinstance(decoded, dict) else None, req, self.server,
                retried=throttled,
            )
        return Response(resp.status, decoded)

    def request(
        self,
        method: str,
        path: str,
        req: Request,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Any:
        """One API call. Returns the decoded JSON (or the raw response when streaming)."""
        return self.send(method, path, req, query=query, body=body, content_type=content_type,
                         timeout=timeout, stream=stream).body

    # --- where kinds live -----------------------------------------------------------------

    def _fetch_discovery(self, path: str, accept: str) -> Mapping[str, Any] | None:
        try:
            doc = self.send("GET", path, Request("get", _DISCOVERY), accept=accept).body
        except (NotFound, MissingResourceType):
            return None
        return doc if isinstance(doc, Mapping) else None

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        """Where ``kind`` lives: the known table first, else API discovery (cached per run)."""
        rt = known_resource_type(api_version, kind) or self.discovery.lookup(api_version, kind)
        if rt is not None:
            return rt
        group = group_of(api_version)
        component = CRD_COMPONENTS.get(group)
        return_hint = (f"install {component} first" if component else
                       "apply the CustomResourceDefinition that defines it first, or check "
                       "the apiVersion")
        raise MissingResourceType(
            f"the API server at {self.server} does not serve {kind} ({api_version})",
            group=group, component=component, hint=return_hint,
        )

    def resource_of(self, obj: Mapping[str, Any]) -> ResourceType:
        return self.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    # --- reads ----------------------------------------------------------------------------

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        req = Request("get", rt, namespace, name)
        try:
            obj: Obj = self.request("GET", rt.path(namespace, name), req)
        except NotFound:
            return None
        return obj

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> list[Obj]:
        """All objects (paginated), each with apiVersion/kind filled in like a GET returns."""
        return self.list_with_version(rt, namespace, label_selector=label_selector,
                                      field_selector=field_selector, page_size=page_size)[0]

    def list_with_version(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[Obj], str | None]:
        """The objects and the list's resourceVersion (where a watch can start)."""
        req = Request("list", rt, namespace)
        items: list[Obj] = []
        cont: str | None = None
        while True:
            query = [("limit", str(page_size))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if cont:
                query.append(("continue", cont))
            page = self.request("GET", rt.path(namespace), req, query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items, (page.get("metadata") or {}).get("resourceVersion")

    def list_namespaces(self, label_selector: str | None = None) -> list[Obj]:
        return self.list_objects(NAMESPACE, label_selector=label_selector)

    def list_pods(self, namespace: str | None = None, label_selector: str | None = None
                  ) -> list[Obj]:
        return self.list_objects(POD, namespace, label_selector=label_selector)

    def list_network_policies(self, namespace: str | None = None,
                              label_selector: str | None = None) -> list[Obj]:
        return self.list_objects(NETWORK_POLICY, namespace, label_selector=label_selector)

    def server_version(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/version", Request("get", _VERSION))
        return data

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 60,
    ) -> Iterator[tuple[str, Obj]]:
        """(event type, object) pairs until the server closes the watch (timeout_seconds)."""
        req = Request("watch", rt, namespace)
        query = [("watch", "true"), ("timeoutSeconds", str(timeout_seconds)),
                 ("allowWatchBookmarks", "false")]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        resp = self.request("GET", rt.path(namespace), req, query=query,
                            timeout=timeout_seconds + 10, stream=True)
        buffer = bytearray()
        try:
            # Large chunks and an in-place buffer: one event of a big CRD is over a megabyte.
            for chunk in resp.stream(1 << 16, decode_content=True):
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[:end + 1]
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise translate_status(
                            int(event["object"].get("code") or 500), event["object"], req,
                            self.server,
                        )
                    yield str(event["type"]), event["object"]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"watch of {rt.qualified} at {self.server} broke: "
                              f"{root_cause(exc)}") from exc
        finally:
            resp.release_conn()

    def wait_for(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        predicate: Callable[[Obj | None], bool],
        *,
        timeout: float = 60.0,
        what: str = "the condition",
    ) -> Obj | None:
        """Poll-free wait: list-then-watch one object until ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        field_sel = f"metadata.name={name}"
        while True:
            objs, list_rv = self.list_with_version(rt, namespace, field_selector=field_sel)
            current = objs[0] if objs else None
            if predicate(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                for etype, obj in self.watch(
                    rt, namespace, resource_version=list_rv,
                    field_selector=field_sel, timeout_seconds=max(1, int(remaining)),
                ):
                    current = None if etype == "DELETED" else obj
                    if predicate(current):
                        return current
                    if time.monotonic() >= deadline:
                        break
            except Unreachable:
                # The watch broke mid-stream (a proxy or the server closed it): relist, as
                # client-go's reflector does; a server really gone fails the list above.
                pass
            except KubeError as exc:
                if exc.status != 410:  # 410 Gone: the resourceVersion is too old; relist
                    raise
            if time.monotonic() >= deadline:
                break
        where = f"{namespace}/" if namespace else ""
        raise KubeError(f"timed out after {timeout:.0f}s waiting for {what} on "
                        f"{rt.kind} {where}{name}")

    # --- writes ---------------------------------------------------------------------------

    def server_side_apply(self, obj: Mapping[str, Any], *, dry_run: bool = False,
                          force: bool = False) -> Applied:
        """Server-side apply as field manager ``netiso``: the object the server holds (or
        would hold, with ``dry_run``) and whether this call created it."""
        rt = self.resource_of(obj)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        namespace = meta.get("namespace") if rt.namespaced else None
        query = [("fieldManager", FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        resp = self.send(
            "PATCH", rt.path(namespace, name), Request("patch", rt, namespace, name),
            query=query, body=dict(obj), content_type=APPLY_PATCH,
        )
        return Applied(resp.body, created=resp.status == 201)

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False, force: bool = False
              ) -> Obj:
        """Server-side apply as field manager ``netiso``; returns the object the server holds
        (or would hold, with ``dry_run``)."""
        return self.server_side_apply(obj, dry_run=dry_run, force=force).obj

    def create(self, obj: Mapping[str, Any]) -> Obj:
        rt = self.resource_of(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        result: Obj = self.request(
            "POST", rt.path(namespace), Request("create", rt, namespace),
            query=[("fieldManager", FIELD_MANAGER)], body=dict(obj),
        )
        return result

    def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
               dry_run: bool = False, uid: str | None = None) -> bool:
        """Delete one object; False when it was already gone. ``uid`` guards against
        deleting a same-named object created after it was listed."""
        query: list[tuple[str, str]] = []
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": "Background"}
        if dry_run:
            # Both places: with a DeleteOptions body the API server takes dryRun from the
            # body and ignores the query parameter (a dry run would really delete).
            query.append(("dryRun", "All"))
            body["dryRun"] = ["All"]
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", rt.path(namespace, name),
                         Request("delete", rt, namespace, name), query=query, body=body)
        except NotFound:
            return False
        except KubeError as exc:
            if exc.status == 409 and uid:  # precondition failed: someone recreated it
                return False
            raise
        return True

    # --- sets of objects ------------------------------------------------------------------

    def _check_scope(self, obj: Mapping[str, Any], rt: ResourceType) -> None:
        if rt.namespaced and not (obj.get("metadata") or {}).get("namespace"):
            raise UsageError(f"{describe(obj)}: a namespaced kind without metadata.namespace",
                             hint="set the namespace in the manifest")

    def wait_established(self, crd_names: Iterable[str], *, timeout: float = 60.0) -> None:
        """Until every named CRD has condition Established (its API is served)."""
        deadline = time.monotonic() + timeout
        for name in sorted(set(crd_names)):
            self.wait_for(CRD, name, None, lambda o: has_condition(o, "Established"),
                          timeout=max(1.0, deadline - time.monotonic()),
                          what="condition Established")

    def apply_all(
        self,
        objects: Sequence[Mapping[str, Any]],
        *,
        force: bool = False,
        establish_timeout: float = 60.0,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> list[Applied]:
        """Server-side apply of any set of objects, ranked by kind (``resources.apply_order``).

        CRDs go first; before the first object of a later rank, the CRDs of this set that
        define kinds in it are waited for until Established, and their kinds are known from
        the CRDs themselves (no discovery lag). Stops at the first error (raised), after the
        objects before it were applied."""
        ordered = apply_order(objects)
        defined = crd_defined_kinds(ordered)
        pending = {defined[(group_of(str(o.get("apiVersion", ""))), str(o.get("kind")))]
                   for o in ordered
                   if (group_of(str(o.get("apiVersion", ""))), str(o.get("kind"))) in defined}
        crd_objects = [o for o in ordered if kind_rank(o) == RANK_CRD]
        results: list[Applied] = []
        for obj in ordered:
            if pending and kind_rank(obj) > RANK_CRD:
                self.wait_established(pending, timeout=establish_timeout)
                for crd in crd_objects:
                    self.discovery.remember(resource_types_of_crd(crd))
                pending = set()
            self._check_scope(obj, self.resource_of(obj))
            applied = self.server_side_apply(obj, force=force)
            results.append(applied)
            if on_applied is not None:
                on_applied(applied)
        return results

    def delete_all(
        self,
        objects: Sequence[Mapping[str, Any]],
        *,
        wait: bool = True,
        timeout: float = 120.0,
    ) -> list[Deleted]:
        """Delete a set of objects in the reverse of the apply order (custom resources first,
        CRDs last), each by uid after reading it; with ``wait``, until all are gone."""
        results: list[Deleted] = []
        gone_later: list[tuple[ResourceType, str, str | None, str]] = []
        deadline = time.monotonic() + timeout

        def wait_gone() -> None:
            for rt, name, namespace, ref in gone_later if wait else []:
                try:
                    self.wait_for(rt, name, namespace, lambda o: o is None,
                                  timeout=max(1.0, deadline - time.monotonic()),
                                  what=f"the deletion of {ref}")
                except MissingResourceType:  # the type went with its CRD: so did the object
                    continue
            gone_later.clear()

        custom_phase = True
        for obj in delete_order(objects):
            if custom_phase and kind_rank(obj) != RANK_CUSTOM:
                # Custom resources first, and gone before their controller goes: an operator's
                # CR (Calico's Installation) carries a finalizer only that operator removes, so
                # deleting the operator's Deployment in the same breath leaves the CR, and with
                # it the CRD, stuck until the wait times out.
                custom_phase = False
                wait_gone()
            meta = obj.get("metadata") or {}
            name = str(meta.get("name", ""))
            try:
                rt = self.resource_of(obj)
            except MissingResourceType:  # its CRD is gone, and with it every instance
                results.append(Deleted(describe(obj), False))
                continue
            namespace = str(meta.get("namespace")) if rt.namespaced and meta.get(
                "namespace") else None
            live = self.get(rt, name, namespace)
            uid = (live or {}).get("metadata", {}).get("uid")
            deleted = bool(live) and self.delete(rt, name, namespace, uid=uid)
            results.append(Deleted(describe(obj), deleted))
            if deleted:
                gone_later.append((rt, name, namespace, describe(obj)))
        wait_gone()
        return results



def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    workers: int = 8,
    timeout: float = 30.0,
    environ: Mapping[str, str] | None = None,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> Kube:
    """Open a connection from kubeconfig (kubectl's rules) or the in-cluster ServiceAccount."""
    cfg, source = load_configuration(
        kubeconfig, context, os.environ if environ is None else environ, in_cluster_dir
    )
    cfg.connection_pool_maxsize = max(4, workers + 2)
    # Every call passes its own Retry (``retry_policy``); this is the pool's default for
    # anything else, as few as the per-call policy allows.
    cfg.retries = CONNECT_RETRIES
    return Kube(ApiClient(cfg), source, timeout=timeout)
