"""`netiso detect` with the cloud's view: the real CLI and SDKs against the wire-level test
servers, the lab in its GKE, AKS and EKS flavours.

Each scenario is the issue's: the cloud's API says network policy is on while the lab's engine
does not run yet (GKE: networkPolicy enabled, no calico-node; AKS: networkPolicy azure, no
azure-npm; EKS: the vpc-cni add-on's enableNetworkPolicy "true", aws-node's agent still off),
which ``detect`` reports as a disagreement; then the engine the cloud runs comes up (the lab's
doubles of the clouds' own DaemonSets, what their operations bring), and the two views agree.
The module switches the lab's flavour and puts it back at its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
from tests.servers.arm import ArmServer, managed_cluster
from tests.servers.gke import GkeServer, adc_file, serve

pytestmark = pytest.mark.lab

SCHEMA = json.loads(
    files("netiso.manifests").joinpath("schemas", "detect.schema.json").read_text("utf-8"))
# detect, then which cloud SDK modules the process loaded on the way.
DETECT_AND_MODULES = (
    "import sys\n"
    "from netiso.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "sdk = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')\n"
    "             or m.startswith('google.cloud'))\n"
    "sys.stderr.write(f'SDK MODULES {sdk}\\n')\n"
    "sys.exit(code)\n"
)
#: Variables that would count as credentials at hand on the host: none leaks into a scenario.
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
               "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT",
               "MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE")


def flavour(name: str) -> None:
    current = lab_mod.load_spec()
    assert current is not None
    if current.flavor != name or current.enforce:
        with lab_mod.exclusive():
            lab_mod.up(lab_mod.make_spec(flavor=name, node_count=len(current.nodes)),
                       log=lambda _text: None)


@pytest.fixture(scope="module")
def kube(lab: LabClient) -> Iterator[Kube]:
    before = lab_mod.load_spec()
    assert before is not None
    yield Kube(str(lab.kubeconfig))
    with lab_mod.exclusive():
        lab_mod.up(lab_mod.make_spec(before.flavor, len(before.nodes), before.enforce),
                   log=lambda _text: None)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    return {**env, "HOME": str(home), **extra}


def detect(lab: LabClient, env: dict[str, str], *args: str
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = subprocess.run([sys.executable, "-c", DETECT_AND_MODULES, "--kubeconfig",
                          str(lab.kubeconfig), "-o", "json", "detect", *args],
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return out, doc


def until_agree(lab: LabClient, env: dict[str, str]) -> dict[str, Any]:
    """detect until both views agree (the DaemonSet's status trails its pods by a sync)."""
    deadline = time.monotonic() + 90
    while True:
        _, doc = detect(lab, env)
        if doc["cloud"]["agree"] or time.monotonic() > deadline:
            return doc
        time.sleep(2)


# --- GKE ----------------------------------------------------------------------------------------


@pytest.fixture
def gke(kube: Kube, tmp_path: Path) -> Iterator[tuple[GkeServer, dict[str, str]]]:
    flavour("gke")
    engines.gke_network_policy(kube, False)
    engines.wait_not_enforcing(kube)
    server = GkeServer()
    with serve(server) as url:
        env = clean_env(tmp_path / "home",
                        GOOGLE_APPLICATION_CREDENTIALS=str(adc_file(tmp_path, url)),
                        CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER=f"{url}/")
        yield server, env
    engines.gke_network_policy(kube, False)
    engines.wait_not_enforcing(kube)


def test_gke_policy_on_in_the_api_before_calico_node_runs_then_agreeing(
        lab: LabClient, kube: Kube, gke: tuple[GkeServer, dict[str, str]]) -> None:
    server, env = gke
    server.add_cluster(addon=True, policy=True)
    out, doc = detect(lab, env)
    assert doc["provider"] == "gke"
    assert doc["enforcement"] == {"status": "none-seen", "engines": []}
    cloud = doc["cloud"]
    assert (cloud["status"], cloud["provider"], cloud["agree"]) == ("read", "gke", False)
    view = cloud["view"]
    assert view["identity"]["id"] == "projects/netiso-lab/locations/us-central1-a/clusters/lab"
    assert view["setting"]["networkPolicy"] == {"enabled": True, "provider": "CALICO"}
    assert (view["engine"], view["kubernetesVersion"]) == ("calico", "1.37.2-gke.100")
    assert len(cloud["findings"]) == 1, cloud["findings"]
    assert cloud["findings"][0].endswith(
        "runs calico, but no calico DaemonSet is in the cluster: an operation in flight or the "
        "engine not yet scheduled")
    assert "gke cloud: 1 disagreement" in out.stderr
    assert not server.mutating_calls()

    engines.gke_network_policy(kube, True)  # what GKE's node rollout brings
    engines.wait_enforcing(kube)
    doc = until_agree(lab, env)
    assert doc["enforcement"]["status"] == "enforcing"
    assert [e["engine"] for e in doc["enforcement"]["engines"]] == ["calico"]
    assert (doc["cloud"]["agree"], doc["cloud"]["findings"]) == (True, [])


def test_gke_table_shows_the_cloud_block_and_the_disagreement(
        lab: LabClient, gke: tuple[GkeServer, dict[str, str]]) -> None:
    server, env = gke
    server.add_cluster(addon=True, policy=True)
    out = subprocess.run([sys.executable, "-c", "from netiso.cli import main; main()",
                          "--kubeconfig", str(lab.kubeconfig), "detect"],
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert out.returncode == 0, out.stderr
    assert "cloud (gke API)  read" in out.stdout
    assert "engine           calico" in out.stdout
    assert "disagrees: the cloud's setting (networkPolicyAddon=enabled" in out.stdout


def test_gke_without_credentials_reads_no_cloud_and_loads_no_sdk(
        lab: LabClient, tmp_path: Path) -> None:
    flavour("gke")
    out, doc = detect(lab, clean_env(tmp_path / "home"))
    assert doc["cloud"] == {"status": "skipped", "provider": "gke", "view": None,
                            "agree": None, "findings": [],
                            "reason": "no gke credential settings in the environment; "
                                      "--cloud on asks anyway"}
    assert "SDK MODULES []" in out.stderr


def test_gke_cloud_unreachable_is_a_warning_in_auto_and_exit_1_when_on(
        lab: LabClient, tmp_path: Path) -> None:
    flavour("gke")
    env = clean_env(tmp_path / "home",
                    GOOGLE_APPLICATION_CREDENTIALS=str(adc_file(tmp_path, "http://127.0.0.1:9")),
                    CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER="http://127.0.0.1:9/")
    out, doc = detect(lab, env)
    assert doc["cloud"]["status"] == "unavailable"
    assert doc["cloud"]["reason"] == ("GKE clusters.list projects/netiso-lab/locations/-: "
                                      "unreachable at http://127.0.0.1:9: [Errno 111] "
                                      "Connection refused")
    assert "the gke cloud's view is unavailable: GKE clusters.list" in out.stderr
    on = subprocess.run([sys.executable, "-c", "from netiso.cli import main; main()",
                         "--kubeconfig", str(lab.kubeconfig), "detect", "--cloud", "on"],
                        capture_output=True, text=True, timeout=120, check=False, env=env)
    assert on.returncode == 1, on.stderr
    assert "Traceback" not in on.stderr
    _, off = detect(lab, env, "--cloud", "off")
    assert off["cloud"]["status"] == "off"


# --- AKS ----------------------------------------------------------------------------------------

SUB = "00000000-0000-0000-0000-000000000000"  # the AKS flavour's nodes' providerID


@pytest.fixture
def aks(kube: Kube, tmp_path: Path) -> Iterator[tuple[ArmServer, dict[str, str]]]:
    flavour("aks")
    engines.aks_network_policy(kube, "none")
    engines.wait_not_enforcing(kube)
    with ArmServer(poll_steps=1) as server:
        server.add(managed_cluster(SUB, "netiso-lab", "lab", fqdn="10.250.0.1",
                                   network_policy="azure",
                                   node_resource_group="mc_netiso-lab_lab_westeurope"))
        yield server, clean_env(tmp_path / "home", **server.env(no_proxy="10.250.0.1"))
    engines.aks_network_policy(kube, "none")
    engines.wait_not_enforcing(kube)


def test_aks_policy_azure_in_arm_before_azure_npm_runs_then_agreeing(
        lab: LabClient, kube: Kube, aks: tuple[ArmServer, dict[str, str]]) -> None:
    server, env = aks
    _, doc = detect(lab, env)
    assert doc["provider"] == "aks"
    cloud = doc["cloud"]
    assert (cloud["status"], cloud["agree"]) == ("read", False)
    view = cloud["view"]
    assert view["identity"]["id"] == ("/subscriptions/00000000-0000-0000-0000-000000000000/"
                                      "resourceGroups/netiso-lab/providers/"
                                      "Microsoft.ContainerService/managedClusters/lab")
    assert (view["setting"]["networkPolicy"], view["engine"], view["state"]) == (
        "azure", "azure-npm", "Succeeded")
    assert len(cloud["findings"]) == 1, cloud["findings"]
    assert "runs azure-npm, but no azure-npm DaemonSet is in the cluster" in cloud["findings"][0]
    assert not server.puts()

    engines.aks_network_policy(kube, "azure")  # what AKS's reimage brings
    engines.wait_enforcing(kube)
    doc = until_agree(lab, env)
    assert [e["engine"] for e in doc["enforcement"]["engines"]] == ["azure-npm"]
    assert (doc["cloud"]["agree"], doc["cloud"]["findings"]) == (True, [])
    assert not server.puts()


# --- EKS (the VPC CNI's policy agent) -----------------------------------------------------------

ARN = "arn:aws:eks:us-west-2:123456789012:cluster/lab"


@pytest.fixture
def eks(lab: LabClient, kube: Kube, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    import yaml

    from tests.servers.eks import EksServer

    flavour("eks")
    engines.eks_policy_agent(kube, False)
    # The context as `aws eks update-kubeconfig` names it: the cluster's ARN, where detection
    # reads the EKS name, region and account from.
    config = yaml.safe_load(Path(lab.kubeconfig).read_text("utf-8"))
    config["contexts"][0]["name"] = ARN
    config["current-context"] = ARN
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config), "utf-8")
    server = EksServer().start()
    try:
        server.seed("lab", version="1.37", configuration_values='{"enableNetworkPolicy":"true"}')
        yield kubeconfig, clean_env(tmp_path / "home", **server.env())
    finally:
        server.stop()
        engines.eks_policy_agent(kube, False)
        engines.wait_not_enforcing(kube)


def test_eks_addon_policy_on_before_the_agent_then_agreeing(
        lab: LabClient, kube: Kube, eks: tuple[Path, dict[str, str]]) -> None:
    kubeconfig, env = eks

    def run() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", "from netiso.cli import main; main()",
                              "--kubeconfig", str(kubeconfig), "-o", "json", "detect"],
                             capture_output=True, text=True, timeout=120, check=False, env=env)
        assert out.returncode == 0, out.stderr
        doc: dict[str, Any] = json.loads(out.stdout)
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        return doc

    doc = run()
    assert doc["provider"] == "eks"
    assert doc["identity"]["clusterName"] == "lab"
    view = doc["cloud"]["view"]
    assert view["identity"]["id"].endswith(":cluster/lab")
    assert view["setting"]["vpcCni"]["enableNetworkPolicy"] == "true"
    assert (view["engine"], view["state"]) == ("aws-network-policy-agent", "ACTIVE")
    assert doc["cloud"]["agree"] is False
    assert any("no aws-network-policy-agent DaemonSet is in the cluster" in f
               for f in doc["cloud"]["findings"]), doc["cloud"]["findings"]

    engines.eks_policy_agent(kube, True)  # what EKS's add-on update rolls out
    deadline = time.monotonic() + 120
    while not (doc := run())["cloud"]["agree"] and time.monotonic() < deadline:
        time.sleep(2)
    assert (doc["cloud"]["agree"], doc["cloud"]["findings"]) == (True, [])
    assert [e["engine"] for e in doc["enforcement"]["engines"]] == ["aws-network-policy-agent"]
