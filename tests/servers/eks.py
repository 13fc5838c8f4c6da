"""The EKS test server: moto's EKS backend, plus the add-on and update API moto lacks.

moto (5.x, in server mode) serves clusters, node groups and Fargate profiles but has no add-on
API (no DescribeAddon/UpdateAddon; DescribeUpdate only for cluster updates). This server fronts
moto's WSGI app and answers those routes itself in EKS's REST-JSON wire format (paths, bodies,
``x-amzn-ErrorType`` error codes), so netiso's real boto3 client talks to it through the standard
``AWS_ENDPOINT_URL_EKS`` variable, with dummy credentials: netiso needs no test-only flag.

What tests get from it:

* a **call log** (``calls``: operation, method, path, body) of every request, the rejected and
  throttled ones included, to assert what was (not) sent;
* **injected failures** (``fail``): an HTTP status and AWS error code for the next N calls of an
  operation (429 ``ThrottlingException`` that the SDK's standard retry mode retries, 403
  ``AccessDeniedException``, ...), and ``update_outcome`` for add-on updates that end Failed;
* **EKS's add-on manager, played**: a Successful add-on update calls ``on_addon_updated(cluster,
  addon, configurationValues)``; the lab's tests point it at ``tests.lab.engines.eks_policy_agent``
  so that ``enableNetworkPolicy: "true"`` turns the aws-node DaemonSet's agent on, as EKS does.

Run it in-process (``EksServer().start()``, a fixture) or as ``python -m tests.servers.eks --port
N`` (the README's demo), which seeds a cluster and, with ``--lab-kubeconfig``, plays the add-on
manager against the lab. ``GET /_netiso/calls`` returns the call log as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

# EKS's REST paths and the operation each is (the SDK's names).
_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", r"/clusters", "ListClusters"),
    ("POST", r"/clusters", "CreateCluster"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)", "DescribeCluster"),
    ("DELETE", r"/clusters/(?P<cluster>[^/]+)", "DeleteCluster"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/node-groups", "ListNodegroups"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/node-groups", "CreateNodegroup"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/node-groups/(?P<ng>[^/]+)", "DescribeNodegroup"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/fargate-profiles", "ListFargateProfiles"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/fargate-profiles", "CreateFargateProfile"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/addons", "ListAddons"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/addons", "CreateAddon"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/addons/(?P<addon>[^/]+)", "DescribeAddon"),
    ("POST", r"/clusters/(?P<cluster>[^/]+)/addons/(?P<addon>[^/]+)/update", "UpdateAddon"),
    ("GET", r"/clusters/(?P<cluster>[^/]+)/updates/(?P<update>[^/]+)", "DescribeUpdate"),
)
#: The operations that change something in EKS (what "nothing changed" checks).
MUTATING = frozenset({"CreateCluster", "DeleteCluster", "CreateNodegroup", "CreateFargateProfile",
                      "CreateAddon", "UpdateAddon"})
_OWN = frozenset({"ListAddons", "CreateAddon", "DescribeAddon", "UpdateAddon", "DescribeUpdate"})


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    path: str
    body: dict[str, Any]
    status: int

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "method": self.method, "path": self.path,
                "body": self.body, "status": self.status}


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    times: int


@dataclass
class EksServer:
    """One EKS endpoint (moto behind it). ``url`` once started."""

    host: str = "127.0.0.1"
    port: int = 0
    #: Called after a Successful add-on update: (cluster, addon, configurationValues).
    on_addon_updated: Callable[[str, str, str], None] | None = None
    #: "Successful" or "Failed" (with ``update_errors``) for the next add-on updates.
    update_outcome: str = "Successful"
    update_errors: list[dict[str, Any]] = field(default_factory=list)
    #: DescribeUpdate answers InProgress this many times before the outcome.
    update_polls: int = 1
    calls: list[Call] = field(default_factory=list)
    auto_mode: set[str] = field(default_factory=set)  # clusters with computeConfig.enabled
    _addons: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> EksServer:
        from moto.backends import get_backend
        from moto.moto_server.werkzeug_app import create_backend_app

        # moto's backends are process-wide: each server starts from an empty EKS.
        for account in get_backend("eks").values():
            for backend in account.values():
                backend.reset()
        self._moto = create_backend_app("eks")
        self._server = make_server(self.host, self.port, self._app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="eks-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, region: str = "us-west-2") -> dict[str, str]:
        """The environment that points boto3 (netiso's) here, with dummy credentials."""
        return {"AWS_ENDPOINT_URL_EKS": self.url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    # --- test controls ----------------------------------------------------------------------

    def fail(self, operation: str, status: int, code: str, message: str = "",
             times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` answer this error."""
        with self._lock:
            self._failures.setdefault(operation, []).append(
                _Failure(status, code, message or f"injected {code}", times))

    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]

    def mutations(self) -> list[Call]:
        return [c for c in self.calls if c.operation in MUTATING and c.status < 300]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def seed(self, cluster: str, *, version: str = "1.31", region: str = "us-west-2",
             nodegroups: Iterable[tuple[str, str]] = (("ng-linux", "AL2023_x86_64_STANDARD"),),
             fargate: Iterable[str] = (), addon_version: str | None = "v1.19.2-eksbuild.1",
             configuration_values: str = "", auto_mode: bool = False) -> None:
        """A cluster as EKS would hold it, created through this server's own API (boto3)."""
        import boto3

        eks = boto3.client("eks", endpoint_url=self.url, region_name=region,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        role = "arn:aws:iam::123456789012:role/eks"
        vpc = {"subnetIds": ["subnet-1", "subnet-2"]}
        eks.create_cluster(name=cluster, version=version, roleArn=role,
                           resourcesVpcConfig=vpc)
        for name, ami in nodegroups:
            eks.create_nodegroup(clusterName=cluster, nodegroupName=name, nodeRole=role,
                                 subnets=vpc["subnetIds"], amiType=ami)
        for name in fargate:
            eks.create_fargate_profile(clusterName=cluster, fargateProfileName=name,
                                       podExecutionRoleArn=role, subnets=vpc["subnetIds"],
                                       selectors=[{"namespace": "default"}])
        if addon_version is not None:
            body: dict[str, Any] = {"addonName": "vpc-cni", "addonVersion": addon_version}
            if configuration_values:
                body["configurationValues"] = configuration_values
            eks.create_addon(clusterName=cluster, **body)
        if auto_mode:
            self.auto_mode.add(cluster)
        self.clear_calls()

    def addon(self, cluster: str, name: str) -> dict[str, Any] | None:
        return self._addons.get((cluster, name))

    # --- the WSGI app -----------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/_netiso/calls":
            log = json.dumps([c.to_json() for c in self.calls])
            return Response(log, content_type="application/json")(environ, start_response)
        operation, params = _route(request.method, request.path)
        raw = request.get_data(cache=True)
        body: dict[str, Any] = {}
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {}
        if isinstance(decoded, dict):
            body = decoded
        with self._lock:
            failure = self._next_failure(operation)
        if failure is not None:
            response = _error(failure.status, failure.code, failure.message)
        elif operation in _OWN:
            response = self._own(operation, params, body, request.args)
        else:
            response = self._via_moto(environ, raw, operation, params)
        with self._lock:
            self.calls.append(Call(operation, request.method, request.path, body,
                                   response.status_code))
        return response(environ, start_response)

    def _next_failure(self, operation: str) -> _Failure | None:
        queue = self._failures.get(operation) or []
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _via_moto(self, environ: dict[str, Any], raw: bytes, operation: str,
                  params: dict[str, str]) -> Response:
        # The body was read for the call log: moto gets its own copy.
        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        response = Response.from_app(self._moto, environ)
        if operation == "DescribeCluster" and response.status_code == 200:
            doc = json.loads(response.get_data())
            cluster = doc.get("cluster") or {}
            cluster["computeConfig"] = {"enabled": params.get("cluster") in self.auto_mode}
            response.set_data(json.dumps(doc))
        return response

    def _cluster_exists(self, cluster: str) -> bool:
        from moto.backends import get_backend

        return any(cluster in backend.clusters for account in get_backend("eks").values()
                   for backend in account.values())

    def _own(self, operation: str, params: dict[str, str], body: dict[str, Any],
             args: Any) -> Response:
        cluster = params["cluster"]
        if not self._cluster_exists(cluster):
            return _error(404, "ResourceNotFoundException", f"No cluster found for name: "
                          f"{cluster}.")
        now = time.time()
        if operation == "ListAddons":
            return _json({"addons": sorted(a for c, a in self._addons if c == cluster)})
        if operation == "CreateAddon":
            name = str(body.get("addonName"))
            addon: dict[str, Any] = {"addonName": name, "clusterName": cluster, "status": "ACTIVE",
                     "addonVersion": body.get("addonVersion") or "v1.19.2-eksbuild.1",
                     "health": {"issues": []}, "createdAt": now, "modifiedAt": now,
                     "addonArn": f"arn:aws:eks:us-west-2:123456789012:addon/{cluster}/{name}",
                     "tags": {}}
            if body.get("configurationValues"):
                addon["configurationValues"] = body["configurationValues"]
            self._addons[(cluster, name)] = addon
            return _json({"addon": addon})
        if operation == "DescribeAddon":
            found = self._addons.get((cluster, params["addon"]))
            if found is None:
                return _error(404, "ResourceNotFoundException",
                              f"No addon: {params['addon']} found in cluster: {cluster}")
            return _json({"addon": found})
        if operation == "UpdateAddon":
            found = self._addons.get((cluster, params["addon"]))
            if found is None:
                return _error(404, "ResourceNotFoundException",
                              f"No addon: {params['addon']} found in cluster: {cluster}")
            update_id = str(uuid.uuid4())
            update = {"id": update_id, "status": "InProgress", "type": "AddonUpdate",
                      "params": [{"type": "ConfigurationValues",
                                  "value": body.get("configurationValues", "")},
                                 {"type": "ResolveConflicts",
                                  "value": body.get("resolveConflicts", "")}],
                      "createdAt": now, "errors": []}
            self._updates[update_id] = {"update": update, "cluster": cluster,
                                        "addon": params["addon"], "body": body,
                                        "polls": self.update_polls}
            found["status"] = "UPDATING"
            return _json({"update": update})
        if operation == "DescribeUpdate":
            record = self._updates.get(params["update"])
            if record is None or record["cluster"] != cluster:
                return _error(404, "ResourceNotFoundException",
                              f"No update found for ID: {params['update']}")
            update = record["update"]
            if update["status"] == "InProgress":
                if record["polls"] > 0:
                    record["polls"] -= 1
                else:
                    self._finish(record)
            return _json({"update": update})
        raise AssertionError(operation)

    def _finish(self, record: dict[str, Any]) -> None:
        update, body = record["update"], record["body"]
        addon = self._addons[(record["cluster"], record["addon"])]
        if self.update_outcome != "Successful":
            update["status"] = self.update_outcome
            update["errors"] = list(self.update_errors) or [
                {"errorCode": "ConfigurationConflict",
                 "errorMessage": "Conflicts found when trying to apply. Will not continue "
                                 "due to resolve conflicts mode.",
                 "resourceIds": ["aws-node"]}]
            addon["status"] = "UPDATE_FAILED"
            return
        if "configurationValues" in body:
            addon["configurationValues"] = body["configurationValues"]
        if body.get("addonVersion"):
            addon["addonVersion"] = body["addonVersion"]
        addon["status"] = "ACTIVE"
        addon["modifiedAt"] = time.time()
        if self.on_addon_updated is not None:
            self.on_addon_updated(record["cluster"], record["addon"],
                                  str(addon.get("configurationValues", "")))
        update["status"] = "Successful"


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the call log is the record."""

    def log_request(self, *_args: Any, **_kwargs: Any) -> None:
        pass


def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
    for want, pattern, operation in _ROUTES:
        m = re.fullmatch(pattern, path.rstrip("/") or "/")
        if m and method == want:
            return operation, {k: v for k, v in m.groupdict().items() if v is not None}
    return f"{method} {path}", {}


def _json(doc: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(doc, default=str), status=status,
                    content_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    # EKS's REST-JSON errors: the code in x-amzn-ErrorType, the text in the body's message.
    response = _json({"message": message}, status)
    response.headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/"
    return response


def policy_agent_hook(kubeconfig: str) -> Callable[[str, str, str], None]:
    """EKS's add-on manager on the lab: the agent follows ``enableNetworkPolicy``."""
    import importlib

    from tests.lab.kubeapi import Kube

    # tests/lab/engines.py (the lab's double of AWS's policy agent) is its own module.
    engines = importlib.import_module("tests.lab.engines")

    def hook(_cluster: str, addon: str, values: str) -> None:
        if addon != "vpc-cni":
            return
        config = json.loads(values) if values.strip() else {}
        enabled = str(config.get("enableNetworkPolicy", "")).lower() == "true"
        engines.eks_policy_agent(Kube(kubeconfig), enabled)

    return hook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.eks",
                                     description="The EKS test server (moto + add-ons).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cluster", default="netiso-lab", help="cluster to seed")
    parser.add_argument("--region", default="us-west-2")
    parser.add_argument("--configuration-values", default="",
                        help="the vpc-cni add-on's configurationValues (JSON)")
    parser.add_argument("--lab-kubeconfig", default=None,
                        help="play EKS's add-on manager against this cluster (the lab)")
    args = parser.parse_args(argv)
    server = EksServer(host=args.host, port=args.port).start()
    server.seed(args.cluster, region=args.region,
                configuration_values=args.configuration_values)
    if args.lab_kubeconfig:
        server.on_addon_updated = policy_agent_hook(args.lab_kubeconfig)
    print(f"AWS_ENDPOINT_URL_EKS={server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
