"""Pure parts of the lab's network, image map, metadata host, DNS names and node agent."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.lab import dns, images, metadata_server, network, node_agent
from tests.lab.network import NodeSpec

N1 = NodeSpec("lab-node-1", "netiso-node-1", "10.250.0.11", "10.244.1.0/24")
N2 = NodeSpec("lab-node-2", "netiso-node-2", "10.250.0.12", "10.244.2.0/24")


# ---------------------------------------------------------------- network


def test_nodespec_round_trips_the_agent_flag() -> None:
    assert NodeSpec.parse(str(N1)) == N1
    assert N1.gateway == "10.244.1.1"


@pytest.mark.parametrize(
    "bad",
    [
        "lab-node-1:netiso-node-1:10.250.0.11",
        "n:netiso-n:10.250.0.300:10.244.1.0/24",
        "n:other:10.250.0.11:10.244.1.0/24",
    ],
)
def test_nodespec_rejects_bad_flags(bad: str) -> None:
    with pytest.raises(ValueError):
        NodeSpec.parse(bad)


def test_pod_netns_and_veth_names_are_deterministic_and_fit_ifnamsiz() -> None:
    uid = "0e6acbea-1234-4abc-9def-0123456789ab"
    assert network.pod_netns_name(uid) == "netiso-pod-0e6acbea"
    assert len(network.pod_host_veth(uid)) <= 15
    assert network.pod_host_veth(uid).startswith(network.LINK_PREFIX)


def test_node_routes_reach_other_nodes_and_the_metadata_host_only() -> None:
    routes = dict(network.node_routes(N1, [N1, N2]))
    assert routes == {
        "10.244.2.0/24": "10.250.0.12",
        "169.254.169.254/32": network.META_HOST_IP,
        "169.254.170.23/32": network.META_HOST_IP,
        "10.96.0.1/32": network.API_IP,
        "10.96.0.10/32": network.API_IP,
    }


def test_pod_routes_cover_only_lab_ranges_and_no_default() -> None:
    lines = network.pod_route_lines("10.244.1.7", "10.244.1.1")
    dests = [line.split()[2] for line in lines if line.startswith("route add")]
    assert "default" not in dests and "0.0.0.0/0" not in dests
    lab = [ipaddress.IPv4Network(d) for d in network.POD_ROUTES]
    for dest in dests:
        net = ipaddress.IPv4Network(dest if "/" in dest else f"{dest}/32")
        assert any(net.subnet_of(x) for x in lab) or dest == "10.244.1.1/32"
    # The internet-facing host gateway of this kind of machine is never reachable.
    assert not any(ipaddress.ip_address("192.0.2.1") in x for x in lab)


def test_resolv_conf_points_cluster_first_at_lab_dns() -> None:
    text = network.resolv_conf("team-a", "ClusterFirst", None)
    assert "nameserver 10.96.0.10" in text
    assert "search team-a.svc.cluster.local svc.cluster.local cluster.local" in text
    assert "options ndots:5" in text


def test_resolv_conf_is_empty_for_default_policy_and_host_network() -> None:
    assert network.resolv_conf("a", "Default", None) == ""
    assert network.resolv_conf("a", "ClusterFirst", None, host_network=True) == ""
    assert "10.96.0.10" in network.resolv_conf("a", "ClusterFirstWithHostNet", None, True)


def test_resolv_conf_honours_dns_config() -> None:
    text = network.resolv_conf(
        "a",
        "None",
        {
            "nameservers": ["10.244.1.9"],
            "searches": ["x.local"],
            "options": [{"name": "ndots", "value": "2"}],
        },
    )
    assert text == "search x.local\nnameserver 10.244.1.9\noptions ndots:2\n"


def test_resolv_conf_keeps_only_lab_nameservers() -> None:
    servers = ["10.244.1.9", "8.8.8.8", "192.0.2.1", "10.96.0.11", "1.1.1.1\noptions x", "dns"]
    text = network.resolv_conf("a", "None", {"nameservers": servers})
    assert text == "nameserver 10.244.1.9\nnameserver 10.96.0.11\n"


def test_root_safety_rules_drop_lab_forwarding_and_guard_the_api_address() -> None:
    rules = network.root_safety_rules()
    assert set(rules) == set(network.ROOT_HOOKS)
    fwd = [" ".join(r) for r in rules[network.FWD_CHAIN]]
    assert fwd == ["-i nlab+ -j DROP", "-o nlab+ -j DROP"]
    inp = [" ".join(r) for r in rules[network.IN_CHAIN]]
    assert inp[0] == "-i lo -j RETURN"
    assert inp[-1] == "-d 10.250.0.1/32 -j DROP"
    assert any("--dport 6443" in r and "ACCEPT" in r for r in inp)
    out = [" ".join(r) for r in rules[network.OUT_CHAIN]]
    assert out[:2] == ["-o lo -j RETURN", "-o nlab+ -j RETURN"]
    for cidr in ("10.250.0.0/24", "10.244.0.0/16", "10.96.0.0/16"):
        assert f"-d {cidr} -j REJECT --reject-with icmp-net-unreachable" in out[2:]
    # Nothing in root ever mentions the link-local metadata range: the host may use it.
    assert not any("169.254" in r for r in fwd + inp + out)


def test_root_safety_rules_only_touch_lab_traffic() -> None:
    """Every verdict is scoped to a lab interface or a lab destination; the host's own traffic
    (loopback, its forwarding) falls through to the host's rules, never to an ACCEPT of ours."""
    lab_dests = {f"{network.API_IP}/32", *network.LAB_RANGES}
    for chain, rules in network.root_safety_rules().items():
        for rule in rules:
            verdict = rule[rule.index("-j") + 1]
            ifaces = {rule[i + 1] for i, a in enumerate(rule) if a in ("-i", "-o")}
            dests = {rule[i + 1] for i, a in enumerate(rule) if a == "-d"}
            if verdict == "RETURN":
                continue
            assert "-s" not in rule, (chain, rule)
            if verdict == "ACCEPT":
                assert ifaces == {network.ROOT_LINK}, (chain, rule)
            else:
                lab_if = ifaces and all(i.startswith(network.LINK_PREFIX) for i in ifaces)
                assert lab_if or (dests and dests <= lab_dests), (chain, rule)


