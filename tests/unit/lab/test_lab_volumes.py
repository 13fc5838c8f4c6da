"""Pure parts of the node agent's volumes and env (tests/lab/volumes.py) and its NAT."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.lab import network, volumes

HOST = {
    "/": "dir", "/var": "dir", "/run": "dir", "/etc": "dir", "/run/lock": "dir",
    "/var/lib": "dir", "/var/lib/calico": "dir", "/tmp": "dir", "/s/vol": "dir", "/s/f": "file",
    "/etc/hosts": "file",
}
LINKS = {"/var/run": "/run"}


def lookup(path: str) -> str | None:
    return HOST.get(LINKS.get(path, path))


def realpath(path: str) -> str:
    return LINKS.get(path, path)


def plan(*mounts: tuple[str, str, bool]) -> volumes.Plan:
    return volumes.mount_plan(list(mounts), lookup, realpath)


def test_missing_mount_point_is_made_in_a_shadow_of_its_deepest_existing_dir() -> None:
    got = plan(("/s/vol", "/etc/kubernetes/pki", True))
    assert got == volumes.Plan(False, (
        "nlab_shadow /etc",
        "nlab_mkdir /etc/kubernetes/pki",
        "nlab_bind /s/vol /etc/kubernetes/pki ro",
    ))
    # /run is the container's own tmpfs (the host's /run is never visible): no shadow needed,
    # and /var/run resolves to it as on the host.
    got = plan(("/s/vol", "/var/run/secrets/kubernetes.io/serviceaccount", True))
    assert got == volumes.Plan(False, (
        "nlab_mkdir /run/secrets/kubernetes.io/serviceaccount",
        "nlab_bind /s/vol /run/secrets/kubernetes.io/serviceaccount ro",
    ))


def test_top_level_mount_point_needs_a_new_root_and_existing_ones_are_bound_in_place() -> None:
    got = plan(("/s/f", "/typha-ca/ca.crt", True), ("/s/vol", "/var/lib/calico", False),
               ("/s/vol", "/tmp/x", False))
    assert got.new_root
    assert got.lines == (
        "nlab_mkdir /typha-ca",
        "nlab_touch /typha-ca/ca.crt",
        "nlab_bind /s/f /typha-ca/ca.crt ro",
        "nlab_mkdir /tmp/x",
        "nlab_bind /s/vol /tmp/x rw",
        "nlab_bind /s/vol /var/lib/calico rw",
    )


def test_plan_never_creates_anything_outside_what_the_container_owns() -> None:
    got = plan(("/s/f", "/run/xtables.lock", False), ("/s/vol", "/etc/lab/x", False),
               ("/s/vol", "/var/lib/calico/sub", False))
    created = [line.split()[1] for line in got.lines if line.startswith(("nlab_mkdir",
                                                                          "nlab_touch"))]
    shadows = [line.split()[1] for line in got.lines if line.startswith("nlab_shadow")]
    assert shadows == ["/etc", "/var/lib/calico"]
    for path in created:
        private = path in volumes.PRIVATE_DIRS or path.startswith(("/run/", "/tmp/", "/dev/"))
        assert private or lookup(path) is None, f"{path} exists on the host: not to be created"
    with pytest.raises(volumes.ConfigError, match="cannot mount a dir on /etc/hosts"):
        plan(("/s/vol", "/etc/hosts", False))


def test_mount_paths_with_shell_metacharacters_are_quoted() -> None:
    got = plan(("/s/vol", "/tmp/a b;rm -rf x", False))
    assert got.lines[-1] == "nlab_bind /s/vol '/tmp/a b;rm -rf x' rw"


def sources(**objects: Any) -> volumes.Sources:
    return volumes.Sources(
        config_map=lambda name: objects.get(f"cm/{name}"),
        secret=lambda name: objects.get(f"secret/{name}"),
        token=lambda aud, exp: f"token-for-{aud}-{exp}",
        field={"metadata.namespace": "ns1", "metadata.labels": 'a="1"'}.get,
        resource=lambda ref: "2",
    )


def test_projected_service_account_volume_has_token_ca_and_namespace() -> None:
    # What the ServiceAccount admission plugin injects into every pod (kube-api-access-*).
    vol = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt",
                                                              "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    src = sources(**{"cm/kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}})
    assert volumes.volume_files(vol, src) == [
        ("token", b"token-for-None-3607", 420), ("ca.crt", b"PEM", 420),
        ("namespace", b"ns1", 420),
    ]


def test_config_and_secret_volumes_items_modes_and_optional() -> None:
    secret = {"data": {"k": base64.b64encode(b"\x00bin").decode()}}
    src = sources(**{"secret/s": secret, "cm/c": {"data": {"a": "x", "b": "y"}}})
    assert volumes.volume_files({"secret": {"secretName": "s", "defaultMode": 0o400}}, src) == [
        ("k", b"\x00bin", 0o400)]
    assert volumes.volume_files({"configMap": {"name": "c", "items": [
        {"key": "b", "path": "d/b.txt", "mode": 0o600}]}}, src) == [("d/b.txt", b"y", 0o600)]
    assert volumes.volume_files({"configMap": {"name": "gone", "optional": True}}, src) == []
    with pytest.raises(volumes.ConfigError, match="configmap 'gone' not found"):
        volumes.volume_files({"configMap": {"name": "gone"}}, src)
    assert volumes.volume_files({"emptyDir": {}}, src) is None


def test_write_files_refuses_paths_that_leave_the_volume(tmp_path: Path) -> None:
    volumes.write_files(tmp_path / "v", [("a/b", b"1", 0o640)])
    assert (tmp_path / "v" / "a" / "b").read_bytes() == b"1"
    assert (tmp_path / "v" / "a" / "b").stat().st_mode & 0o777 == 0o640
    with pytest.raises(volumes.ConfigError, match="escapes"):
        volumes.write_files(tmp_path / "v", [("../x", b"1", 0o644)])


def test_host_path_maps_into_the_node_directory(tmp_path: Path) -> None:
    made = volumes.host_path(tmp_path, {"hostPath": {"path": "/var/lib/calico",
                                                     "type": "DirectoryOrCreate"}})
    assert made == tmp_path / "var/lib/calico" and made.is_dir()
    lock = volumes.host_path(tmp_path, {"hostPath": {"path": "/run/xtables.lock",
                                                     "type": "FileOrCreate"}})
    assert lock.is_file()
    assert volumes.host_path(tmp_path, {"hostPath": {"path": "/../../etc"}}) == tmp_path / "etc"
    with pytest.raises(volumes.ConfigError, match="not a directory"):
        volumes.host_path(tmp_path, {"hostPath": {"path": "/nope", "type": "Directory"}})


def test_quantities_and_resource_field_refs() -> None:
    assert volumes.quantity("250m") == volumes.quantity("0.25")
    assert volumes.quantity("1Gi") == 2**30 and volumes.quantity("2e3") == 2000
    containers = [{"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                              "requests": {"memory": "32Mi"}}}]
    assert volumes.resource_value({"resource": "limits.cpu"}, containers, "c") == "1"
    assert volumes.resource_value({"resource": "limits.cpu", "divisor": "1m"}, containers,
                                  "c") == "500"
    assert volumes.resource_value({"resource": "requests.memory", "divisor": "1Mi"},
                                  containers, "c") == "32"
    # No limit: the node's allocatable, as kubelet does.
    assert volumes.resource_value({"resource": "limits.memory", "divisor": "1Gi"},
                                  [{"name": "c"}], "c") == "8"


def test_node_nat_sends_the_nodes_own_service_traffic_to_the_api_server() -> None:
    node = network.default_nodes()[0]
    rules = network.node_nat_rules(node, None)
    assert rules[network.NODE_NAT_OUT] == rules[network.NODE_NAT_PRE]
    assert ["-d", "10.96.0.1/32", "-p", "tcp", "--dport", "443", "-j", "DNAT",
            "--to-destination", "10.250.0.1:6443"] in rules[network.NODE_NAT_OUT]
