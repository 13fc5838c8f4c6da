"""Real 429s from a real API server: `netiso apply` over many namespaces still finishes.

API Priority and Fairness sends this test's own identity (a client certificate user, nobody
else's traffic) to a PriorityLevelConfiguration with one nominal share, no borrowing and no
queue: whatever exceeds its two or three seats is rejected at once with 429 and Retry-After.
The run must still apply every namespace, say on stderr how many requests were throttled, and
that number must be the API server's own count of rejections for the FlowSchema
(``apiserver_flowcontrol_rejected_requests_total``), so the report is neither invented nor
hiding any.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
NAMESPACES = 60
BUNDLE_SIZE = 4  # the default bundle per namespace


def _rejected(lab: LabClient, flow_schema: str) -> int:
    metrics = lab.kubectl("get", "--raw", "/metrics").stdout
    total = 0
    for line in metrics.splitlines():
        if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and \
                f'flow_schema="{flow_schema}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.fixture
def throttled_user(lab: LabClient) -> Iterator[tuple[str, str, str]]:
    run = uuid.uuid4().hex[:6]
    user = f"netiso-throttle-{run}"
    level = f"netiso-tiny-{run}"
    schema = f"netiso-throttle-{run}"
    kubeconfig = lab.user_kubeconfig(user)
    manifest = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {user}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: {level}}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {schema}}}
spec:
  priorityLevelConfiguration: {{name: {level}}}
  matchingPrecedence: 100
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects: [{{kind: User, user: {{name: {user}}}}}]
    resourceRules:
    - {{verbs: ["*"], apiGroups: ["*"], resources: ["*"], clusterScope: true,
       namespaces: ["*"]}}
    nonResourceRules:
    - {{verbs: ["*"], nonResourceURLs: ["*"]}}
"""
    lab.kubectl("apply", "-f", "-", input=manifest)
    names = [f"t-throttle-{run}-{i:03d}" for i in range(NAMESPACES)]
    for name in names:
        lab.core.create_namespace({"metadata": {"name": name, "labels": {"netiso-throttle": run}}})
    try:
        # The APF config controller marks a FlowSchema it has taken in (Dangling=False once
        # its priority level is known); before that the user's requests go elsewhere.
        deadline = time.monotonic() + 30
        while True:
            fs = json.loads(lab.kubectl("get", "flowschema", schema, "-o", "json").stdout)
            conditions = (fs.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Dangling" and c.get("status") == "False"
                   for c in conditions):
                break
            assert time.monotonic() < deadline, f"FlowSchema {schema} not taken in: {fs}"
            time.sleep(0.3)
        yield str(kubeconfig), schema, run
    finally:
        for name in names:
            lab.core.delete_namespace(name, propagation_policy="Background")
        lab.kubectl("delete", "--ignore-not-found", "flowschema", schema, check=False)
        lab.kubectl("delete", "--ignore-not-found", "prioritylevelconfiguration", level,
                    check=False)
        lab.kubectl("delete", "--ignore-not-found", "clusterrolebinding", f"{user}",
                    check=False)


def test_apply_through_real_429s_finishes_and_says_so(
        lab: LabClient, throttled_user: tuple[str, str, str]) -> None:
    kubeconfig, schema, run = throttled_user
    before = _rejected(lab, schema)
    assert before == 0
    env = {**os.environ, "NO_COLOR": "1", "KUBECONFIG": kubeconfig}
    out = subprocess.run(
        [*NETISO, "-o", "json", "apply", "-l", f"netiso-throttle={run}", "--concurrency", "16"],
        capture_output=True, text=True, env=env, check=False, timeout=540,
    )
    print(out.stderr)  # shown with -rP: the README's sample
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["summary"]["namespaces"] == NAMESPACES
    assert doc["summary"]["applied"] == NAMESPACES
    assert doc["summary"]["notApplied"] == 0
    assert doc["summary"]["created"] == NAMESPACES * BUNDLE_SIZE

    # The API server really refused, and netiso's count is the server's count.
    rejected = _rejected(lab, schema)
    match = re.search(r"the API server throttled (\d+) request\(s\) \(429/503\)", out.stderr)
    assert match, out.stderr[-3000:]
    assert rejected > 0
    assert int(match.group(1)) == rejected

    # What the report says is what the cluster holds (read as admin, outside APF's squeeze).
    managed = lab.networking.list_network_policy_for_all_namespaces(
        label_selector="app.kubernetes.io/managed-by=netiso").items
    per_ns: dict[str, int] = {}
    for pol in managed:
        if pol.metadata.namespace.startswith(f"t-throttle-{run}-"):
            per_ns[pol.metadata.namespace] = per_ns.get(pol.metadata.namespace, 0) + 1
    assert len(per_ns) == NAMESPACES
    assert set(per_ns.values()) == {BUNDLE_SIZE}