def test_chain_restore_text_rewrites_chains_in_one_commit() -> None:
    text = network.chain_restore_text(
        "filter",
        {"NETISO-LAB-FWD": [["-i", "nlab+", "-j", "DROP"]], "NETISO-LAB-IN": []},
        {"NETISO-LAB-FWD": "FORWARD"},
    )
    assert text.splitlines() == [
        "*filter",
        ":NETISO-LAB-FWD - [0:0]",
        ":NETISO-LAB-IN - [0:0]",
        "-A NETISO-LAB-FWD -i nlab+ -j DROP",
        "-I FORWARD 1 -j NETISO-LAB-FWD",
        "COMMIT",
    ]


def test_root_routes_make_every_lab_range_unreachable() -> None:
    lines = network.root_route_lines()
    assert [line.split()[3] for line in lines] == list(network.LAB_RANGES)
    for line in lines:
        assert line.startswith("route replace unreachable ")
        assert f"proto {network.LAB_ROUTE_PROTO}" in line
    for addr in ("10.244.1.5", "10.244.2.9", "10.96.0.10", "10.96.0.1", "10.250.0.11"):
        assert any(
            ipaddress.ip_address(addr) in ipaddress.IPv4Network(line.split()[3]) for line in lines
        ), addr
    assert not any("169.254" in line for line in lines)


# `ip -4 -j route show table all` of a lab host, plus routes another network owner would add.
HOST_ROUTES: list[dict[str, object]] = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "flags": []},
    {"dst": "10.250.0.0/24", "dev": "nlab-root", "protocol": "kernel", "flags": []},
    {"type": "unreachable", "dst": "10.244.0.0/16", "protocol": "214", "flags": []},
    {"type": "unreachable", "dst": "10.96.0.0/16", "protocol": "214", "flags": []},
    {"type": "local", "dst": "10.250.0.1", "dev": "nlab-root", "table": "local", "flags": []},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "flags": []},
    {"type": "local", "dst": "192.0.2.2", "dev": "eth0", "table": "local", "flags": []},
]


