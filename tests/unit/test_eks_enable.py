"""EKS enable without a cluster: the EKS API seam against the EKS test server (real boto3 on the
wire), the preflight rules and the minimums (pure), the Calico pins (the shared release files).

The cluster side (Calico through the real operator, the add-on manager's effect) is in
tests/cluster/test_calico_enable.py.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from netiso.errors import ExitCode, NetisoError, OperationFailed, PreconditionFailed
from netiso.providers.base import ClusterFacts, NodeFacts
from netiso.providers.eks import CloudView, minimums, preflight
from netiso.providers.eks import calico as calico_mod
from netiso.providers.eks.cloud import AddonInfo, ClusterInfo, Eks, NodegroupInfo
from tests.lab import build
from tests.servers.eks import EksServer

SHARED = build.shared_dir() / "calico" / calico_mod.VERSION


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EksServer]:
    srv = EksServer().start()
    for key, value in srv.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield srv
    finally:
        srv.stop()


def _error(exc: pytest.ExceptionInfo[NetisoError]) -> str:
    return exc.value.one_line()


# --- the EKS API seam -----------------------------------------------------------------------


def test_reads_what_eks_holds(server: EksServer) -> None:
    server.seed("prod", version="1.31", configuration_values='{"env":{"WARM_IP_TARGET":"5"}}')
    eks = Eks("us-west-2")
    cluster = eks.describe_cluster("prod")
    assert (cluster.name, cluster.version, cluster.auto_mode) == ("prod", "1.31", False)
    assert eks.nodegroups("prod") == [NodegroupInfo("ng-linux", "AL2023_x86_64_STANDARD")]
    assert eks.fargate_profiles("prod") == []
    addon = eks.describe_addon("prod", "vpc-cni")
    assert addon is not None and addon.configuration() == {"env": {"WARM_IP_TARGET": "5"}}
    assert server.mutations() == []


def test_a_self_managed_vpc_cni_is_none_not_an_error(server: EksServer) -> None:
    server.seed("prod", addon_version=None)
    assert Eks("us-west-2").describe_addon("prod", "vpc-cni") is None
    assert server.calls[-1].status == 404


def test_access_denied_is_one_line_naming_call_and_code(server: EksServer) -> None:
    server.seed("prod")
    server.fail("DescribeCluster", 403, "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: "
                "eks:DescribeCluster")
    with pytest.raises(OperationFailed) as exc:
        Eks("us-west-2").describe_cluster("prod")
    assert exc.value.exit_code is ExitCode.FAILED
    assert _error(exc).startswith("eks:DescribeCluster: AccessDeniedException: User: ")
    assert "\n" not in _error(exc)


def test_throttling_is_retried_by_the_sdk(server: EksServer) -> None:
    server.seed("prod")
    server.fail("DescribeCluster", 429, "ThrottlingException", "Rate exceeded", times=2)
    assert Eks("us-west-2").describe_cluster("prod").name == "prod"
    assert [c.status for c in server.calls] == [429, 429, 200]


def test_throttling_after_every_retry_is_exit_1_with_the_code(
        server: EksServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from netiso.providers.eks import cloud

    monkeypatch.setattr(cloud, "MAX_ATTEMPTS", 2)
    server.seed("prod")
    server.fail("ListNodegroups", 429, "ThrottlingException", "Rate exceeded", times=5)
    with pytest.raises(OperationFailed) as exc:
        Eks("us-west-2").nodegroups("prod")
    assert _error(exc) == "eks:ListNodegroups: ThrottlingException: Rate exceeded (after 1 retries)"
    assert [c.status for c in server.calls] == [429, 429]


def test_unknown_cluster(server: EksServer) -> None:
    with pytest.raises(OperationFailed) as exc:
        Eks("us-west-2").describe_cluster("nope")
    assert _error(exc) == ("eks:DescribeCluster: ResourceNotFoundException: No cluster found for "
                           "name: nope.")


def test_addon_update_polls_until_it_ends(server: EksServer) -> None:
    server.seed("prod")
    eks = Eks("us-west-2")
    update = eks.update_addon("prod", "vpc-cni", '{"enableNetworkPolicy":"true"}')
    assert eks.wait_update("prod", update, "vpc-cni", timeout=30).status == "Successful"
    assert server.operations() == ["UpdateAddon", "DescribeUpdate", "DescribeUpdate"]
    assert server.calls[0].body["resolveConflicts"] == "PRESERVE"
    addon = server.addon("prod", "vpc-cni")
    assert addon is not None and addon["configurationValues"] == '{"enableNetworkPolicy":"true"}'


def test_addon_update_failed_carries_eks_errors(server: EksServer) -> None:
    server.seed("prod")
    server.update_outcome = "Failed"
    eks = Eks("us-west-2")
    update = eks.update_addon("prod", "vpc-cni", "{}")
    result = eks.wait_update("prod", update, "vpc-cni", timeout=30)
    assert result.status == "Failed"
    assert result.errors and result.errors[0].startswith("ConfigurationConflict: Conflicts")


def test_no_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:9")
    with pytest.raises(OperationFailed) as exc:
        Eks("us-west-2").describe_cluster("prod")
    assert _error(exc).startswith("eks:DescribeCluster: no AWS credentials found")


# --- preflight (pure) -----------------------------------------------------------------------


def _nodes(*labels: dict[str, str], provider_id: str = "aws:///us-west-2a/i-0abc") -> ClusterFacts:
    return ClusterFacts(nodes=tuple(NodeFacts(f"n{i}", provider_id, labels=label)
                                    for i, label in enumerate(labels)))


def _view(*, auto: bool = False, nodegroups: tuple[tuple[str, str], ...] = (),
          fargate: tuple[str, ...] = ()) -> CloudView:
    view = CloudView()
    view.known = True
    view.cluster = ClusterInfo("prod", "1.31", "eks.4", "ACTIVE", auto)
    view.nodegroups = [NodegroupInfo(n, a) for n, a in nodegroups]
    view.fargate = list(fargate)
    return view


MANAGED = {"eks.amazonaws.com/nodegroup": "ng", "kubernetes.io/os": "linux"}


def test_preflight_passes_an_ec2_linux_cluster() -> None:
    preflight(_nodes(MANAGED), _view(nodegroups=(("ng", "AL2023_x86_64_STANDARD"),)))
    preflight(_nodes(MANAGED), CloudView())  # cloud unknown: the nodes decide


@pytest.mark.parametrize(("facts", "view", "words"), [
    (_nodes(MANAGED), _view(auto=True), "EKS Auto Mode"),
    (_nodes({"eks.amazonaws.com/compute-type": "auto"}), CloudView(), "EKS Auto Mode"),
    (_nodes(MANAGED), _view(fargate=("fp",)), "Fargate only"),
    (_nodes({"eks.amazonaws.com/compute-type": "fargate"}), CloudView(), "Fargate only"),
    (_nodes(MANAGED), _view(nodegroups=(("win", "WINDOWS_CORE_2022_x86_64"),)),
     "Windows nodes only"),
    (_nodes({"kubernetes.io/os": "windows"}), CloudView(), "Windows nodes only"),
])
def test_preflight_refusals(facts: ClusterFacts, view: CloudView, words: str) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        preflight(facts, view)
    assert exc.value.exit_code is ExitCode.PRECONDITION
    assert words in exc.value.one_line()


def test_self_managed_linux_nodes_beside_fargate_are_not_fargate_only() -> None:
    preflight(_nodes({"kubernetes.io/os": "linux"}), _view(fargate=("fp",)))
    preflight(_nodes({"kubernetes.io/os": "linux"}),
              _view(nodegroups=(("win", "WINDOWS_CORE_2022_x86_64"),)))


@pytest.mark.parametrize(("version", "platform", "addon", "words"), [
    ("1.31", "eks.4", "v1.13.4-eksbuild.1", "needs v1.14 or later"),
    ("1.24", "eks.9", "v1.19.2-eksbuild.1", "needs 1.25 or later"),
    ("1.25", "eks.5", "v1.19.2-eksbuild.1", "needs eks.6 or later"),
])
def test_vpc_cni_minimums(version: str, platform: str, addon: str, words: str) -> None:
    cluster = ClusterInfo("prod", version, platform, "ACTIVE", False)
    with pytest.raises(PreconditionFailed) as exc:
        minimums(cluster, AddonInfo("vpc-cni", addon, "ACTIVE", ""))
    assert words in exc.value.one_line()


def test_vpc_cni_minimums_met() -> None:
    minimums(ClusterInfo("prod", "1.25", "eks.6", "ACTIVE", False),
             AddonInfo("vpc-cni", "v1.14.0-eksbuild.3", "ACTIVE", ""))


def test_yaml_configuration_values_are_refused_not_overwritten() -> None:
    with pytest.raises(OperationFailed, match="not JSON"):
        AddonInfo("vpc-cni", "v1.19.2", "ACTIVE", "env:\n  WARM_IP_TARGET: '5'\n").configuration()


# --- the Calico pins ------------------------------------------------------------------------


def _shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} missing (the project's shared directory)")
    return SHARED


def test_pins_are_the_shared_release_files() -> None:
    for name, digest in calico_mod.SHA256.items():
        assert hashlib.sha256((_shared() / name).read_bytes()).hexdigest() == digest
    manifests = calico_mod.load(str(_shared()))
    assert len(manifests.crds) == 32
    assert {o["kind"] for o in manifests.crds} == {"CustomResourceDefinition"}
    assert "Deployment tigera-operator/tigera-operator" in calico_mod.refs(manifests.operator)


def test_a_changed_manifest_is_refused_naming_file_and_both_hashes(tmp_path: Path) -> None:
    for name in calico_mod.SHA256:
        shutil.copy(_shared() / name, tmp_path / name)
    changed = tmp_path / "tigera-operator.yaml"
    changed.write_bytes(changed.read_bytes().replace(b"v1.42.3", b"v1.42.4"))
    actual = hashlib.sha256(changed.read_bytes()).hexdigest()
    with pytest.raises(OperationFailed) as exc:
        calico_mod.load(str(tmp_path))
    assert exc.value.exit_code is ExitCode.FAILED
    assert exc.value.message == (f"{tmp_path}/tigera-operator.yaml: sha256 {actual}, expected "
                                 f"{calico_mod.SHA256['tigera-operator.yaml']} (Calico v3.32.1)")


def test_a_missing_manifest_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(NetisoError) as exc:
        calico_mod.load(str(tmp_path))
    assert exc.value.exit_code is ExitCode.USAGE
    assert "cannot read operator-crds.yaml" in exc.value.one_line()


def test_tigerastatus_readiness() -> None:
    def state(statuses: dict[str, dict[str, dict[str, str]]]) -> calico_mod.CalicoState:
        return calico_mod.CalicoState(None, "", statuses, False, "", frozenset())

    available = {"Available": {"status": "True"}, "Degraded": {"status": "False"}}
    tiers = {"Available": {"status": "False"},
             "Degraded": {"status": "True", "reason": "ResourceNotReady",
                          "message": "Waiting for Tigera API server to be ready"}}
    ok = state({"calico": available, "ippools": available, "tiers": tiers})
    assert ok.available(apiserver=False)
    assert ok.not_ready(apiserver=True) == [
        "tiers: Degraded (ResourceNotReady: Waiting for Tigera API server to be ready)"]
    assert state({}).not_ready(apiserver=False) == ["calico: no TigeraStatus yet"]
    bad = state({"calico": {"Degraded": {"status": "True",
                                         "reason": "InvalidConfigurationError",
                                         "message": "Invalid Installation provided"}}})
    assert bad.degraded(apiserver=False) == [
        "calico: Degraded (InvalidConfigurationError: Invalid Installation provided)"]
