"""The engine doubles' pure parts: which images are doubles, how their argv is built, what the
switches create, and that netiso's own detection reads those objects as the clouds' engines."""

from __future__ import annotations

from typing import Any

import pytest

from netiso.providers import all_providers
from netiso.providers.base import ClusterFacts, ContainerFacts, DaemonSetFacts
from tests.lab import engine_double, engines, images, lab


def test_only_the_clouds_flavours_start_without_the_labs_enforcement() -> None:
    assert {f: lab.make_spec(flavor=f).enforce for f in lab.FLAVORS} == {
        "generic": True, "eks": False, "gke": False, "aks": False}
    assert lab.make_spec(flavor="gke", enforce=True).enforce is True


@pytest.mark.parametrize(("image", "engine"), [
    ("gke.gcr.io/calico/node:v3.26.3-gke.13", "gke-calico"),
    ("mcr.microsoft.com/containernetworking/azure-npm:v1.6.29", "azure-npm"),
    ("mcr.microsoft.com/oss/calico/node:v3.28.2", "aks-calico"),
    ("mcr.microsoft.com/oss/cilium/cilium:1.16.6", "cilium"),
    ("602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon/aws-network-policy-agent:v1.2.0",
     "aws-network-policy-agent"),
    # The real Calico the lab runs (and what upstream users run) is not a double.
    ("quay.io/calico/node:v3.32.1", None),
    ("calico/node:v3.32.1", None),
    ("quay.io/cilium/cilium:v1.16.6", None),
    ("602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1", None),
    ("busybox:1.36", None),
])
def test_which_images_are_engine_doubles(image: str, engine: str | None) -> None:
    assert images.engine_double(image) == engine


def test_a_wrapped_image_runs_its_wrapper_but_probes_run_the_images_paths() -> None:
    image = images.Image("x", ("entry",), ("cmd",), files=(("/bin/calico-node", "/probe"),),
                         wrapper=("double", "--engine", "e", "--"))
    assert image.container_argv(None, None) == ["double", "--engine", "e", "--", "entry", "cmd"]
    assert image.container_argv(["cilium-agent"], ["--config-dir=/x"]) == [
        "double", "--engine", "e", "--", "cilium-agent", "--config-dir=/x"]
    # An exec probe or hook: argv(), never the wrapper.
    assert image.argv(["/bin/calico-node", "-felix-ready"], None) == ["/probe", "-felix-ready"]


def test_a_doubles_first_sync_counts_only_after_its_last_start() -> None:
    started, done = engine_double.STARTED_LINE, engine_double.ENFORCING_LINE
    assert engine_double.synced(f"{started}: a\nkube-router...\n{done} on n\n")
    assert not engine_double.synced(f"{started}: a\n{done} on n\n{started}: a\n")
    assert not engine_double.synced("")
    flag = "--enable-network-policy"
    assert engine_double._flag([f"{flag}=true"], flag) == "true"
    assert engine_double._flag([flag, "false"], flag) == "false"


def _facts(objects: list[dict[str, Any]]) -> ClusterFacts:
    daemonsets = []
    for obj in objects:
        if obj["kind"] != "DaemonSet":
            continue
        containers = tuple(
            ContainerFacts(c["name"], c["image"], (*c.get("command", []), *c.get("args", [])))
            for c in obj["spec"]["template"]["spec"]["containers"])
        daemonsets.append(DaemonSetFacts(obj["metadata"]["namespace"], obj["metadata"]["name"],
                                         containers, desired=2, ready=2))
    return ClusterFacts(daemonsets=tuple(daemonsets))


def _engines_netiso_sees(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    facts = _facts(objects)
    return {(s.engine.engine, s.engine.daemonset) for p in all_providers()
            for s in p.evidence(facts) if s.engine is not None}


@pytest.mark.parametrize(("objects", "seen"), [
    (engines.gke_objects(), {("calico", "kube-system/calico-node")}),
    (engines.aks_objects("azure"), {("azure-npm", "kube-system/azure-npm")}),
    (engines.aks_objects("calico"), {("calico", "calico-system/calico-node")}),
    (engines.aks_objects("cilium"), {("cilium", "kube-system/cilium")}),
    (engines.aks_objects("none"), set()),
])
def test_netiso_reads_the_doubles_as_the_clouds_engines(
        objects: list[dict[str, Any]], seen: set[tuple[str, str]]) -> None:
    assert _engines_netiso_sees(objects) == seen
    for obj in objects:
        if obj["kind"] == "DaemonSet":
            spec = obj["spec"]["template"]["spec"]
            assert spec["hostNetwork"] is True
            for c in spec["containers"]:
                assert engines._active(c) is not None, c["image"]


def test_the_eks_agent_is_a_double_only_with_network_policy_enabled() -> None:
    image = "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:v1"
    on = {"name": "aws-eks-nodeagent", "image": image, "args": ["--enable-network-policy=true"]}
    off = {"name": "aws-eks-nodeagent", "image": image, "args": ["--enable-network-policy=false"]}
    assert engines._active(on) == "aws-network-policy-agent"
    assert engines._active(off) is None
    assert engines._active({"name": "x", "image": image}) is None