def test_foreign_routes_ignore_the_lab_and_the_default_route() -> None:
    assert network.foreign_routes(HOST_ROUTES) == []


@pytest.mark.parametrize(
    ("route", "shown"),
    [
        ({"dst": "10.244.5.0/24", "dev": "flannel.1"}, "unicast 10.244.5.0/24 dev flannel.1"),
        ({"dst": "10.0.0.0/8", "dev": "tun0"}, "unicast 10.0.0.0/8 dev tun0"),
        ({"type": "local", "dst": "10.96.0.5", "dev": "eth1", "table": "local"},
         "local 10.96.0.5 dev eth1 table local"),
        ({"type": "blackhole", "dst": "10.250.0.0/24"}, "blackhole 10.250.0.0/24"),
        ({"type": "unreachable", "dst": "10.244.0.0/16", "protocol": "static"},
         "unreachable 10.244.0.0/16"),
    ],
)
def test_foreign_routes_in_lab_ranges_are_reported(route: dict[str, object], shown: str) -> None:
    assert network.foreign_routes([*HOST_ROUTES, route]) == [shown]


def test_foreign_routes_outside_lab_ranges_are_fine() -> None:
    others: list[dict[str, object]] = [
        {"dst": "172.17.0.0/16", "dev": "docker0"},
        {"dst": "10.245.0.0/16", "dev": "x"},
    ]
    assert network.foreign_routes([*HOST_ROUTES, *others]) == []


def test_node_nat_dnats_dns_only_when_a_target_exists() -> None:
    assert network.node_nat_rules(N1, None)[network.NODE_NAT_DNS] == []
    dnat = network.node_nat_rules(N1, "10.244.2.9")[network.NODE_NAT_DNS]
    assert [r[1] for r in dnat] == ["udp", "tcp"]
    assert all(r[-1] == "10.244.2.9:53" for r in dnat)


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/dev/termination-log", True),
        ("/tmp/msg", True),
        ("/etc/passwd", False),
        ("/dev/../etc/x", False),
        ("rel", False),
    ],
)
def test_termination_paths_stay_inside_private_mounts(path: str, ok: bool) -> None:
    assert network.termination_path_supported(path) is ok


def test_pod_exec_argv_execs_the_container_process_last() -> None:
    argv = network.pod_exec_argv("netiso-pod-x", ["sh", "-c", "true"], hostname="p", workdir="/w")
    assert argv[:4] == [network.IP, "netns", "exec", "netiso-pod-x"]
    setpriv = network.setpriv_argv()
    assert argv[-3 - len(setpriv):] == [*setpriv, "sh", "-c", "true"]
    cut = argv[: -3 - len(setpriv)]
    assert cut[-6:] == ["p", "", "", "/w", "", ""]
    # The launch pipe: the init closes that fd just before its exec (the agent's "running").
    launched = network.with_launch_fd(argv, 7)
    assert launched[: -3 - len(setpriv)][-6:] == ["p", "", "", "/w", "", "7"]
    init = argv[argv.index("-c") + 1]
    assert init.rstrip().splitlines()[-1] == 'exec "$@"'
    # With its own root view, a first stage builds it and re-runs the same init inside it.
    rooted = network.pod_exec_argv("netiso-pod-x", ["true"], mounts="nlab_mkdir /x",
                                   new_root="/var/tmp/r")
    at = rooted.index("-c")
    assert rooted[at + 2:at + 4] == ["root-init", "/var/tmp/r"]
    assert rooted[at + 4] == init
    assert rooted[-2 - len(setpriv):] == ["", *setpriv, "true"]
    assert rooted[-3 - len(setpriv)] == "nlab_mkdir /x"


