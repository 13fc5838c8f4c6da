"""`netiso enable --provider gke` end to end: the real CLI, the real google-cloud-container
client (Application Default Credentials, REST) against the wire-level GKE test server, the lab in
its GKE flavour.

The server's completed setNetworkPolicy operation brings up GKE's managed calico-node DaemonSet
in the lab (``tests.lab.engines.gke_network_policy``), whose pods enforce for their node; the
``netiso verify`` that follows is real traffic. Each test gets a fresh server (its own cluster
scenario and call log), and a test that turned enforcement on turns it off again, so every test
starts from a GKE cluster without network policy. The module switches the lab to the GKE
flavour and back at its end, as test_detect.py does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.lab import engines
from tests.lab import lab as lab_mod
from tests.lab.client import LabClient
from tests.lab.kubeapi import Kube
from tests.servers.gke import GkeServer, adc_file, serve

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
SCHEMA = json.loads(
    files("netiso.manifests").joinpath("schemas", "enable.schema.json").read_text("utf-8"))


def flavour(name: str) -> None:
    current = lab_mod.load_spec()
    assert current is not None
    if current.flavor != name:
        with lab_mod.exclusive():
            lab_mod.up(lab_mod.make_spec(flavor=name, node_count=len(current.nodes)),
                       log=lambda _text: None)


@pytest.fixture(scope="module")
def gke_lab(lab: LabClient) -> Iterator[Kube]:
    before = lab_mod.load_spec()
    assert before is not None
    flavour("gke")
    kube = Kube(str(lab.kubeconfig))
    yield kube
    # The doubles sweep their rules on SIGTERM: let them finish before the lab's own
    # enforcement (kube-router in the same node netns) may come back with the old flavour.
    engines.gke_network_policy(kube, False)
    engines.wait_not_enforcing(kube)
    flavour(before.flavor)


class Gke:
    """One scenario: the server, its URL, and a way to run the CLI against it."""

    def __init__(self, lab: LabClient, server: GkeServer, url: str, tmp: Path) -> None:
        self.lab, self.server, self.url = lab, server, url
        self.env = {**os.environ,
                    "GOOGLE_APPLICATION_CREDENTIALS": str(adc_file(tmp, url)),
                    "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER": f"{url}/"}

    def netiso(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*NETISO, "--kubeconfig", str(self.lab.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=self.env)

    def enable(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        out = self.netiso("-o", "json", "enable", "--provider", "gke", *args)
        doc: dict[str, Any] = {}
        if out.returncode == 0:
            doc = json.loads(out.stdout)
            jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        return out, doc


@pytest.fixture
def gke(gke_lab: Kube, lab: LabClient, tmp_path: Path) -> Iterator[Gke]:
    server = GkeServer(polls_to_done=2,
                       on_network_policy=lambda on: engines.gke_network_policy(gke_lab, on))
    with serve(server) as url:
        yield Gke(lab, server, url, tmp_path)
    if any("networkPolicy" in c for c in server.clusters.values()):
        engines.gke_network_policy(gke_lab, False)
        engines.wait_not_enforcing(gke_lab)


def verbs(server: GkeServer) -> list[str]:
    return [c.verb for c in server.mutating_calls()]


def test_without_yes_exit_4_and_nothing_is_sent(gke: Gke) -> None:
    gke.server.add_cluster()
    out, _ = gke.enable()
    assert out.returncode == 4, out.stderr
    assert "enable-network-policy would change the nodes" in out.stderr
    assert "rerun with --yes" in out.stderr
    assert gke.server.calls and not gke.server.mutating_calls()


def test_dry_run_shows_both_calls_and_the_node_pools(gke: Gke) -> None:
    gke.server.add_cluster(node_pools=("default-pool", "spot"))
    out, doc = gke.enable("--dry-run")
    assert out.returncode == 0, out.stderr
    assert doc["outcome"] == "dry-run"
    assert [s["call"]["method"].rsplit(".", 1)[1] for s in doc["steps"]] == [
        "setAddons", "setNetworkPolicy"]
    assert doc["disruption"] == "node pools default-pool, spot: every node recreated"
    assert doc["cloud"]["networkPolicyAddon"] == "disabled"
    assert not gke.server.mutating_calls()


@pytest.mark.parametrize("over", [{"datapath": "ADVANCED_DATAPATH"},
                                  {"datapath": "ADVANCED_DATAPATH", "autopilot": True}],
                         ids=["dataplane-v2", "autopilot"])
def test_dataplane_v2_and_autopilot_make_no_call(gke: Gke, over: dict[str, Any]) -> None:
    gke.server.add_cluster(**over)
    out, doc = gke.enable("--yes")
    assert out.returncode == 0, out.stderr
    assert doc["outcome"] == "already-enforcing" and doc["engine"] == "anetd"
    assert "already enforcing (anetd): nothing to do" in out.stderr
    assert not gke.server.mutating_calls()


def test_an_operation_error_is_exit_1_with_gkes_message(gke: Gke) -> None:
    gke.server.add_cluster()
    gke.server.fail_operation("SET_NETWORK_POLICY",
                              "Insufficient regional quota to satisfy request: resource "
                              "\"CPUS\": request requires '2.0' and is short '2.0'.")
    out, _ = gke.enable("--yes")
    assert out.returncode == 1, out.stderr
    assert "Insufficient regional quota to satisfy request" in out.stderr
    assert "Traceback" not in out.stderr
    assert verbs(gke.server) == ["setAddons", "setNetworkPolicy"]


def test_a_400_is_exit_1_with_gkes_message(gke: Gke) -> None:
    gke.server.add_cluster()
    gke.server.answer("POST", ":setAddons", 400,
                      "Invalid value for field 'addons_config': network policy is not "
                      "supported on this cluster.", "INVALID_ARGUMENT")
    out, _ = gke.enable("--yes")
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "network policy is not supported on this cluster. (INVALID_ARGUMENT)" in line
    assert "http" not in line and "Traceback" not in out.stderr
    assert verbs(gke.server) == ["setAddons"]


def test_addon_already_on_only_step_two_is_called(gke: Gke) -> None:
    gke.server.add_cluster(addon=True)
    out, doc = gke.enable("--yes")
    assert out.returncode == 0, out.stderr
    assert verbs(gke.server) == ["setNetworkPolicy"]
    assert [(s["name"], s["done"], s["ran"]) for s in doc["steps"]] == [
        ("enable-network-policy-addon", True, False), ("enable-network-policy", False, True)]


def test_legacy_cluster_enable_both_in_order_verify_passes_rerun_is_a_no_op(
        gke: Gke, gke_lab: Kube) -> None:
    gke.server.add_cluster()
    out, doc = gke.enable("--yes")
    assert out.returncode == 0, out.stderr
    assert doc["outcome"] == "enabled" and doc["engine"] == "calico"
    assert doc["enforcement"]["status"] == "enforcing"
    assert doc["cloud"]["clusterName"] == "lab"  # found from the nodes' instance names
    assert verbs(gke.server) == ["setAddons", "setNetworkPolicy"]
    # The second call went out only once the first operation was DONE.
    calls = gke.server.calls
    second = next(i for i, c in enumerate(calls) if c.verb == "setNetworkPolicy")
    first_done = [i for i, c in enumerate(calls[:second]) if "/operations/" in c.path]
    assert first_done, "the addon operation was not polled before setNetworkPolicy"
    assert "operation-1000-updatecluster (UPDATE_CLUSTER): DONE" in out.stderr
    assert "(SET_NETWORK_POLICY): RUNNING, NODES_DONE=" in out.stderr

    engines.wait_enforcing(gke_lab)
    verified = gke.netiso("verify", "--provider", "gke", timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    before = len(gke.server.calls)
    out, doc = gke.enable("--yes")
    assert out.returncode == 0, out.stderr
    assert doc["outcome"] == "already-enforcing" and doc["engine"] == "calico"
    assert not [c for c in gke.server.calls[before:] if c.mutating]


def test_an_unknown_datapath_is_exit_4_not_a_crash(gke: Gke) -> None:
    gke.server.add_cluster(datapath="MIGRATE_TO_ADVANCED_DATAPATH")
    out, _ = gke.enable("--yes")
    assert out.returncode == 4, out.stderr
    assert "MIGRATE_TO_ADVANCED_DATAPATH" in out.stderr and "wait for the migration" in out.stderr
    assert not gke.server.mutating_calls()
