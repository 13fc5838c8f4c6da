"""The Azure seam (netiso.providers.aks.cloud) against the wire-level ARM test server.

The real SDK and credential chain talk HTTPS to ``tests/servers/arm.py`` through the standard
settings only (HTTPS_PROXY, REQUESTS_CA_BUNDLE, App Service managed identity variables).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netiso.errors import OperationFailed, PreconditionFailed
from netiso.providers.aks.cloud import Arm, network_call
from tests.servers.arm import ArmServer, managed_cluster

SUB = "11111111-2222-3333-4444-555555555555"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/" \
          "managedClusters/prod"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArmServer]:
    with ArmServer(poll_steps=1) as server:
        server.add(managed_cluster(SUB, "rg", "prod", fqdn="prod-dns-1a2b.hcp.westeurope."
                                   "azmk8s.io", network_plugin_mode="overlay"))
        server.add(managed_cluster(SUB, "rg", "other"))
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


def test_get_reads_the_network_profile_pools_and_etag(arm: ArmServer) -> None:
    c = Arm(SUB).get("rg", "prod")
    assert c.path == CLUSTER
    assert c.network["networkPlugin"] == "azure"
    assert c.network["networkPolicy"] == "none"
    assert c.network["networkPluginMode"] == "overlay"
    assert c.etag == arm.cluster(SUB, "rg", "prod")["eTag"]
    assert [(p.name, p.count, p.os_type) for p in c.pools] == [("nodepool1", 2, "Linux")]


def test_find_matches_the_kubeconfig_server_with_the_fqdn(arm: ArmServer) -> None:
    found = Arm(SUB).find("https://prod-dns-1a2b.hcp.westeurope.azmk8s.io:443")
    assert (found.resource_group, found.name) == ("rg", "prod")
    with pytest.raises(PreconditionFailed) as exc:
        Arm(SUB).find("https://elsewhere.example:6443")
    assert "found 2: rg/prod, rg/other" in exc.value.message
    assert "--resource-group and --cluster-name" in (exc.value.hint or "")


def test_429_is_retried_after_retry_after(arm: ArmServer) -> None:
    arm.fault("GET", 429, "TooManyRequests", "too many requests", retry_after=1)
    assert Arm(SUB).get("rg", "prod").name == "prod"
    assert [c.status for c in arm.log("GET")] == [429, 200]


def test_put_sends_the_whole_profile_with_if_match_and_polls_the_operation(
        arm: ArmServer) -> None:
    arm.poll_steps = 2
    seam = Arm(SUB)
    c = seam.get("rg", "prod")
    lines: list[str] = []
    done = seam.set_network_profile(c, {"networkPolicy": "azure"}, 60, lines.append)
    assert done.provisioning_state == "Succeeded"
    assert done.network["networkPolicy"] == "azure"
    # Explicit values: the server backfills omitted fields with defaults, so these stayed.
    assert done.network["networkPluginMode"] == "overlay"
    assert done.network["podCidr"] == "10.244.0.0/16"
    put = arm.puts()
    assert len(put) == 1 and put[0].if_match is not None
    assert put[0].if_match.strip('"') == c.etag
    sent = put[0].body["properties"]["networkProfile"]
    assert sent["networkPolicy"] == "azure" and sent["networkDataplane"] == "azure"
    assert sent["serviceCidr"] == "10.0.0.0/16"
    polls = [x for x in arm.log("GET") if "/operations/" in x.path]
    assert len(polls) == 3  # two InProgress, then Succeeded
    assert any("accepted" in line for line in lines)


def test_a_partial_put_would_lose_values_the_server_backfills(arm: ArmServer) -> None:
    """What the explicit body guards against: the server plays AKS's backfill."""
    status, _, doc = arm.handle(
        "PUT", CLUSTER.replace("prod", "other"), {"authorization": f"Bearer {arm.token}"},
        {"location": "westeurope", "properties": {"networkProfile": {"networkPolicy": "azure"}}})
    assert status == 200
    assert doc["properties"]["networkProfile"]["networkDataplane"] == "azure"
    status, _, doc = arm.handle(
        "GET", CLUSTER, {"authorization": f"Bearer {arm.token}"}, None)
    assert doc["properties"]["networkProfile"]["networkPluginMode"] == "overlay"