def test_privileged_gets_net_admin_and_nothing_that_leaves_the_lab() -> None:
    assert network.container_caps(None) == network.CONTAINER_CAPS
    privileged = network.container_caps({"privileged": True})
    assert set(privileged) == set(network.CONTAINER_CAPS) | {"net_admin"}
    added = network.container_caps({"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN",
                                                             "CAP_SYS_MODULE", "NET_RAW"]}})
    assert "net_admin" in added and "sys_admin" not in added and "sys_module" not in added
    assert network.container_caps({"capabilities": {"drop": ["ALL"]}}) == ()
    assert network.container_caps({"capabilities": {"drop": ["ALL"],
                                                    "add": ["NET_BIND_SERVICE"]}}) == (
        "net_bind_service",)
    dropped = network.container_caps({"capabilities": {"drop": ["KILL"]}})
    assert "kill" not in dropped and "chown" in dropped
    for caps in (privileged, added):
        bounding = network.setpriv_argv(caps)[4]
        assert bounding.startswith("--bounding-set=-all,") and "+sys_admin" not in bounding


def test_containers_lose_every_capability_that_reaches_beyond_the_pod() -> None:
    argv = network.setpriv_argv()
    assert argv[0] == network.SETPRIV and argv[-1] == "--"
    assert "--nnp" in argv and "--inh-caps=-all" in argv and "--ambient-caps=-all" in argv
    bounding = next(a for a in argv if a.startswith("--bounding-set="))
    kept = bounding.split("=", 1)[1].split(",")
    assert kept[0] == "-all"
    kept_caps = {c.lstrip("+") for c in kept[1:]}
    assert kept_caps == set(network.CONTAINER_CAPS)
    for escape in ("sys_admin", "net_admin", "sys_ptrace", "sys_module", "mknod", "setfcap",
                   "dac_read_search", "sys_rawio", "bpf", "sys_boot", "sys_time"):
        assert escape not in kept_caps
    # dnsmasq binds :53, ping needs raw sockets; nothing else a lab image runs needs more.
    assert {"net_bind_service", "net_raw"} <= kept_caps


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", ("docker.io/library/busybox", "latest")),
        ("busybox:1.36", ("docker.io/library/busybox", "1.36")),
        ("library/alpine:3", ("docker.io/library/alpine", "3")),
        ("registry.k8s.io/pause:3.10", ("registry.k8s.io/pause", "3.10")),
        ("localhost:5000/x/y", ("localhost:5000/x/y", "latest")),
        ("busybox@sha256:abc", ("docker.io/library/busybox", "@sha256:abc")),
    ],
)
def test_image_reference_normalisation(ref: str, expected: tuple[str, str]) -> None:
    assert images.normalize(ref) == expected


@pytest.mark.skipif(not Path(images.BUSYBOX).exists(), reason="busybox-static not installed")
def test_busybox_images_run_busybox_with_kubernetes_command_rules(tmp_path: Path) -> None:
    img = images.resolve("registry.k8s.io/e2e-test-images/busybox:1.36.1-1", tmp_path)
    sh = f"{img.applet_dir}/sh"
    # Bare names are resolved on the image PATH (as a runtime does); absolute /bin/<applet> too.
    assert img.argv(None, None) == [sh]
    assert img.argv(["sleep"], ["1"]) == [f"{img.applet_dir}/sleep", "1"]
    assert img.argv(None, ["-c", "true"]) == ["-c", "true"]  # args alone replace CMD, no entrypoint
    assert img.argv(["/bin/sh", "-c", "x"], None)[0] == sh
    assert img.argv(["/opt/tool"], None)[0] == "/opt/tool"
    assert img.path.startswith(img.applet_dir + ":")


def test_unknown_images_fail_with_a_specific_message(tmp_path: Path) -> None:
    with pytest.raises(
        images.ImageNotFound, match=r'"docker.io/library/nginx:1.25".*no local program'
    ):
        images.resolve("nginx:1.25", tmp_path)
    with pytest.raises(images.ImageNotFound):
        images.resolve("registry.k8s.io/coredns/coredns:v1.11.1", tmp_path)


