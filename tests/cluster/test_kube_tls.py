"""A kubeconfig whose CA did not sign the server's certificate: named as such, exit 1.

The lab's API server presents a certificate from the lab CA; the kubeconfig here carries a
different, valid CA (a fresh one), as happens after a cluster is recreated and an old
kubeconfig is kept. The kubeconfig itself is well-formed, so this is only found in the TLS
handshake: an operation failure (exit 1), not a usage error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netiso import kube
from tests.lab import controlplane, pki
from tests.lab.client import LabClient

pytestmark = pytest.mark.lab

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]
MEANING = "the server's certificate is not signed by the CA in your kubeconfig"


def test_wrong_ca_is_named_exit_1(lab: LabClient, tmp_path: Path) -> None:
    lab_pki = pki.Pki(controlplane.paths().pki)
    other_ca = pki.ensure(tmp_path / "other-pki").ca_cert.read_bytes()
    assert other_ca != lab_pki.ca_cert.read_bytes()
    cert, key = pki.client_certificate(lab_pki, "netiso-tls-test")
    server = f"https://{controlplane.API_IP}:{controlplane.API_PORT}"
    path = tmp_path / "wrong-ca.kubeconfig"
    pki.write_kubeconfig(path, pki.kubeconfig(server, other_ca, user="netiso-tls-test",
                                              cert_pem=cert, key_pem=key))

    with kube.connect(str(path), environ={}) as k, pytest.raises(kube.UntrustedServer) as err:
        k.list_namespaces()
    assert err.value.exit_code == 1
    assert err.value.one_line().startswith(f"{MEANING} (server {server}; list namespaces")

    out = subprocess.run([*NETISO, "--kubeconfig", str(path), "status"], capture_output=True,
                         text=True, env={**os.environ, "NO_COLOR": "1"}, check=False,
                         timeout=120)
    print(out.stderr)  # shown with -rP: the README's sample
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("netiso: error:")]
    assert len(errors) == 1, out.stderr
    assert MEANING in errors[0]
    assert "Traceback" not in out.stderr

    # The same kubeconfig with the right CA works: the CA was the only fault.
    pki.write_kubeconfig(path, pki.kubeconfig(server, lab_pki.ca_cert.read_bytes(),
                                              user="netiso-tls-test", cert_pem=cert,
                                              key_pem=key))
    with kube.connect(str(path), environ={}) as k:
        assert k.server_version()["gitVersion"].startswith("v1.")
