"""The lab's certificates and keys, made with ``cryptography``.

One CA signs everything but the aggregation layer's front-proxy client (its own CA, as kubeadm
does): the apiserver's serving certificate and the client certificates of the
admin (O=system:masters), kube-controller-manager (CN=system:kube-controller-manager, the identity
its default RBAC bootstrap roles are bound to) and kube-router. A separate key pair signs
ServiceAccount tokens. ECDSA P-256 throughout: generating it is instant, and both Go's TLS stack
and the apiserver's token signer accept it.

Files are written once and reused: restarting the control plane keeps every kubeconfig and
issued token valid, which keeps warm starts fast. ``client_certificate`` mints further identities
on demand so tests can act as a non-admin user through real RBAC.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

API_SANS_DNS = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
API_SANS_IP = ("10.250.0.1", "127.0.0.1", "10.96.0.1")
_VALIDITY = dt.timedelta(days=3650)
FRONT_PROXY_CLIENT = "front-proxy-client"


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_ca_key(self) -> Path:
        return self.dir / "front-proxy-ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _load_ca(pki: Pki, front_proxy: bool = False) -> tuple[x509.Certificate,
                                                          ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ((pki.front_proxy_ca_cert, pki.front_proxy_ca_key) if front_proxy
                           else (pki.ca_cert, pki.ca_key))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _sign(
    pki: Pki,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    front_proxy: bool = False,
) -> x509.Certificate:
    ca_cert, ca_key = _load_ca(pki, front_proxy)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if dns or ips:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _ensure_ca(pki: Pki, front_proxy: bool = False) -> None:
    cert_path, key_path = ((pki.front_proxy_ca_cert, pki.front_proxy_ca_key) if front_proxy
                           else (pki.ca_cert, pki.ca_key))
    if cert_path.is_file() and key_path.is_file():
        return
    key = _new_key()
    name = _name("netiso-lab-front-proxy-ca" if front_proxy else "netiso-lab-ca")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _ensure_leaf(
    pki: Pki, name: str, cn: str, orgs: tuple[str, ...] = (), *, server: bool = False,
    front_proxy: bool = False,
) -> None:
    if pki.cert(name).is_file() and pki.key(name).is_file():
        return
    key = _new_key()
    cert = _sign(pki, _name(cn, orgs), key, server=server,
                 dns=API_SANS_DNS if server else (), ips=API_SANS_IP if server else (),
                 front_proxy=front_proxy)
    _write(pki.key(name), _key_pem(key))
    _write(pki.cert(name), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure(directory: Path) -> Pki:
    """Create (once) every certificate and key the control plane needs under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = Pki(directory)
    _ensure_ca(pki)
    _ensure_leaf(pki, "apiserver", "kube-apiserver", server=True)
    _ensure_leaf(pki, "admin", "netiso-lab-admin", ("system:masters",))
    _ensure_leaf(pki, "kube-controller-manager", "system:kube-controller-manager")
    # kube-router gets its own identity and an RBAC binding (controlplane.py): a test for
    # "enforcement without admin rights" must not be masked by a system:masters cert.
    _ensure_leaf(pki, "kube-router", "system:kube-router")
    # The aggregation layer's own trust chain, as kubeadm sets it up: the API server presents
    # front-proxy-client when it proxies to an aggregated API server (Calico's), which trusts the
    # user headers only from a certificate of this CA with that name (the requestheader flags in
    # controlplane.py, published in kube-system/extension-apiserver-authentication).
    _ensure_ca(pki, front_proxy=True)
    _ensure_leaf(pki, FRONT_PROXY_CLIENT, FRONT_PROXY_CLIENT, front_proxy=True)
    if not (pki.sa_key.is_file() and pki.sa_pub.is_file()):
        key = _new_key()
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(pki.sa_key, _key_pem(key))
        _write(pki.sa_pub, pub, 0o644)
    return pki


def client_certificate(pki: Pki, cn: str, orgs: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A fresh client certificate (PEM cert, PEM key) for user ``cn`` in groups ``orgs``."""
    key = _new_key()
    cert = _sign(pki, _name(cn, orgs), key, server=False)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    server: str,
    ca_pem: bytes,
    *,
    user: str,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    token: str | None = None,
    context: str = "netiso-lab",
) -> str:
    """A self-contained kubeconfig (everything inlined, so it can be copied anywhere)."""
    creds: dict[str, str] = {}
    if cert_pem is not None and key_pem is not None:
        creds["client-certificate-data"] = _b64(cert_pem)
        creds["client-key-data"] = _b64(key_pem)
    if token is not None:
        creds["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "netiso-lab",
                      "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": context,
                      "context": {"cluster": "netiso-lab", "user": user, "namespace": "default"}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> None:
    _write(path, text.encode())