@pytest.mark.skipif(not Path(images.BUSYBOX).exists(), reason="busybox-static not installed")
def test_wget_shim_turns_timeout_flag_into_busybox_timeout(tmp_path: Path) -> None:
    applet_dir, _ = images.ensure_applet_dir(tmp_path)
    shim = Path(applet_dir) / "wget"
    # Replace the real wget call with echo by running the shim text with a fake busybox on PATH.
    text = shim.read_text().replace(images.image_busybox(), "echo").replace("/bin/busybox", "echo")
    fake = tmp_path / "fake-wget"
    fake.write_text(text.replace("#!echo sh", "#!/bin/busybox sh"))
    fake.chmod(0o755)
    out = subprocess.run(
        [str(fake), "-qO-", "-T", "3", "http://x/"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["timeout", "3", "echo", "wget", "-qO-", "http://x/"]
    out = subprocess.run(
        [str(fake), "-T5", "http://x/"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[:2] == ["timeout", "5"]
    out = subprocess.run([str(fake), "http://x/"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["wget", "http://x/"]


@pytest.mark.skipif(shutil.which(images.DNSMASQ) is None, reason="dnsmasq-base not installed")
def test_dns_image_serves_the_agent_hosts_dir(tmp_path: Path) -> None:
    img = images.resolve("netiso.lab/dnsmasq:2.90", tmp_path)
    argv = img.argv(None, None)
    assert argv[0] == images.DNSMASQ
    assert f"--hostsdir={images.dns_hosts_dir(tmp_path)}" in argv
    assert "--no-resolv" in argv and "--local=/cluster.local/" in argv


# ---------------------------------------------------------------- metadata host


def test_metadata_answers_like_the_clouds() -> None:
    assert (
        metadata_server.answer("GET", "/latest/meta-data/instance-id", {})[2]
        == metadata_server.INSTANCE_ID
    )
    assert metadata_server.answer("GET", "/computeMetadata/v1/instance/id", {})[0] == 403
    assert (
        metadata_server.answer(
            "GET", "/computeMetadata/v1/instance/id", {"metadata-flavor": "Google"}
        )[0]
        == 200
    )
    assert metadata_server.answer("GET", "/metadata/instance", {"metadata": "true"})[0] == 200
    assert metadata_server.answer("GET", "/nope", {})[0] == 404
    assert metadata_server.answer("PUT", "/latest/api/token", {})[0] == 200


# ---------------------------------------------------------------- DNS names


def test_render_hosts_names_services_headless_members_and_pods() -> None:
    services = {
        ("default", "kubernetes"): {"spec": {"clusterIP": "10.96.0.1", "selector": {}}},
        ("team", "web"): {"spec": {"clusterIP": "10.96.3.4", "selector": {"app": "web"}}},
        ("team", "db"): {"spec": {"clusterIP": "None", "selector": {"app": "db"}}},
    }
    pods = {
        "u1": {
            "ns": "team",
            "ip": "10.244.1.5",
            "labels": {"app": "db"},
            "ready": True,
            "hostname": "db-0",
            "subdomain": "db",
        },
        "u2": {
            "ns": "team",
            "ip": "10.244.1.6",
            "labels": {"app": "db"},
            "ready": False,
            "hostname": None,
            "subdomain": None,
        },
        "u3": {
            "ns": "other",
            "ip": "10.244.2.5",
            "labels": {"app": "db"},
            "ready": True,
            "hostname": None,
            "subdomain": None,
        },
    }
    lines = dns.render_hosts(services, pods).splitlines()
    assert "10.96.0.1 kubernetes.default.svc.cluster.local" in lines
    assert "10.96.3.4 web.team.svc.cluster.local" in lines
    assert "10.244.1.5 db.team.svc.cluster.local" in lines
    assert "10.244.1.5 db-0.db.team.svc.cluster.local" in lines
    assert "10.244.1.6 db.team.svc.cluster.local" not in lines  # not ready
    assert "10.244.2.5 db.team.svc.cluster.local" not in lines  # other namespace
    assert "10.244.2.5 10-244-2-5.other.pod.cluster.local" in lines


def test_dns_objects_match_the_contract() -> None:
    svc, pod = dns.bootstrap_objects()
    assert svc["spec"]["clusterIP"] == network.DNS_IP
    assert svc["spec"]["selector"] == pod["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    assert pod["metadata"]["namespace"] == svc["metadata"]["namespace"] == "kube-system"


# ---------------------------------------------------------------- node agent


@pytest.mark.parametrize(
    ("flavor", "provider", "label", "suffix"),
    [
        ("eks", "aws:///us-west-2a/i-0abc", "eks.amazonaws.com/nodegroup", "-eks-"),
        (
            "gke",
            "gce://netiso-lab/us-central1-a/gke-lab-default-pool-",
            "cloud.google.com/gke-nodepool",
            "-gke.",
        ),
        ("aks", "azure:///subscriptions/", "kubernetes.azure.com/cluster", ""),
    ],
)
def test_flavours_make_nodes_look_managed(
    flavor: str, provider: str, label: str, suffix: str
) -> None:
    node = node_agent.node_object(flavor, N1, 0, "v1.37.2")
    assert node["spec"]["providerID"].startswith(provider)
    assert label in node["metadata"]["labels"]
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.37.2" + suffix)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "lab-node-1"
    assert {"type": "InternalIP", "address": "10.250.0.11"} in node["status"]["addresses"]


def test_generic_nodes_have_no_provider() -> None:
    node = node_agent.node_object("generic", N1, 0, "v1.37.2")
    assert "providerID" not in node["spec"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    with pytest.raises(ValueError):
        node_agent.node_look("openshift", N1, 0, "v1")


def test_node_fits_selector_and_required_affinity() -> None:
    labels = {"kubernetes.io/hostname": "lab-node-2", "zone": "b"}
    assert node_agent.node_fits({"spec": {}}, "lab-node-2", labels)
    assert not node_agent.node_fits({"spec": {"nodeSelector": {"zone": "a"}}}, "lab-node-2", labels)
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["lab-node-2"]}
                        ]
                    },
                ]
            }
        }
    }
    assert node_agent.node_fits({"spec": {"affinity": affinity}}, "lab-node-2", labels)
    assert not node_agent.node_fits({"spec": {"affinity": affinity}}, "lab-node-1", {"zone": "b"})


def test_back_off_and_exit_codes_follow_kubelet() -> None:
    assert [node_agent.backoff_delay(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert node_agent.exit_code_of(-15) == 143 and node_agent.exit_code_of(3) == 3
    assert node_agent.restart_wanted("OnFailure", 1) and not node_agent.restart_wanted(
        "OnFailure", 0
    )
    assert node_agent.restart_wanted("Always", 0) and not node_agent.restart_wanted("Never", 1)


@pytest.mark.parametrize(
    ("policy", "rows", "phase"),
    [
        ("Never", [(True, False, 0)], "Succeeded"),
        ("Never", [(True, False, 0), (True, False, 1)], "Failed"),
        ("Never", [(True, True, None), (True, False, 1)], "Running"),
        ("OnFailure", [(True, False, 0)], "Succeeded"),
        ("Always", [(True, False, 0)], "Running"),
        ("Always", [(False, False, None)], "Pending"),
    ],
)
def test_pod_phase(policy: str, rows: list[tuple[bool, bool, int | None]], phase: str) -> None:
    assert node_agent.pod_phase(policy, rows) == phase


def test_ip_allocator_skips_gateway_and_does_not_reuse_at_once() -> None:
    alloc = node_agent.IPAllocator("10.244.1.0/29", "10.244.1.1")
    first = alloc.allocate()
    assert first == "10.244.1.2"
    alloc.release(first)
    assert alloc.allocate() == "10.244.1.3"
    assert not alloc.reserve("10.244.1.3") and alloc.reserve("10.244.1.6")
    for _ in range(3):
        alloc.allocate()
    with pytest.raises(RuntimeError):
        alloc.allocate()


def test_env_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "x"}
    assert node_agent._expand("$(A)-y", env) == "x-y"
    assert node_agent._expand("$$(A)", env) == "$(A)"
    assert node_agent._expand("$(MISSING)", env) == "$(MISSING)"


def test_tail_of_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    tail = node_agent.tail_of(log)
    assert tail.endswith("line 199") and "line 119" not in tail and "line 120" in tail


def _worker(tmp_path: Path, policy: str, statuses: list[dict[str, object]]) -> node_agent.PodWorker:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "00000000-aaaa-bbbb-cccc-000000000000"},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": s["name"], "image": "busybox"} for s in statuses],
        },
        "status": {"phase": "Running", "podIP": "10.244.1.9", "containerStatuses": statuses},
    }
    stub: Any = SimpleNamespace(state_dir=tmp_path)
    worker = node_agent.PodWorker(stub, pod, N1, adopted=True)
    node_agent.adopt(worker, pod)
    return worker


