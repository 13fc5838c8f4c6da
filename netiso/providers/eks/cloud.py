"""The EKS API: the only module that imports boto3/botocore.

Design decisions:

* **Imported lazily.** ``netiso.providers.eks`` imports this module inside ``plan_enable`` and
  ``cloud_view``, so ``--help`` and a ``netiso detect`` that does not ask the cloud never load
  boto3 (tests run them in a fresh interpreter).
* **The SDK's own configuration.** The default credential chain (environment, ``--profile`` or
  ``AWS_PROFILE``, SSO, instance roles) and the standard retry mode, which retries throttling
  (429 ``ThrottlingException``/``TooManyRequestsException``) and transient errors with backoff.
  The endpoint is the SDK's too: ``AWS_ENDPOINT_URL_EKS`` (the standard per-service variable) is
  how the project's EKS test server is reached, so netiso has no test-only flag.
* **Errors stop here.** Every botocore error becomes an ``OperationFailed`` (exit 1) of one line
  naming the call and AWS's own error code (``eks:DescribeCluster: AccessDeniedException: ...``);
  nothing above this module sees a botocore exception. A missing add-on is not an error: it is
  ``None`` (a self-managed VPC CNI answers ``ResourceNotFoundException`` to ``DescribeAddon``).
* **Plain values out.** Calls return small dataclasses holding only what enable decides on, plus
  each call is recorded (name and parameters) so a dry run can print what would be sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from netiso.errors import OperationFailed

# Attempts per call in all, the first included (standard mode's default is 3): a throttled
# account is common during cluster bring-up, and DescribeUpdate polls for minutes.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    version: str  # "1.31"
    platform_version: str  # "eks.12"
    status: str  # ACTIVE, UPDATING, ...
    auto_mode: bool  # computeConfig.enabled: EKS Auto Mode manages the nodes and the VPC CNI
    arn: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version,
                "platformVersion": self.platform_version, "status": self.status,
                "autoMode": self.auto_mode}


@dataclass(frozen=True)
class NodegroupInfo:
    name: str
    ami_type: str  # AL2_x86_64, AL2023_x86_64_STANDARD, BOTTLEROCKET_*, WINDOWS_*, CUSTOM


@dataclass(frozen=True)
class AddonInfo:
    name: str
    version: str  # "v1.19.2-eksbuild.1"
    status: str
    configuration_values: str  # the JSON string EKS stores ("" when none)

    def configuration(self) -> dict[str, Any]:
        """The add-on's configurationValues as a mapping (EKS accepts JSON or YAML; a YAML
        value netiso cannot read as JSON is refused rather than overwritten)."""
        text = self.configuration_values.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OperationFailed(
                f"the {self.name} add-on's configurationValues are not JSON ({exc.msg}); "
                f"netiso merges into JSON only",
                hint="rewrite them as JSON (aws eks update-addon --configuration-values)",
            ) from exc
        if not isinstance(value, dict):
            raise OperationFailed(f"the {self.name} add-on's configurationValues are not an "
                                  "object")
        return value


@dataclass(frozen=True)
class UpdateInfo:
    id: str
    status: str  # InProgress, Failed, Cancelled, Successful
    errors: tuple[str, ...] = ()


@dataclass
class Eks:
    """An EKS client for one region (and optional profile)."""

    region: str | None = None
    profile: str | None = None
    #: Every call made, in order: (operation, parameters). Shown by enable's result.
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3
            import botocore.config
            import botocore.exceptions

            config = botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                user_agent_extra="netiso",
            )
            try:
                session = boto3.Session(profile_name=self.profile, region_name=self.region)
                self._client = session.client("eks", config=config)
            except botocore.exceptions.BotoCoreError as exc:
                # ProfileNotFound, NoRegionError: the caller's configuration, one line.
                raise OperationFailed(f"eks: cannot make a client: {exc}",
                                      hint="pass --region/--profile or set AWS_REGION") from exc
        return self._client

    @contextmanager
    def _call(self, operation: str, params: Mapping[str, Any]) -> Iterator[None]:
        import botocore.exceptions

        self.calls.append((operation, dict(params)))
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error") or {}
            code = error.get("Code") or "Unknown"
            message = (error.get("Message") or "").strip().replace("\n", " ")
            retried = (exc.response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0
            after = f" (after {retried} retries)" if retried else ""
            raise OperationFailed(f"eks:{operation}: {code}: {message}{after}") from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise OperationFailed(f"eks:{operation}: no AWS credentials found",
                                  hint="configure the default credential chain or pass "
                                       "--profile") from exc
        except botocore.exceptions.BotoCoreError as exc:
            # Endpoint unreachable, expired SSO token, bad profile: botocore's own words.
            raise OperationFailed(f"eks:{operation}: {type(exc).__name__}: {exc}") from exc

    # --- reads ------------------------------------------------------------------------------

    def describe_cluster(self, name: str) -> ClusterInfo:
        client = self.client()
        with self._call("DescribeCluster", {"name": name}):
            cluster = client.describe_cluster(name=name)["cluster"]
        compute = cluster.get("computeConfig") or {}
        return ClusterInfo(name=cluster.get("name", name), version=str(cluster.get("version", "")),
                           platform_version=str(cluster.get("platformVersion", "")),
                           status=str(cluster.get("status", "")),
                           auto_mode=bool(compute.get("enabled")), arn=cluster.get("arn", ""))

    def nodegroups(self, cluster: str) -> list[NodegroupInfo]:
        client = self.client()
        names: list[str] = []
        with self._call("ListNodegroups", {"clusterName": cluster}):
            for page in client.get_paginator("list_nodegroups").paginate(clusterName=cluster):
                names += page.get("nodegroups") or []
        out = []
        for name in names:
            with self._call("DescribeNodegroup", {"clusterName": cluster, "nodegroupName": name}):
                group = client.describe_nodegroup(clusterName=cluster,
                                                  nodegroupName=name)["nodegroup"]
            out.append(NodegroupInfo(name, str(group.get("amiType") or "")))
        return out

    def fargate_profiles(self, cluster: str) -> list[str]:
        client = self.client()
        names: list[str] = []
        with self._call("ListFargateProfiles", {"clusterName": cluster}):
            for page in client.get_paginator("list_fargate_profiles").paginate(
                    clusterName=cluster):
                names += page.get("fargateProfileNames") or []
        return names

    def describe_addon(self, cluster: str, addon: str) -> AddonInfo | None:
        """The managed add-on, or None when it is not managed by EKS (self-managed)."""
        import botocore.exceptions

        client = self.client()
        with self._call("DescribeAddon", {"clusterName": cluster, "addonName": addon}):
            try:
                found = client.describe_addon(clusterName=cluster, addonName=addon)["addon"]
            except botocore.exceptions.ClientError as exc:
                if (exc.response.get("Error") or {}).get("Code") == "ResourceNotFoundException":
                    return None
                raise
        return AddonInfo(name=addon, version=str(found.get("addonVersion", "")),
                         status=str(found.get("status", "")),
                         configuration_values=str(found.get("configurationValues") or ""))

    # --- writes -----------------------------------------------------------------------------

    def update_addon(self, cluster: str, addon: str, configuration_values: str) -> str:
        """Start the add-on update; its update id. ``PRESERVE`` keeps whatever was changed on
        the cluster outside EKS (the issue's rule: netiso never overwrites a user's edits)."""
        params = {"clusterName": cluster, "addonName": addon,
                  "configurationValues": configuration_values, "resolveConflicts": "PRESERVE"}
        client = self.client()
        with self._call("UpdateAddon", params):
            update = client.update_addon(**params)["update"]
        return str(update["id"])

    def describe_update(self, cluster: str, update_id: str, addon: str) -> UpdateInfo:
        client = self.client()
        params = {"name": cluster, "updateId": update_id, "addonName": addon}
        with self._call("DescribeUpdate", params):
            update = client.describe_update(**params)["update"]
        errors = tuple(f"{e.get('errorCode', '')}: {e.get('errorMessage', '')}".strip(": ")
                       for e in update.get("errors") or [])
        return UpdateInfo(str(update.get("id", update_id)), str(update.get("status", "")), errors)

    def wait_update(self, cluster: str, update_id: str, addon: str, *, timeout: float,
                    log: Callable[[str], None] = lambda _line: None) -> UpdateInfo:
        """Poll DescribeUpdate until Successful, Failed or Cancelled (1 s, doubling to 15 s)."""
        deadline = time.monotonic() + timeout
        delay = 1.0
        last = ""
        while True:
            update = self.describe_update(cluster, update_id, addon)
            if update.status != last:
                log(f"eks update {update_id}: {update.status}")
                last = update.status
            if update.status in ("Successful", "Failed", "Cancelled"):
                return update
            if time.monotonic() + delay > deadline:
                raise OperationFailed(f"eks:DescribeUpdate: update {update_id} of {addon} still "
                                      f"{update.status} after {timeout:.0f} s",
                                      hint="raise --timeout, or follow it with aws eks "
                                           "describe-update")
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