def test_409_operation_not_allowed_says_what_to_do(arm: ArmServer) -> None:
    seam = Arm(SUB)
    c = seam.get("rg", "prod")
    arm.busy(SUB, "rg", "prod")
    with pytest.raises(OperationFailed) as exc:
        seam.set_network_profile(c, {"networkPolicy": "azure"}, 60, lambda _l: None)
    assert "HTTP 409, OperationNotAllowed: Operation is not allowed because there's an in " \
           "progress update" in exc.value.message
    assert "wait until its provisioningState is Succeeded" in (exc.value.hint or "")


def test_412_when_the_cluster_changed_after_the_read(arm: ArmServer) -> None:
    seam = Arm(SUB)
    arm.change_after_next_get = True
    c = seam.get("rg", "prod")
    with pytest.raises(OperationFailed) as exc:
        seam.set_network_profile(c, {"networkPolicy": "azure"}, 60, lambda _l: None)
    assert "HTTP 412, PreconditionFailed" in exc.value.message
    assert "rerun netiso enable" in (exc.value.hint or "")
    assert arm.cluster(SUB, "rg", "prod")["properties"]["networkProfile"][
        "networkPolicy"] == "none"


def test_a_failed_operation_carries_arms_code_and_message(arm: ArmServer) -> None:
    arm.fail_next_operation = ("ReconcileVMSSAgentPoolFailed",
                               "Agent pool nodepool1 failed to reimage: quota exceeded")
    seam = Arm(SUB)
    with pytest.raises(OperationFailed) as exc:
        seam.set_network_profile(seam.get("rg", "prod"), {"networkPolicy": "azure"}, 60,
                                 lambda _l: None)
    assert exc.value.message.endswith(
        "the operation failed, ReconcileVMSSAgentPoolFailed: Agent pool nodepool1 failed to "
        "reimage: quota exceeded")
    assert "fix its cause, then rerun netiso enable" in (exc.value.hint or "")
    assert "\n" not in exc.value.one_line()


def test_no_credentials_is_one_line(arm: ArmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(OperationFailed) as exc:
        Arm(SUB).get("rg", "prod")
    assert "Azure authentication failed" in exc.value.message
    assert "az login" in (exc.value.hint or "")
    assert arm.log() == []  # no token, no ARM call


def test_not_found_names_the_flags(arm: ArmServer) -> None:
    with pytest.raises(OperationFailed) as exc:
        Arm(SUB).get("rg", "missing")
    assert "HTTP 404, ResourceNotFound" in exc.value.message
    assert "--resource-group" in (exc.value.hint or "")


def test_network_call_shows_the_put_body_profile_and_pools(arm: ArmServer) -> None:
    c = Arm(SUB).get("rg", "prod")
    call = network_call(c, {"networkPolicy": "azure"})
    assert call["method"] == "PUT" and call["url"] == CLUSTER and call["ifMatch"] == c.etag
    props = call["body"]["properties"]
    assert props["networkProfile"]["networkPolicy"] == "azure"
    assert props["networkProfile"]["networkPluginMode"] == "overlay"
    assert props["agentPoolProfiles"] == [{"name": "nodepool1", "count": 2, "osType": "Linux",
                                           "mode": "System"}]


def test_the_server_as_a_program_prints_the_variables_that_reach_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m tests.servers.arm` (the demo's): its exports point the real SDK at it."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.arm", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while not (line := proc.stdout.readline()).startswith("# call log"):
            assert line, "the server exited"
            lines.append(line)
        exports = dict(x.removeprefix("export ").strip().split("=", 1) for x in lines)
        assert set(exports) == {"HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE",
                                "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
                                "AZURE_TOKEN_CREDENTIALS"}
        for key, value in exports.items():
            monkeypatch.setenv(key, value)
        lab = Arm("00000000-0000-0000-0000-000000000000").get("netiso-lab", "lab")
        assert lab.network["networkPolicy"] == "none" and lab.fqdn == "10.250.0.1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