def test_adopting_after_an_agent_restart_keeps_history(tmp_path: Path) -> None:
    running = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    worker = _worker(
        tmp_path,
        "Always",
        [
            {"name": "a", "restartCount": 2, "state": running},
            {
                "name": "b",
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": done,
            },
        ],
    )
    a, b = worker.containers
    assert (a.restarts, a.runs, a.done, a.last_exit) == (2, 1, False, 137)
    assert "restarted" in a.last_state["terminated"]["message"]
    assert (b.restarts, b.runs, b.done) == (1, 1, False)


def test_adopting_a_never_pod_records_the_lost_process(tmp_path: Path) -> None:
    worker = _worker(
        tmp_path,
        "Never",
        [
            {"name": "a", "restartCount": 0, "state": {"running": {"startedAt": "x"}}},
            {"name": "b", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        ],
    )
    a, b = worker.containers
    assert a.done and a.state["terminated"]["exitCode"] == 137 and not a.last_state
    assert b.done and b.last_exit == 0
    worker.sandbox_ready = True
    assert worker._phase() == "Failed"  # the lost Never container counts as failed, honestly


def test_log_tail_lines() -> None:
    from tests.lab import kubelet_server

    assert kubelet_server.tail_lines(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert kubelet_server.tail_lines(b"a\nb", 0) == b""
    assert kubelet_server.tail_lines(b"a\nb", -1) == b"a\nb"


def test_a_failed_init_container_fails_a_never_pod(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "11111111-aaaa-bbbb-cccc-000000000000"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    stub: Any = SimpleNamespace(state_dir=tmp_path)
    worker = node_agent.PodWorker(stub, pod, N1, adopted=False)
    worker.sandbox_ready = True
    assert worker._phase() == "Pending"
    init = worker.init_containers[0]
    init.runs, init.last_exit, init.done = 1, 1, True
    assert worker._phase() == "Failed"


@pytest.mark.skipif(not Path(images.BUSYBOX).exists(), reason="busybox-static not installed")
def test_applet_dir_is_built_once_under_concurrency(tmp_path: Path) -> None:
    # Threads of one process (pod workers) and other processes (exec_in_pod) race on a fresh dir.
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        threads = list(pool.map(lambda _: images.ensure_applet_dir(tmp_path)[0], range(32)))
    ctx = multiprocessing.get_context("spawn")
    other = tmp_path / "procs"
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as procs:
        dirs = list(procs.map(images.ensure_applet_dir, [other] * 8))
    assert len(set(threads)) == 1 and len({d for d, _ in dirs}) == 1
    for applet_dir in (threads[0], dirs[0][0]):
        names = {p.name for p in Path(applet_dir).iterdir()}
        assert names == set(dirs[0][1]) | {"wget"}
        assert sorted(p.name for p in Path(applet_dir).parent.iterdir()) == [".lock", "bin"]


@pytest.mark.skipif(not Path(images.BUSYBOX).exists(), reason="busybox-static not installed")
def test_applet_dir_left_half_built_by_a_crash_is_completed(tmp_path: Path) -> None:
    first, applets = images.ensure_applet_dir(tmp_path)
    (Path(first) / "wget").unlink()
    (Path(first) / "sh").unlink()
    (Path(first).parent / ".bin-new-x").mkdir()  # a staging dir of a builder that died
    again, _ = images.ensure_applet_dir(tmp_path)
    assert again == first
    assert {p.name for p in Path(again).iterdir()} == set(applets) | {"wget"}
    assert sorted(p.name for p in Path(again).parent.iterdir()) == [".lock", "bin"]
    # Idempotent: a complete dir is reused untouched (an agent restart).
    inode = Path(again).stat().st_ino
    assert images.ensure_applet_dir(tmp_path)[0] == again and Path(again).stat().st_ino == inode


def test_eni_veth_names_are_what_the_vpc_cni_computes() -> None:
    name = network.eni_veth_name("default", "web-0")
    assert name.startswith("eni") and len(name) == 14
    assert name == "eni" + hashlib.sha1(b"default.web-0").hexdigest()[:11]
