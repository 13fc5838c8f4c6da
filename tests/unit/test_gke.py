"""GKE's enable: the pure plan, and the SDK seam against the wire-level test server.

The server tests run the real ``ClusterManagerClient`` (REST transport, anonymous credentials)
against ``tests.servers.gke`` in-process: no lab, no mock of the SDK.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from google.auth.credentials import AnonymousCredentials

from netiso.errors import OperationFailed, PreconditionFailed, UsageError
from netiso.providers.base import (
    ClusterFacts,
    EnableContext,
    EnableRequest,
    EnforcementState,
    NodeFacts,
)
from netiso.providers.gke import Gke
from netiso.providers.gke import plan as gke_plan
from netiso.providers.gke.cloud import GkeCloud, endpoint_from_env
from tests.servers.gke import ORDER_RULE, GkeServer, adc_file, serve

PATH = "projects/netiso-lab/locations/us-central1-a/clusters/lab"


def view(**over: Any) -> gke_plan.ClusterView:
    gke = GkeServer()
    doc = gke.add_cluster(**over)
    return gke_plan.ClusterView.from_json(doc)


# --- the pure plan -----------------------------------------------------------------------------


def test_legacy_cluster_plans_addon_then_policy_and_only_the_second_recreates_nodes() -> None:
    plan = gke_plan.plan(view(node_pools=("default-pool", "spot")), PATH, engine_ready=False)
    assert [s.name for s in plan.pending] == [gke_plan.ADDON_STEP, gke_plan.POLICY_STEP]
    assert [s.disruptive for s in plan.steps] == [False, True]
    assert plan.needs_consent and plan.already is None and plan.engine == "calico"
    assert plan.disruption == "node pools default-pool, spot: every node recreated"
    addon, policy = (s.call or {} for s in plan.steps)
    assert addon["method"].endswith("setAddons") and addon["name"] == PATH
    assert addon["body"] == {"addonsConfig": {"networkPolicyConfig": {"disabled": False}}}
    assert policy["body"] == {"networkPolicy": {"provider": "CALICO", "enabled": True}}
    assert plan.cloud["networkPolicyAddon"] == "disabled"
    assert plan.cloud["datapathProvider"] == "LEGACY_DATAPATH"


def test_addon_on_enforcement_off_resumes_at_step_two() -> None:
    plan = gke_plan.plan(view(addon=True), PATH, engine_ready=False)
    assert [s.name for s in plan.pending] == [gke_plan.POLICY_STEP]
    assert plan.steps[0].done


def test_addon_and_enforcement_on_is_already_calico() -> None:
    plan = gke_plan.plan(view(addon=True, policy=True), PATH, engine_ready=True)
    assert plan.already == "calico" and not plan.pending


def test_enforcement_on_in_gke_with_calico_node_not_ready_waits_instead_of_claiming_it() -> None:
    plan = gke_plan.plan(view(addon=True, policy=True), PATH, engine_ready=False)
    assert plan.already is None and not plan.pending and not plan.needs_consent
    assert all(s.done for s in plan.steps)
    assert "calico-node is not ready on every node yet" in plan.warnings[0]


@pytest.mark.parametrize("over", [{"datapath": "ADVANCED_DATAPATH"},
                                  {"datapath": "ADVANCED_DATAPATH", "autopilot": True}])
def test_dataplane_v2_and_autopilot_are_already_anetd(over: dict[str, Any]) -> None:
    plan = gke_plan.plan(view(**over), PATH, engine_ready=False)
    assert plan.already == "anetd" and plan.engine == "anetd" and not plan.steps


def test_a_migrating_datapath_is_exit_4_wait_for_the_migration() -> None:
    with pytest.raises(PreconditionFailed, match="MIGRATE_TO_ADVANCED_DATAPATH") as err:
        gke_plan.plan(view(datapath="MIGRATE_TO_ADVANCED_DATAPATH"), PATH, engine_ready=False)
    assert "wait for the migration" in (err.value.hint or "")


def test_an_unknown_datapath_is_named_not_taken_for_legacy() -> None:
    with pytest.raises(PreconditionFailed, match="SOMETHING_NEW"):
        gke_plan.plan(view(datapath="SOMETHING_NEW"), PATH, engine_ready=False)


def test_absent_addon_config_counts_as_off() -> None:
    assert not gke_plan.ClusterView.from_json({"name": "x", "addonsConfig": {}}).addon_enabled
    assert gke_plan.ClusterView.from_json(
        {"name": "x", "addonsConfig": {"networkPolicyConfig": {}}}).addon_enabled


def test_cluster_name_from_instance_name() -> None:
    assert gke_plan.instance_cluster_name("gke-lab-default-pool-1a2b3c4d-0000",
                                          "default-pool") == "lab"
    assert gke_plan.instance_cluster_name("gke-prod-eu-1-spot-0a1b2c3d-x7k2", "spot") == "prod-eu-1"
    assert gke_plan.instance_cluster_name("gke-lab-other-1a2b3c4d-0000", "default-pool") is None


def test_operations_say_what_they_are() -> None:
    op = gke_plan.OperationView.from_json({
        "name": "operation-1", "operationType": "SET_NETWORK_POLICY", "status": "RUNNING",
        "targetLink": "https://container.googleapis.com/v1/projects/p/locations/l/clusters/lab",
        "progress": {"metrics": [{"name": "NODES_DONE", "intValue": "1"},
                                 {"name": "NODES_TOTAL", "intValue": "4"}]}})
    assert op.line() == ("operation operation-1 (SET_NETWORK_POLICY): RUNNING, NODES_DONE=1 "
                         "NODES_TOTAL=4")
    assert op.on_cluster("lab") and not op.on_cluster("la") and not op.on_cluster("lab2")
    failed = gke_plan.OperationView.from_json(
        {"name": "o", "status": "DONE", "error": {"code": 9, "message": "boom"}})
    assert failed.done and failed.error == "boom" and failed.error_code == "FAILED_PRECONDITION"
    assert gke_plan.operation_named_in(
        "Cluster is running incompatible operation operation-17-abc.") == "operation-17-abc"


def test_endpoint_override_takes_gclouds_form() -> None:
    assert endpoint_from_env("http://127.0.0.1:8089/") == "http://127.0.0.1:8089"
    assert endpoint_from_env("https://container.example/v1/") == "https://container.example"
    assert endpoint_from_env("") is None


# --- the SDK seam against the test server -------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[GkeServer, GkeCloud]]:
    gke = GkeServer(polls_to_done=2)
    with serve(gke) as url:
        anonymous: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]
        yield gke, GkeCloud(credentials=anonymous, endpoint=url, poll=0.05)


def mutate(cloud: GkeCloud, send: Any, lines: list[str], timeout: float = 30) -> Any:
    return cloud.mutate("netiso-lab", "us-central1-a", "lab", send,
                        deadline=time.monotonic() + timeout, log=lines.append)


def test_unknown_enum_is_read_raw_through_the_sdk(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster(datapath="MIGRATE_TO_ADVANCED_DATAPATH")
    found = cloud.get_cluster(PATH)
    assert found is not None and found.datapath == "MIGRATE_TO_ADVANCED_DATAPATH"
    assert cloud.get_cluster(PATH.replace("/lab", "/nope")) is None


def test_operations_are_waited_for_with_progress(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    lines: list[str] = []
    op = mutate(cloud, lambda: cloud.set_network_policy_addon(PATH), lines)
    assert op.done and not op.error
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == [
        "PENDING", "RUNNING", "DONE"]
    assert gke.cluster()["addonsConfig"]["networkPolicyConfig"] == {}
    gke.add_cluster(addon=True, node_pools=("default-pool", "spot"))
    lines.clear()
    mutate(cloud, lambda: cloud.set_network_policy(PATH), lines)
    assert "RUNNING, NODES_DONE=2 NODES_TOTAL=4" in lines[1]


def test_the_order_rule_is_gkes_400_with_its_message(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    with pytest.raises(OperationFailed) as err:
        mutate(cloud, lambda: cloud.set_network_policy(PATH), [])
    assert ORDER_RULE in err.value.message and "https://" not in err.value.message
    assert "FAILED_PRECONDITION" in err.value.message


def test_an_operation_error_is_raised_with_gkes_message(
        server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster(addon=True)
    gke.fail_operation("SET_NETWORK_POLICY", "Insufficient regional quota to satisfy request.")
    with pytest.raises(OperationFailed, match="Insufficient regional quota") as err:
        mutate(cloud, lambda: cloud.set_network_policy(PATH), [])
    assert "FAILED_PRECONDITION" in err.value.message


def test_a_running_operation_is_waited_for_first(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    other = gke.start_foreign(polls=3)
    lines: list[str] = []
    mutate(cloud, lambda: cloud.set_network_policy_addon(PATH), lines)
    assert any(other in line and "already running" in line for line in lines)
    posts = [i for i, c in enumerate(gke.calls) if c.mutating]
    other_done = max(i for i, c in enumerate(gke.calls) if c.path.endswith(other))
    assert posts == [posts[0]] and posts[0] > other_done


def test_already_in_progress_400_is_waited_for_and_sent_again(
        server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    started: list[str] = []

    def send() -> Any:
        # Another operation starts between netiso's check and its call: GKE refuses with a 400.
        if not started:
            started.append(gke.start_foreign(polls=2))
        return cloud.set_network_policy_addon(PATH)

    lines: list[str] = []
    op = mutate(cloud, send, lines)
    assert op.done
    assert [c.verb for c in gke.mutating_calls()] == ["setAddons", "setAddons"]
    assert any("another operation" in line and started[0] in line for line in lines)


def test_429_and_503_are_retried(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    gke.answer("GET", "/clusters/lab", 429, "Quota exceeded for quota metric 'Read requests'")
    gke.answer("GET", "/clusters/lab", 503, "The service is currently unavailable.")
    gke.answer("POST", ":setAddons", 503, "The service is currently unavailable.")
    assert cloud.get_cluster(PATH) is not None
    mutate(cloud, lambda: cloud.set_network_policy_addon(PATH), [])
    verbs = [(c.method, c.verb) for c in gke.calls]
    assert verbs[:3] == [("GET", "get")] * 3
    assert [c.verb for c in gke.mutating_calls()] == ["setAddons", "setAddons"]


def test_a_permanent_error_is_one_line_with_gkes_words(
        server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    gke.answer("GET", "/clusters/lab", 403, "Required 'container.clusters.get' permission for "
               "'projects/netiso-lab/locations/us-central1-a/clusters/lab'.")
    with pytest.raises(OperationFailed) as err:
        cloud.get_cluster(PATH)
    assert err.value.one_line() == (
        f"GKE clusters.get {PATH}: Required 'container.clusters.get' permission for "
        f"'{PATH}'. (PERMISSION_DENIED)")


# --- the provider's plan against the server ----------------------------------------------


def context(**identity: str) -> EnableContext:
    facts = ClusterFacts(nodes=(NodeFacts(
        "n1", "gce://netiso-lab/us-central1-a/gke-lab-default-pool-1a2b3c4d-0000",
        {"cloud.google.com/gke-nodepool": "default-pool"}),))
    base = {"project": "netiso-lab", "zone": "us-central1-a", "region": "us-central1"}
    flags = {k: v for k, v in identity.items() if k in ("clusterName", "location", "region")}
    # plan_enable reads the cloud only: the cluster client is never used before enable.
    return EnableContext(facts=facts, state=EnforcementState(), identity={**base, **identity},
                         request=EnableRequest(identity=flags), kube=cast(Any, None))


def test_plan_finds_the_cluster_from_the_nodes_alone(
        server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    gke.add_cluster("lab", "europe-west1")  # same name elsewhere: the nodes' zone decides
    plan = Gke(cloud=lambda: cloud).plan_enable(context())
    assert plan.cloud["location"] == "us-central1-a"
    assert [c.verb for c in gke.calls] == ["list"]
    assert not gke.mutating_calls()


def test_plan_with_flags_gets_the_named_cluster(server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster("other", "us-central1", datapath="ADVANCED_DATAPATH")
    plan = Gke(cloud=lambda: cloud).plan_enable(context(clusterName="other",
                                                        location="us-central1"))
    assert plan.already == "anetd"
    with pytest.raises(PreconditionFailed, match="no cluster nope"):
        Gke(cloud=lambda: cloud).plan_enable(context(clusterName="nope", location="x"))


def test_another_providers_flag_is_refused() -> None:
    ctx = context()
    bad = EnableContext(facts=ctx.facts, state=ctx.state, identity=ctx.identity,
                        request=EnableRequest(identity={"subscription": "s"}), kube=ctx.kube)
    with pytest.raises(UsageError, match="--subscription does not apply to --provider gke"):
        Gke(cloud=lambda: cast(Any, None)).plan_enable(bad)


def test_application_default_credentials_reach_the_token_endpoint(tmp_path: Path) -> None:
    """The CLI's path: ADC from GOOGLE_APPLICATION_CREDENTIALS, the endpoint from gcloud's
    override variable; the server sees a bearer-authorised get."""
    gke = GkeServer()
    gke.add_cluster()
    with serve(gke) as url:
        code = ("from netiso.providers.gke.cloud import GkeCloud\n"
                f"print(GkeCloud().get_cluster({PATH!r}).name)\n")
        env = {"GOOGLE_APPLICATION_CREDENTIALS": str(adc_file(tmp_path, url)),
               "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": f"{url}/", "PATH": "/usr/bin"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lab"
    gets = [c for c in gke.calls if c.verb == "get"]
    assert len(gets) == 1 and gets[0].auth == "Bearer"


# --- bundle: Workload Identity on GKE, opt-in ----------------------------------------------


@pytest.mark.parametrize("deny_all_egress", [False, True])
def test_workload_identity_opt_in_opens_the_gke_metadata_server(
        tmp_path: Path, deny_all_egress: bool) -> None:
    from netiso.bundle import render_bundle
    from netiso.config import load_values
    from netiso.policy import Cluster, Engine
    from tests.unit.test_bundle_evaluator import WORLD

    def engine(opt_in: bool, provider: str = "gke") -> Engine:
        values = tmp_path / f"v-{opt_in}.yaml"
        values.write_text(f"policies: {{defaultDenyEgress: {str(deny_all_egress).lower()}}}\n"
                          f"metadata: {{workloadIdentity: {str(opt_in).lower()}}}\n")
        bundle = render_bundle(load_values(values, provider=provider), ["production"])
        return Engine(Cluster.from_objects([*WORLD, *bundle]))

    def open_(e: Engine, ip: str, port: int) -> bool:
        return e.check("production/api", f"ip:{ip}", port, "TCP").allowed

    on, off = engine(True), engine(False)
    # Legacy (Calico): after the node's DNAT, the gke-metadata-server on .252:988.
    assert open_(on, "169.254.169.252", 988)
    # Dataplane V2: before the DNAT, the metadata address on port 80.
    assert open_(on, "169.254.169.254", 80) and not open_(off, "169.254.169.254", 80)
    assert not open_(on, "169.254.169.254", 8080)  # only the token port
    assert open_(off, "169.254.169.252", 988) is (not deny_all_egress)
    # Other providers have no Workload Identity endpoint: the key renders nothing there.
    assert not open_(engine(True, "eks"), "169.254.169.254", 80)


def test_an_interrupted_runs_operation_is_waited_for_and_not_sent_again(
        server: tuple[GkeServer, GkeCloud]) -> None:
    """A run killed while step 2's operation ran: the next run plans step 2 (GKE does not show
    it yet), waits for that operation, sees its effect and sends nothing."""
    gke, cloud = server
    gke.add_cluster(addon=True)
    gke.handle("POST", f"/v1/{PATH}:setNetworkPolicy",
               {"networkPolicy": {"provider": "CALICO", "enabled": True}})
    provider = Gke(cloud=lambda: cloud)
    ctx = context()
    plan = provider.plan_enable(ctx)
    assert [s.name for s in plan.pending] == [gke_plan.POLICY_STEP]
    lines: list[str] = []
    ctx = EnableContext(facts=ctx.facts, state=ctx.state, identity=ctx.identity,
                        request=ctx.request, kube=ctx.kube, log=lines.append)
    provider.enable(ctx, plan)
    assert [c.verb for c in gke.mutating_calls()] == ["setNetworkPolicy"]  # the earlier run's
    assert any("already in effect" in line for line in lines)


def test_an_operation_still_running_at_the_timeout_is_named(
        server: tuple[GkeServer, GkeCloud]) -> None:
    gke, cloud = server
    gke.add_cluster()
    other = gke.start_foreign(polls=1000)
    with pytest.raises(OperationFailed) as err:
        mutate(cloud, lambda: cloud.set_network_policy_addon(PATH), [], timeout=0.3)
    assert f"GKE operation {other} (UPGRADE_MASTER) still RUNNING at the timeout" in (
        err.value.message)
    assert f"gcloud container operations describe {other}" in (err.value.hint or "")
    assert not gke.mutating_calls()


def test_the_standalone_server_prints_what_to_export(tmp_path: Path) -> None:
    """`python -m tests.servers.gke` (the README's demo): its two export lines are enough for
    netiso's GKE client to reach it."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.gke", "--port", "0",
                             "--adc", str(tmp_path), "--datapath", "ADVANCED_DATAPATH"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        env = dict(line.strip().split("export ", 1)[1].split("=", 1)
                   for line in (proc.stdout.readline(), proc.stdout.readline()))
        code = ("from netiso.providers.gke.cloud import GkeCloud\n"
                f"print(GkeCloud().get_cluster({PATH!r}).datapath)\n")
        out = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin"},
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ADVANCED_DATAPATH"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
