"""In-cluster configuration (issue #15.2): every pod gets what the ServiceAccount admission plugin
asks for, a TokenRequest token bound to the pod, the cluster CA and its namespace at
/var/run/secrets/kubernetes.io/serviceaccount, mounted in the container's own mount namespace
(the host's /var/run/secrets stays untouched), and reaches the API server through the
`kubernetes` Service 10.96.0.1:443, from a pod netns and from the node netns (hostNetwork).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

from tests.cluster.test_node_agent import apply, busybox, wait_for
from tests.lab import controlplane, pki
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The lab's own Python (visible in the container: pods share the host's filesystem) POSTs a
# SelfSubjectReview to the kubernetes Service with the mounted token, verifying the API server
# against the mounted ca.crt. (busybox's TLS client cannot speak to the lab's ECDSA certificate.)
WHOAMI = f"""
import json, ssl, urllib.request
d = "{SA_DIR}"
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
ctx.check_hostname = False  # the Service IP, not a name; the chain is still verified
req = urllib.request.Request(
    "https://10.96.0.1:443/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=json.dumps({{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}})
    .encode(),
    headers={{"Authorization": "Bearer " + open(d + "/token").read(),
             "Content-Type": "application/json"}})
print(urllib.request.urlopen(req, timeout=10, context=ctx).read().decode())
"""


def _username(out: str) -> str:
    data: dict[str, Any] = json.loads(out)
    return str(data["status"]["userInfo"]["username"])


@pytest.mark.parametrize("host_network", [False, True], ids=["pod-netns", "host-network"])
def test_service_account_token_ca_and_namespace_reach_the_api(
    lab: LabClient, namespace: str, host_network: bool
) -> None:
    host_had_secrets = os.path.exists("/run/secrets")
    pod = busybox("api", ["sleep", "3600"], restart="Always")
    pod["spec"]["hostNetwork"] = host_network
    apply(lab, namespace, pod)
    got = wait_for(lab, namespace, "api", lambda p: p["status"].get("phase") == "Running")
    node = next(n for n in lab.spec.nodes if n.name == got["spec"]["nodeName"])
    if host_network:
        assert got["status"]["podIP"] == node.ip
    mounts = {m["mountPath"] for m in got["spec"]["containers"][0]["volumeMounts"]}
    assert SA_DIR in mounts, "the ServiceAccount admission plugin injected the volume"

    read = lab.exec_in_pod(namespace, "api", ["sh", "-c", f"cat {SA_DIR}/namespace; echo; "
                                              f"cat {SA_DIR}/ca.crt"])
    assert read.returncode == 0, read.stderr
    ns_line, _, ca = read.stdout.partition("\n")
    assert ns_line == namespace
    assert ca.strip() == pki.Pki(controlplane.paths().pki).ca_cert.read_text().strip()
    ro = lab.exec_in_pod(namespace, "api", ["sh", "-c", f"echo x > {SA_DIR}/token"])
    assert ro.returncode != 0 and "Read-only" in ro.stderr, ro

    assert lab.can_connect(namespace, "api", "10.96.0.1", 443)
    who = lab.exec_in_pod(namespace, "api", [sys.executable, "-I", "-c", WHOAMI], timeout=30)
    assert who.returncode == 0, who.stderr
    assert _username(who.stdout) == f"system:serviceaccount:{namespace}:default"
    assert os.path.exists("/run/secrets") == host_had_secrets, "the host's /run was touched"


def test_token_is_a_real_token_bound_to_the_pod(lab: LabClient, namespace: str) -> None:
    apply(lab, namespace, busybox("bound", ["sleep", "3600"], restart="Always"))
    wait_for(lab, namespace, "bound", lambda p: p["status"].get("phase") == "Running")
    token = lab.exec_in_pod(namespace, "bound", ["cat", f"{SA_DIR}/token"]).stdout.strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
              "spec": {"token": token}}
    out = json.loads(lab.kubectl("create", "-o", "json", "-f", "-",
                                 input=json.dumps(review)).stdout)
    assert out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:default"
    assert out["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["bound"]
