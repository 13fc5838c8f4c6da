"""Local kubeconfig faults are named before any request, exit 2 (issue 14, point 4).

Each case is a kubeconfig a user could really have (a truncated paste, the wrong file, a key
from another pair); the certificates come from the lab's PKI code, made fresh per test. The
wrong-CA case needs a server and lives in tests/cluster/test_kube_tls.py.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from netiso import kube
from netiso.errors import ExitCode, UsageError
from tests.lab import pki


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def material(tmp_path: Path) -> dict[str, bytes]:
    p = pki.ensure(tmp_path / "pki")
    cert, key = pki.client_certificate(p, "alice")
    other_cert, other_key = pki.client_certificate(p, "bob")
    return {"ca": p.ca_cert.read_bytes(), "cert": cert, "key": key, "other_key": other_key,
            "other_cert": other_cert}


def _write(tmp_path: Path, *, server: str = "https://127.0.0.1:6443",
           cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server, **(cluster or {})}}],
        "contexts": [{"name": "x", "context": {"cluster": "lab", "user": "alice"}}],
        "users": [{"name": "alice", "user": user or {"token": "t"}}],
        "current-context": "x",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return path


def _usage_error(path: Path) -> str:
    with pytest.raises(UsageError) as err:
        kube.connect(str(path), environ={})
    assert err.value.exit_code is ExitCode.USAGE
    return err.value.one_line()


def test_good_material_connects(tmp_path: Path, material: dict[str, bytes]) -> None:
    path = _write(tmp_path, cluster={"certificate-authority-data": _b64(material["ca"])},
                  user={"client-certificate-data": _b64(material["cert"]),
                        "client-key-data": _b64(material["key"])})
    with kube.connect(str(path), environ={}) as k:
        assert k.server == "https://127.0.0.1:6443"


def test_bad_base64_in_certificate_authority_data(tmp_path: Path,
                                                  material: dict[str, bytes]) -> None:
    broken = _b64(material["ca"])[:-3] + "!!"  # a paste cut short
    line = _usage_error(_write(tmp_path, cluster={"certificate-authority-data": broken}))
    assert "certificate-authority-data of cluster 'lab' is not valid base64" in line
    assert str(tmp_path / "config") in line


def test_ca_data_that_is_no_certificate(tmp_path: Path) -> None:
    line = _usage_error(_write(tmp_path, cluster={
        "certificate-authority-data": _b64(b"this is not a certificate\n")}))
    assert "the certificate authority of cluster 'lab' holds no PEM certificate" in line


def test_binary_file_as_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubectl"
    path.write_bytes(bytes(range(256)) * 8)  # e.g. --kubeconfig pointed at a binary
    line = _usage_error(path)
    assert line.startswith(f"kubeconfig {path} is not a kubeconfig: binary content")


def test_client_certificate_that_is_no_certificate(tmp_path: Path,
                                                   material: dict[str, bytes]) -> None:
    line = _usage_error(_write(tmp_path, user={
        "client-certificate-data": _b64(material["key"]),  # the key pasted twice
        "client-key-data": _b64(material["key"])}))
    assert "the client certificate of user 'alice' is not a PEM certificate" in line


def test_client_key_that_is_no_key(tmp_path: Path, material: dict[str, bytes]) -> None:
    line = _usage_error(_write(tmp_path, user={
        "client-certificate-data": _b64(material["cert"]),
        "client-key-data": _b64(b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                b"-----END PRIVATE KEY-----\n")}))
    assert "the client key of user 'alice' is not a PEM private key" in line


def test_certificate_and_key_mismatch(tmp_path: Path, material: dict[str, bytes]) -> None:
    line = _usage_error(_write(tmp_path, user={
        "client-certificate-data": _b64(material["cert"]),
        "client-key-data": _b64(material["other_key"])}))
    assert "the client key of user 'alice' does not belong to its client certificate" in line


@pytest.mark.parametrize(
    ("server", "why"),
    [
        ("10.0.0.1:6443", "it has no scheme (write https://HOST:PORT)"),
        ("https//10.0.0.1", "it has no scheme"),
        ("https://10.0.0.1:6443x", "Port could not be cast to integer value"),
        ("https://10.0.0.1:99999", "Port out of range"),
        ("https://[::1", "Invalid IPv6 URL"),
        ("https://exa mple.com", "it contains whitespace"),
        ("https://:443", "it names no host"),
        ("ftp://10.0.0.1", "the scheme 'ftp' is neither https nor http"),
        ("https://bad_host!:443", "'bad_host!' is not a host name or address"),
    ],
)
def test_malformed_server_url_is_named_without_a_warning(tmp_path: Path, server: str,
                                                         why: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # urllib3's FutureWarning would fail the test
        line = _usage_error(_write(tmp_path, server=server))
    assert f"the server URL {server!r} of cluster 'lab' is malformed: {why}" in line


@pytest.mark.parametrize("server", ["https://10.0.0.1:6443", "http://127.0.0.1:8080",
                                    "https://[fd00::1]:443", "https://api.example.com",
                                    "https://rancher.example.com/k8s/clusters/c-abc"])
def test_good_server_urls(server: str) -> None:
    assert kube.server_url_problem(server) is None


def test_cli_names_the_fault_with_exit_2_and_no_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, server="10.0.0.1:6443")
    out = subprocess.run(
        [sys.executable, "-W", "default", "-m", "netiso", "--kubeconfig", str(path), "status"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"netiso: error: kubeconfig {path}: the server URL '10.0.0.1:6443' of cluster 'lab' "
        "is malformed: it has no scheme (write https://HOST:PORT)"]
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
         "certificate (_ssl.c:1006)", "is not signed by the CA in your kubeconfig"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate signature "
         "failure (_ssl.c:1006)", "is not signed by the CA in your kubeconfig"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in "
         "certificate chain (_ssl.c:1006)", "is not signed by the CA in your kubeconfig"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
         "certificate is not valid for 'x'. (_ssl.c:1006)", "does not name the host"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired "
         "(_ssl.c:1006)", "has expired"),
    ],
)
def test_tls_verify_failures_say_what_is_wrong(text: str, meaning: str) -> None:
    explained = kube.explain_tls_failure(text)
    assert explained is not None and meaning in explained
    assert kube.explain_tls_failure("Connection refused") is None


def test_detection_facts_skip_a_binary_kubeconfig(tmp_path: Path) -> None:
    # read_cluster_ref never fails (connect names the fault); a binary file is skipped like an
    # unreadable one, and the next file of $KUBECONFIG still answers.
    binary = tmp_path / "kubectl"
    binary.write_bytes(bytes(range(256)) * 8)
    good = _write(tmp_path, server="https://10.0.0.1:6443")
    ref = kube.read_cluster_ref(environ={"KUBECONFIG": f"{binary}:{good}"})
    assert (ref.context, ref.cluster, ref.server) == ("x", "lab", "https://10.0.0.1:6443")
    assert kube.read_cluster_ref(str(binary), environ={}) == kube.ClusterRef()
