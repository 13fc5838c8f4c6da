"""The lab's network: fabric, node and pod namespaces, the metadata host, safety rules, teardown.

Topology (tests/lab/README.md describes the whole lab):

    root ns  nlab-root 10.250.0.1/24 ──┐
                                       │ br0 in netns netiso-fabric (10.250.0.0/24)
    netiso-node-N eth0 10.250.0.1N ────┤   ip_forward=1, /32 route per local pod,
    netiso-meta   eth0 10.250.0.254 ───┤   other nodes' pod CIDRs via their fabric IP
                  lo 169.254.169.254, 169.254.170.23 (HTTP :80, metadata_server.py)
    netiso-egress eth0 10.250.0.2 ─────┘   the API server's CONNECT proxy (egress_proxy.py)
    netiso-pod-<uid8> eth0 <pod IP>/32 ── veth ── node netns (routed, no bridge, like Calico)

Design decisions:
- Pods are routed, not bridged: the node netns holds a /32 route per pod and the pod CIDR's first
  address (the pod gateway) on its loopback. Linux answers ARP for any local address on any
  interface (arp_ignore=0), so the pod's `via <gateway> onlink` routes resolve without proxy-ARP.
  kube-router then sees every pod packet in the node netns' FORWARD chain, as in a real cluster.
- Pods get routes ONLY to the lab ranges and no default route, so "cannot reach the internet" is a
  routing fact, not a firewall rule that enforcement tests could accidentally flush.
- The root namespace has no path to pods or Services: `up` adds `unreachable` routes (protocol
  LAB_ROUTE_PROTO, so they are recognisably ours) for the pod and Service CIDRs, and for the fabric
  /24 under its connected route, so a root process dialling a pod or ClusterIP fails at once
  instead of leaking the packet to the uplink's default gateway. Pods reach the API server
  (10.250.0.1) through a MASQUERADE in their node netns, because root has no route back. The
  API server reaches pods and kubelets (aggregated APIs, kubelet logs) only through its egress
  selector: HTTP CONNECT over a Unix socket to egress_proxy.py in `netiso-egress`, a fabric
  host that dials the pod and fabric ranges and nothing else.
  169.254.x.x gets nothing in root: the host may use 169.254.169.254 for its own cloud metadata,
  and the lab's link-local addresses live only in the meta and node namespaces.
- `up` refuses to start when the host already routes any lab range (another cluster, a VPN): the
  lab's routes would shadow the host's.
- The cluster DNS Service (10.96.0.10) works through a DNAT in each node netns' nat table to the
  DNS pod's IP: a kube-proxy stand-in for that single Service, so kube-router's filter rules see the
  DNS pod's IP after translation exactly like with kube-proxy. 10.96.0.1:443 is DNATed to the API
  server the same way.
- Safety in root, scoped to the lab so the host's own traffic is left to the host's rules (RETURN,
  never ACCEPT, for anything not the lab's): NETISO-LAB-FWD (FORWARD) drops anything entering or
  leaving a lab interface; NETISO-LAB-IN (INPUT) lets only tcp/6443 (and replies) in from
  nlab-root and keeps non-lab interfaces off 10.250.0.1; NETISO-LAB-OUT (OUTPUT) rejects lab
  destinations leaving through any interface but loopback and the lab's (a second line behind the
  routes). Each chain is written with one `iptables-restore --noflush`, so a re-run of `up` never
  leaves it empty for a moment. IPv6 address generation is off on every lab link so nothing is
  reachable by link-local address.
- Containers run without the capabilities that reach beyond their pod (CAP_SYS_ADMIN,
  CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_MKNOD...; see CONTAINER_CAPS): no setns into the host's
  namespaces, no route or iptables changes, no mounts. They still run as uid 0 on the host's
  filesystem, which is the lab's remaining trust assumption (pods run the tests' own commands).
- Teardown finds what to remove by name (netiso-*, nlab*, NETISO-LAB-*, routes of protocol
  LAB_ROUTE_PROTO) and finds processes both via `ip netns pids` and via the NETISO_LAB_PROCESS
  environment marker every lab child carries, so it also works after a crash when a netns is
  already gone but a process still runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

API_IP = "10.250.0.1"
API_PORT = 6443
DNS_IP = "10.96.0.10"
KUBERNETES_SERVICE_IP = "10.96.0.1"
NODE_LOCAL_DNS_IP = "169.254.20.10"
FABRIC_CIDR = "10.250.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
META_HOST_IP = "10.250.0.254"
EGRESS_HOST_IP = "10.250.0.2"
METADATA_IPS = ("169.254.169.254", "169.254.170.23")
POD_ROUTES = (
    CLUSTER_CIDR,
    SERVICE_CIDR,
    FABRIC_CIDR,
    "169.254.169.254/32",
    "169.254.170.23/32",
    f"{NODE_LOCAL_DNS_IP}/32",
)
# What root must never send to an uplink: everything the lab numbers (pods, Services, fabric).
# 169.254.x.x is deliberately absent: in root it is the host's (cloud metadata, link-local).
LAB_RANGES = (FABRIC_CIDR, CLUSTER_CIDR, SERVICE_CIDR)
# Marks the lab's root routes: `down`/`leftovers` find them by it, and the conflict check tells
# them from the host's. Any number unused by /etc/iproute2/rt_protos would do.
LAB_ROUTE_PROTO = "214"
# Below any connected route (metric 0): for the fabric /24 the `unreachable` route only takes over
# while nlab-root is missing, e.g. halfway through `up` or `down`.
LAB_ROUTE_METRIC = "4242"

FABRIC_NS = "netiso-fabric"
META_NS = "netiso-meta"
EGRESS_NS = "netiso-egress"
NETNS_PREFIX = "netiso-"
POD_NS_PREFIX = "netiso-pod-"
ROOT_LINK = "nlab-root"
LINK_PREFIX = "nlab"
BRIDGE = "br0"
FWD_CHAIN = "NETISO-LAB-FWD"
IN_CHAIN = "NETISO-LAB-IN"
OUT_CHAIN = "NETISO-LAB-OUT"
ROOT_HOOKS = {FWD_CHAIN: "FORWARD", IN_CHAIN: "INPUT", OUT_CHAIN: "OUTPUT"}
CHAIN_PREFIX = "NETISO-LAB-"
NODE_NAT_PRE = "NLAB-PREROUTING"
NODE_NAT_POST = "NLAB-POSTROUTING"
NODE_NAT_OUT = "NLAB-OUTPUT"
NODE_NAT_DNS = "NLAB-DNS"
PROCESS_MARKER = "NETISO_LAB_PROCESS"
NETNS_ETC = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
# Absolute paths: container environments put busybox's own `ip` and `nsenter` first on PATH.
IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/bin/ip"
NSENTER = shutil.which("nsenter", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/bin/nsenter"
SETPRIV = shutil.which("setpriv", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/bin/setpriv"
# The capability bounding set of every container process (and of `exec_in_pod`): the container
# runtimes' default set minus MKNOD (no device cgroup here: a block device node would be the
# host's disk), SETFCAP (file capabilities on the host's files) and AUDIT_WRITE (the host's audit
# log). Everything that reaches beyond the pod is gone: SYS_ADMIN (setns, mount, unshare), NET_ADMIN
# (routes, iptables, even in the pod's own netns), SYS_PTRACE, SYS_MODULE, ... NET_BIND_SERVICE and
# NET_RAW stay for servers on low ports (dnsmasq on :53) and ping, as in a real pod.
CONTAINER_CAPS = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "net_raw", "sys_chroot",
)


# What a container may have beyond CONTAINER_CAPS when its securityContext asks for it
# (`privileged: true` or `capabilities.add`): a hostNetwork CNI or policy agent (calico-node's
# felix) programs routes, iptables and ipsets, which in the lab are its node netns' own. Never
# SYS_ADMIN (setns into the host's namespaces, mounts), SYS_MODULE, SYS_PTRACE, SYS_RAWIO, MKNOD,
# BPF...: those reach beyond the lab's namespaces, so no pod gets them, privileged or not.
GRANTABLE_CAPS = ("net_admin", "net_raw", "ipc_lock", "sys_resource")


def container_caps(security_context: dict[str, object] | None) -> tuple[str, ...]:
    """The capability set of a container: the runtime default (CONTAINER_CAPS) with its
    securityContext's drop/add applied, additions limited to GRANTABLE_CAPS; `privileged` adds
    NET_ADMIN (the part of "privileged" the lab can give without leaving its namespaces)."""
    ctx = security_context or {}
    caps_spec = ctx.get("capabilities") if isinstance(ctx.get("capabilities"), dict) else {}
    assert isinstance(caps_spec, dict)

    def names(key: str) -> set[str]:
        raw = caps_spec.get(key) or []
        out = {str(c).lower().removeprefix("cap_") for c in raw if isinstance(raw, list)}
        return out

    caps = set(CONTAINER_CAPS)
    drop = names("drop")
    caps = set() if "all" in drop else caps - drop
    add = names("add")
    if ctx.get("privileged") is True:
        add |= {"net_admin", "net_raw"}
    caps |= add & (set(CONTAINER_CAPS) | set(GRANTABLE_CAPS))
    order = dict.fromkeys((*CONTAINER_CAPS, *GRANTABLE_CAPS))
    return tuple(c for c in order if c in caps)


class LabNetworkError(RuntimeError):
    """A plumbing command failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    netns: str
    ip: str
    pod_cidr: str

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        """`lab-node-1:netiso-node-1:10.250.0.11:10.244.1.0/24` (the node agent's --node)."""
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"--node wants name:netns:ip:podcidr, got {text!r}")
        name, netns, ip, cidr = parts
        ipaddress.IPv4Address(ip)
        ipaddress.IPv4Network(cidr)
        if not netns.startswith(NETNS_PREFIX):
            raise ValueError(f"node netns must start with {NETNS_PREFIX!r}: {netns!r}")
        return cls(name, netns, ip, cidr)

    def __str__(self) -> str:
        return f"{self.name}:{self.netns}:{self.ip}:{self.pod_cidr}"

    @property
    def gateway(self) -> str:
        """The pod gateway: the pod CIDR's first address, held on the node netns' loopback."""
        return str(next(ipaddress.IPv4Network(self.pod_cidr).hosts()))


def default_nodes() -> list[NodeSpec]:
    return [
        NodeSpec("lab-node-1", "netiso-node-1", "10.250.0.11", "10.244.1.0/24"),
        NodeSpec("lab-node-2", "netiso-node-2", "10.250.0.12", "10.244.2.0/24"),
    ]


def state_dir() -> Path:
    return Path(os.environ.get("NETISO_LAB_DIR", "/var/tmp/netiso-lab"))


# ---------------------------------------------------------------- pure helpers (unit-tested)


def pod_netns_name(uid: str) -> str:
    """Deterministic netns name for a pod: the agent also annotates pods with it."""
    return POD_NS_PREFIX + uid.replace("-", "")[:8]


def pod_host_veth(uid: str) -> str:
    """Node-side veth name (<= 15 chars, the kernel's IFNAMSIZ limit)."""
    return LINK_PREFIX + uid.replace("-", "")[:11]


def eni_veth_name(namespace: str, pod: str) -> str:
    """The host-side veth name the AWS VPC CNI gives a pod: `eni` + sha1("<ns>.<pod>")[:11].

    Calico on EKS runs with FELIX_INTERFACEPREFIX=eni and finds pod interfaces by this very name,
    so an EKS-flavoured lab names its veths the same way (15 chars, IFNAMSIZ-1).
    """
    return "eni" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def fabric_port(ip: str) -> str:
    return "v" + ip.rsplit(".", 1)[-1]


def node_routes(node: NodeSpec, nodes: Sequence[NodeSpec]) -> list[tuple[str, str]]:
    """(destination, via) routes a node netns needs beyond its connected fabric /24."""
    routes = [(other.pod_cidr, other.ip) for other in nodes if other.name != node.name]
    routes += [(f"{ip}/32", META_HOST_IP) for ip in METADATA_IPS]
    # The node's own processes (hostNetwork pods) dialling the two ClusterIPs the lab serves:
    # connect() needs a route before nat OUTPUT can DNAT. Only those two: any other ClusterIP
    # keeps failing at once ("Network is unreachable"), as before.
    routes += [(f"{ip}/32", API_IP) for ip in (KUBERNETES_SERVICE_IP, DNS_IP)]
    return routes


def pod_route_lines(ip: str, gateway: str) -> list[str]:
    """`ip -batch` lines run inside a new pod netns."""
    lines = [
        "link set lo up",
        "link set eth0 addrgenmode none",
        f"addr add {ip}/32 dev eth0",
        "link set eth0 up",
        f"route add {gateway}/32 dev eth0 scope link src {ip}",
    ]
    lines += [f"route add {dst} via {gateway} dev eth0 onlink src {ip}" for dst in POD_ROUTES]
    return lines


def resolv_conf(
    namespace: str,
    dns_policy: str | None,
    dns_config: dict[str, object] | None,
    host_network: bool = False,
) -> str:
    """Kubelet's resolv.conf rules, with the host resolver replaced by nothing (lab safety).

    `dnsConfig.nameservers` outside the lab's ranges are left out: a pod could not reach them
    anyway (it has routes only to the lab), and a resolver that silently times out is a worse
    failure than a missing one. Anything that is not an IPv4 address is left out too.
    """
    policy = dns_policy or "ClusterFirst"
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        nameservers = [DNS_IP]
        searches = [f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        options = ["ndots:5"]
    cfg = dns_config or {}
    nameservers += [str(s) for s in _as_list(cfg.get("nameservers")) if lab_address(str(s))]
    searches += [str(s) for s in _as_list(cfg.get("searches"))]
    for opt in _as_list(cfg.get("options")):
        if isinstance(opt, dict) and opt.get("name"):
            value = opt.get("value")
            options.append(
                f"{opt['name']}:{value}" if value not in (None, "") else str(opt["name"])
            )
    lines = [f"nameserver {ns}" for ns in nameservers[:3]]
    if searches:
        lines.insert(0, "search " + " ".join(dict.fromkeys(searches)))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + ("\n" if lines else "")


def lab_address(text: str) -> bool:
    """True for an IPv4 address a pod can reach: inside one of the ranges it has routes to."""
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return any(addr in ipaddress.IPv4Network(cidr) for cidr in POD_ROUTES)


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def hosts_file(ip: str, hostname: str, namespace: str, subdomain: str | None = None) -> str:
    fqdn = f"{hostname}.{subdomain}.{namespace}.svc.cluster.local" if subdomain else ""
    names = f"{fqdn}\t{hostname}" if fqdn else hostname
    return (
        "# Kubernetes-managed hosts file (netiso lab).\n"
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{ip}\t{names}\n"
    )


def root_safety_rules() -> dict[str, list[list[str]]]:
    """Rules of the lab's own root-namespace chains (filter table), keyed by chain.

    Every rule is scoped to a lab interface or a lab address, and a chain's end returns to the
    host's own rules: the host's traffic (its loopback, its forwarding) is none of the lab's
    business, and an ACCEPT here would skip the host's later rules for it.
    """
    lab_if = f"{LINK_PREFIX}+"
    fwd = [["-i", lab_if, "-j", "DROP"], ["-o", lab_if, "-j", "DROP"]]
    inp = [
        # Root's own connections to the API address run over lo: the host's rules decide.
        ["-i", "lo", "-j", "RETURN"],
        [
            "-i",
            ROOT_LINK,
            "-d",
            f"{API_IP}/32",
            "-p",
            "tcp",
            "--dport",
            str(API_PORT),
            "-j",
            "ACCEPT",
        ],
        # Replies to root's own connections into the lab (the API server dialling a kubelet).
        ["-i", ROOT_LINK, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", ROOT_LINK, "-j", "DROP"],
        # Linux accepts a packet for any local address on any interface: keep the uplink off it.
        ["-d", f"{API_IP}/32", "-j", "DROP"],
    ]
    out: list[list[str]] = [["-o", "lo", "-j", "RETURN"], ["-o", lab_if, "-j", "RETURN"]]
    out += [
        ["-d", cidr, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"]
        for cidr in LAB_RANGES
    ]
    return {FWD_CHAIN: fwd, IN_CHAIN: inp, OUT_CHAIN: out}


def chain_restore_text(
    table: str, chains: dict[str, list[list[str]]], hooks: dict[str, str]
) -> str:
    """`iptables-restore --noflush` input that rewrites our chains in one transaction.

    Declaring an existing chain flushes it inside the same commit that refills it, so a re-run of
    `up` never opens a window with an empty safety chain. `hooks` (chain -> built-in chain) lists
    only the jumps still missing; they go first in their built-in chain.
    """
    lines = [f"*{table}"]
    lines += [f":{chain} - [0:0]" for chain in chains]
    for chain, rules in chains.items():
        lines += [" ".join(["-A", chain, *rule]) for rule in rules]
    lines += [f"-I {hook} 1 -j {chain}" for chain, hook in hooks.items()]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def root_route_lines() -> list[str]:
    """`ip -batch` lines for the root namespace: lab ranges are unreachable, never the uplink."""
    return [
        f"route replace unreachable {cidr} proto {LAB_ROUTE_PROTO} metric {LAB_ROUTE_METRIC}"
        for cidr in LAB_RANGES
    ]


def is_lab_route(route: dict[str, object]) -> bool:
    """A root route the lab made: ours by protocol, or connected to the lab's own link."""
    if route.get("dev") == ROOT_LINK:
        return True
    return route.get("type") == "unreachable" and str(route.get("protocol")) == LAB_ROUTE_PROTO


def foreign_routes(routes: Iterable[dict[str, object]]) -> list[str]:
    """Host routes (`ip -4 -j route show table all` entries) overlapping a lab range.

    Any of them means the host already uses that range (another cluster's pod network, a VPN):
    the lab's routes would shadow it, so `up` refuses. Default routes overlap everything and are
    what the lab's routes are meant to beat, so they do not count.
    """
    lab = [ipaddress.IPv4Network(cidr) for cidr in LAB_RANGES]
    found = []
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst in ("", "default") or is_lab_route(route):
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.prefixlen == 0:
            continue
        if any(net.overlaps(x) for x in lab):
            where = f" dev {route['dev']}" if route.get("dev") else ""
            table = f" table {route['table']}" if route.get("table") else ""
            found.append(f"{route.get('type', 'unicast')} {dst}{where}{table}")
    return found


def node_nat_rules(node: NodeSpec, dns_target: str | None) -> dict[str, list[list[str]]]:
    """nat-table rules in a node netns: API access for pods, DNS and kubernetes Service DNATs."""
    pre = [
        [
            "-d",
            f"{KUBERNETES_SERVICE_IP}/32",
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            f"{API_IP}:{API_PORT}",
        ],
        ["-d", f"{DNS_IP}/32", "-j", NODE_NAT_DNS],
        ["-d", f"{NODE_LOCAL_DNS_IP}/32", "-j", NODE_NAT_DNS],
    ]
    post = [["-s", CLUSTER_CIDR, "-d", f"{API_IP}/32", "-j", "MASQUERADE"]]
    # The node's own processes (hostNetwork pods: the Tigera operator, calico-node) dial the
    # same ClusterIPs: locally generated packets take nat OUTPUT, not PREROUTING.
    out = [list(rule) for rule in pre]
    dns: list[list[str]] = []
    if dns_target:
        for proto in ("udp", "tcp"):
            dns.append(
                ["-p", proto, "--dport", "53", "-j", "DNAT", "--to-destination", f"{dns_target}:53"]
            )
    return {NODE_NAT_PRE: pre, NODE_NAT_OUT: out, NODE_NAT_POST: post, NODE_NAT_DNS: dns}


def pod_exec_argv(
    netns: str,
    argv: Sequence[str],
    *,
    hostname: str | None = None,
    termination: tuple[str, str] | None = None,
    workdir: str | None = None,
    mounts: str = "",
    new_root: str | None = None,
    caps: Sequence[str] = CONTAINER_CAPS,
) -> list[str]:
    """Argv that runs a container's process in its pod netns with a private mount+UTS namespace.

    `ip netns exec` gives a new mount namespace (binding /etc/netns/<ns>/resolv.conf and hosts);
    busybox `unshare -u` adds a UTS namespace for the pod hostname; the busybox shell then mounts a
    private /dev (minimal device nodes), /tmp and /run, and bind-mounts the container's host-side
    termination-message file at terminationMessagePath, so `echo msg > /dev/termination-log`
    works like in a real container and the agent can read it. `mounts` is the volume plan
    (volumes.mount_plan's script: nlab_* calls only, quoted), run next. With `new_root` (a
    lab-owned empty directory) the container first gets its own root view (a tmpfs of binds of
    `/`'s entries, moved onto `/` and chrooted into) so the plan can create top-level mount
    points without touching the host. Finally it execs the process through `setpriv`
    (capabilities cut to CONTAINER_CAPS: the init needs CAP_SYS_ADMIN for its mounts, the
    container must not have it), so the pid the agent holds is the container's own process.
    """
    src, dst = termination or ("", "")
    init = [_CONTAINER_INIT, "container-init", hostname or "", src, dst, workdir or "", mounts,
            ""]
    if new_root:
        init = [_ROOT_INIT, "root-init", new_root, *init]
    return [IP, "netns", "exec", netns, "/bin/busybox", "unshare", "-u", "/bin/busybox", "sh",
            "-c", *init, *setpriv_argv(caps), *argv]


# Shell helpers of the container init. Their variables are named __nlab_*: the container's
# environment is exported into this shell, so any other name could overwrite one of its variables
# and leak into the exec'd process.
_MOUNT_FUNCS = r"""
nlab_copy() {
  # $1: an entry of a directory being shadowed; $2: its place in the shadow tmpfs.
  if [ -L "$1" ]; then /bin/busybox ln -s "$(/bin/busybox readlink "$1")" "$2"
  elif [ -d "$1" ]; then /bin/busybox mkdir "$2" && /bin/busybox mount --rbind "$1" "$2"
  else : > "$2" && /bin/busybox mount --bind "$1" "$2"
  fi
}
nlab_shadow() {
  # $1 (not /) becomes a tmpfs holding binds of what it held: room for new mount points.
  /bin/busybox mkdir -p /dev/.nlab-shadow
  /bin/busybox mount -t tmpfs -o "mode=$(/bin/busybox stat -c %a "$1")" nlab-shadow \
    /dev/.nlab-shadow
  for __nlab_e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [ -e "$__nlab_e" ] || [ -L "$__nlab_e" ] || continue
    nlab_copy "$__nlab_e" "/dev/.nlab-shadow/${__nlab_e##*/}"
  done
  /bin/busybox mount --move /dev/.nlab-shadow "$1"
}
nlab_mkdir() { /bin/busybox mkdir -p "$1"; }
nlab_touch() { [ -e "$1" ] || : > "$1"; }
nlab_bind() {
  /bin/busybox mount --bind "$1" "$2"
  [ "$3" = rw ] || /bin/busybox mount -o remount,bind,ro "$2"
}
"""

# First stage when the container needs its own root: $1 a lab-owned empty directory, $2 the
# container init, the rest its arguments. The entry holding $1 is copied first, while $1 is still
# empty (its bind then shows an empty tmpfs, not a copy of the half-built root).
_ROOT_INIT = _MOUNT_FUNCS + r"""
set -e
/bin/busybox mount -t tmpfs -o mode=755 nlab-root "$1"
__nlab_top=${1#/}
__nlab_top=/${__nlab_top%%/*}
nlab_copy "$__nlab_top" "$1$__nlab_top"
for __nlab_e in /* /.[!.]* /..?*; do
  [ -e "$__nlab_e" ] || [ -L "$__nlab_e" ] || continue
  [ "$__nlab_e" != "$__nlab_top" ] || continue
  nlab_copy "$__nlab_e" "$1$__nlab_e"
done
cd "$1"
/bin/busybox mount --move "$1" /
shift
exec /bin/busybox chroot . /bin/busybox sh -c "$@"
"""

_CONTAINER_INIT = _MOUNT_FUNCS + r"""
set -e
[ -z "$1" ] || /bin/busybox hostname "$1"
/bin/busybox mount -t tmpfs -o mode=755,size=1m,nosuid nlab-dev /dev
cd /dev
/bin/busybox mknod -m 666 null c 1 3
/bin/busybox mknod -m 666 zero c 1 5
/bin/busybox mknod -m 666 full c 1 7
/bin/busybox mknod -m 666 random c 1 8
/bin/busybox mknod -m 666 urandom c 1 9
/bin/busybox mknod -m 666 tty c 5 0
/bin/busybox ln -s /proc/self/fd fd
/bin/busybox ln -s /proc/self/fd/0 stdin
/bin/busybox ln -s /proc/self/fd/1 stdout
/bin/busybox ln -s /proc/self/fd/2 stderr
/bin/busybox mkdir shm pts
/bin/busybox mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev shm /dev/shm
if [ -n "$2" ]; then
  # Bind the host file before /tmp is covered: its host path may itself be under /tmp.
  : > /dev/.nlab-termination
  /bin/busybox mount --bind "$2" /dev/.nlab-termination
fi
/bin/busybox mount -t tmpfs -o mode=1777,size=256m,nosuid,nodev tmp /tmp
/bin/busybox mount -t tmpfs -o mode=755,size=64m,nosuid,nodev run /run
if [ -n "$2" ]; then
  /bin/busybox mkdir -p "${3%/*}"
  : > "$3"
  /bin/busybox mount --bind /dev/.nlab-termination "$3"
fi
cd /
eval "$5"
cd "${4:-/}" 2>/dev/null || cd /
# Tell the agent the container is launched: close its pipe (fd number $6) right before the exec.
[ -z "$6" ] || eval "exec $6>&-"
shift 6
exec "$@"
"""


def with_launch_fd(argv: list[str], fd: int) -> list[str]:
    """pod_exec_argv's argv with the init told to close `fd` just before its exec."""
    at = argv.index(_CONTAINER_INIT)
    return [*argv[: at + 7], str(int(fd)), *argv[at + 8 :]]


def setpriv_argv(caps: Sequence[str] = CONTAINER_CAPS) -> list[str]:
    """The prefix that drops a process to `caps` (CONTAINER_CAPS by default, see
    container_caps) before it execs the given argv.

    The bounding set is what limits root: at exec a uid-0 process gets bounding-set capabilities
    only. Inheritable and ambient sets are cleared so nothing is passed on otherwise, and
    no_new_privs keeps setuid binaries and file capabilities from adding any back.
    """
    keep = "".join(f",+{cap}" for cap in caps)
    return [
        SETPRIV,
        "--nnp",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        f"--bounding-set=-all{keep}",
        "--",
    ]




def termination_path_supported(path: str) -> bool:
    """Paths the container init can map: under its private /dev or /tmp (never the host's fs)."""
    norm = os.path.normpath(path)
    return path.startswith("/") and norm.startswith(("/dev/", "/tmp/"))


# ---------------------------------------------------------------- command plumbing


def _run(
    argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), check=False, capture_output=True, text=True, input=input, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise LabNetworkError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    _run(argv, input="\n".join(lines) + "\n")


def _sysctl(netns: str, key: str, value: str) -> None:
    _run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}"])


def netns_exists(name: str) -> bool:
    return (RUN_NETNS / name).exists()


def list_netns(prefix: str = NETNS_PREFIX) -> list[str]:
    try:
        names = os.listdir(RUN_NETNS)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return _run(argv, check=False).returncode == 0


def _add_netns(name: str) -> None:
    if not netns_exists(name):
        _run(["ip", "netns", "add", name])
    _run(["ip", "-n", name, "link", "set", "lo", "up"])


def _iptables(
    args: Sequence[str], netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return _run([*prefix, "iptables", "-w", "5", *args], check=check)


def _ensure_chains(
    table: str,
    chains: dict[str, list[list[str]]],
    hooks: dict[str, str],
    netns: str | None = None,
) -> None:
    """(Re)write chains of our own in one transaction and hook each into its built-in chain once."""
    missing = {
        chain: hook
        for chain, hook in hooks.items()
        if _iptables(["-t", table, "-C", hook, "-j", chain], netns, check=False).returncode != 0
    }
    prefix = ["ip", "netns", "exec", netns] if netns else []
    _run(
        [*prefix, "iptables-restore", "-w", "5", "--noflush"],
        input=chain_restore_text(table, chains, missing),
    )


def root_routes() -> list[dict[str, object]]:
    """Every IPv4 route of the root namespace, all tables (`ip -j` objects)."""
    out = _run([IP, "-4", "-j", "route", "show", "table", "all"]).stdout
    routes = json.loads(out or "[]")
    return [r for r in routes if isinstance(r, dict)]


def lab_root_routes() -> list[str]:
    """The lab's `unreachable` routes still present in root (`down` removes them)."""
    out = _run(
        [IP, "-4", "route", "show", "table", "main", "proto", LAB_ROUTE_PROTO], check=False
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------- up


def up(nodes: Sequence[NodeSpec]) -> None:
    """Build (idempotently) fabric, root veth, node namespaces, metadata host and safety rules."""
    if os.geteuid() != 0:
        raise LabNetworkError("the lab network needs root (network namespaces, veths, iptables)")
    conflicts = foreign_routes(root_routes())
    if conflicts:
        raise LabNetworkError(
            f"this host already routes part of the lab's ranges ({', '.join(LAB_RANGES)}): "
            f"{'; '.join(conflicts)}. The lab's routes would shadow them; free those ranges "
            "or run the lab on another machine"
        )
    # Safety first, so nothing built below is ever reachable from or forwarded to an uplink.
    _ip_batch(root_route_lines())
    _ensure_chains("filter", root_safety_rules(), ROOT_HOOKS)

    _add_netns(FABRIC_NS)
    _sysctl(FABRIC_NS, "net.ipv6.conf.all.disable_ipv6", "1")
    _sysctl(FABRIC_NS, "net.ipv6.conf.default.disable_ipv6", "1")
    if not link_exists(BRIDGE, FABRIC_NS):
        _ip_batch(
            [
                f"link add {BRIDGE} type bridge",
                f"link set {BRIDGE} addrgenmode none",
                f"link set {BRIDGE} up",
            ],
            FABRIC_NS,
        )

    if not link_exists(ROOT_LINK):
        _run(
            [
                "ip",
                "link",
                "add",
                ROOT_LINK,
                "type",
                "veth",
                "peer",
                "name",
                "vroot",
                "netns",
                FABRIC_NS,
            ]
        )
    _run(["ip", "link", "set", ROOT_LINK, "addrgenmode", "none"])
    addrs = _run(["ip", "-br", "-4", "addr", "show", "dev", ROOT_LINK]).stdout
    if f"{API_IP}/24" not in addrs:
        _run(["ip", "addr", "add", f"{API_IP}/24", "dev", ROOT_LINK])
    _run(["ip", "link", "set", ROOT_LINK, "up"])
    _ip_batch([f"link set vroot master {BRIDGE}", "link set vroot up"], FABRIC_NS)

    for node in nodes:
        _up_node(node, nodes)
    _up_meta(nodes)
    _up_egress(nodes)


def _attach_to_fabric(netns: str, ip: str) -> None:
    port = fabric_port(ip)
    if not link_exists("eth0", netns):
        _run(
            [
                "ip",
                "link",
                "add",
                "name",
                "eth0",
                "netns",
                netns,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                FABRIC_NS,
            ]
        )
    _ip_batch(
        [
            f"link set {port} addrgenmode none",
            f"link set {port} master {BRIDGE}",
            f"link set {port} up",
        ],
        FABRIC_NS,
    )
    _ip_batch(
        ["link set eth0 addrgenmode none", f"addr replace {ip}/24 dev eth0", "link set eth0 up"],
        netns,
    )


def _up_node(node: NodeSpec, nodes: Sequence[NodeSpec]) -> None:
    _add_netns(node.netns)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
    ):
        _sysctl(node.netns, key, value)
    _attach_to_fabric(node.netns, node.ip)
    lines = [f"addr replace {node.gateway}/32 dev lo"]
    lines += [f"route replace {dst} via {via} dev eth0" for dst, via in node_routes(node, nodes)]
    _ip_batch(lines, node.netns)
    # An empty resolv.conf for anything run in the node netns (kube-router, hostNetwork pods):
    # otherwise `ip netns exec` would leave the host's resolver visible there.
    etc = NETNS_ETC / node.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("")
    current = dns_target(node)
    rules = node_nat_rules(node, current)
    _ensure_chains(
        "nat",
        rules,
        {NODE_NAT_PRE: "PREROUTING", NODE_NAT_OUT: "OUTPUT", NODE_NAT_POST: "POSTROUTING"},
        node.netns,
    )


def _up_fabric_host(netns: str, ip: str, nodes: Sequence[NodeSpec],
                    extra: Sequence[str] = ()) -> None:
    """A host namespace on the fabric with a route to every node's pod CIDR via that node."""
    _add_netns(netns)
    _sysctl(netns, "net.ipv6.conf.all.disable_ipv6", "1")
    _attach_to_fabric(netns, ip)
    lines = [*extra, *(f"route replace {n.pod_cidr} via {n.ip} dev eth0" for n in nodes)]
    _ip_batch(lines, netns)


def _up_meta(nodes: Sequence[NodeSpec]) -> None:
    _up_fabric_host(META_NS, META_HOST_IP, nodes,
                    [f"addr replace {ip}/32 dev lo" for ip in METADATA_IPS])
    args: list[str] = []
    for ip in (META_HOST_IP, *METADATA_IPS):
        args += ["--address", ip]
    _start_host_process("metadata", META_NS, "metadata_server.py", args)


def egress_socket() -> Path:
    """The Unix socket of the API server's egress proxy (egress_proxy.py)."""
    return state_dir() / "egress.sock"


def _up_egress(nodes: Sequence[NodeSpec]) -> None:
    # The control plane's host on the fabric (see egress_proxy.py).
    _up_fabric_host(EGRESS_NS, EGRESS_HOST_IP, nodes)
    args = ["--socket", str(egress_socket())]
    for cidr in (CLUSTER_CIDR, FABRIC_CIDR):
        args += ["--allow", cidr]
    _start_host_process("egress", EGRESS_NS, "egress_proxy.py", args)


def _start_host_process(role: str, netns: str, script: str, args: list[str]) -> None:
    """Start one of the lab's stdlib servers in ``netns`` (once); wait for its pidfile."""
    pidfile = state_dir() / f"{role}.pid"
    if _pid_alive(pidfile):
        return
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "logs").mkdir(exist_ok=True)
    server = Path(__file__).with_name(script)
    argv = ["ip", "netns", "exec", netns, sys.executable, "-I", str(server),
            "--pidfile", str(pidfile), *args]
    with open(state_dir() / "logs" / f"{role}.log", "ab") as log:
        subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=marked_env(role),
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _pid_alive(pidfile):
            return
        time.sleep(0.05)
    raise LabNetworkError(
        f"{role} server did not start; see {state_dir() / 'logs' / f'{role}.log'}"
    )


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def marked_env(role: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a lab child process: carries the marker `down()` uses to find it."""
    env = dict(os.environ if base is None else base)
    env[PROCESS_MARKER] = role
    return env


# ---------------------------------------------------------------- DNS service stand-in


def dns_target(node: NodeSpec) -> str | None:
    out = _iptables(["-t", "nat", "-S", NODE_NAT_DNS], node.netns, check=False).stdout
    for line in out.splitlines():
        if "--to-destination" in line:
            return line.split("--to-destination", 1)[1].split()[0].rsplit(":", 1)[0]
    return None


def set_dns_target(nodes: Sequence[NodeSpec], pod_ip: str | None) -> None:
    """Point 10.96.0.10:53 (and 169.254.20.10:53) at the DNS pod in every node netns."""
    for node in nodes:
        if not netns_exists(node.netns) or dns_target(node) == pod_ip:
            continue
        rules = node_nat_rules(node, pod_ip)[NODE_NAT_DNS]
        _ensure_chains("nat", {NODE_NAT_DNS: rules}, {}, node.netns)
        # Stale UDP conntrack entries would keep sending DNS to the previous pod for 30 s+.
        _run(
            [
                "ip",
                "netns",
                "exec",
                node.netns,
                "conntrack",
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                DNS_IP,
            ],
            check=False,
        )


# ---------------------------------------------------------------- pods


def create_pod_netns(
    node: NodeSpec,
    uid: str,
    ip: str,
    *,
    resolv: str = "",
    hosts: str = "",
    veth: str | None = None,
) -> str:
    """Create (or re-create) a pod's netns wired to its node netns; returns the netns name.

    `veth` names the node-side end (default pod_host_veth; the EKS flavour passes
    eni_veth_name). Its alias is the pod netns name, so orphan cleanup finds the pod netns from
    the node side whatever the naming scheme.
    """
    netns = pod_netns_name(uid)
    veth = veth or pod_host_veth(uid)
    etc = NETNS_ETC / netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(resolv)
    (etc / "hosts").write_text(hosts or hosts_file(ip, "localhost", "default"))
    if netns_exists(netns):
        _run(["ip", "netns", "del", netns])
    _run(["ip", "netns", "add", netns])
    if link_exists(veth, node.netns):
        _run(["ip", "-n", node.netns, "link", "del", veth], check=False)
    _run(
        [
            "ip",
            "-n",
            node.netns,
            "link",
            "add",
            "name",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns,
        ]
    )
    _ip_batch(pod_route_lines(ip, node.gateway), netns)
    _ip_batch(
        [
            f"link set {veth} addrgenmode none",
            f"link set dev {veth} alias {netns}",
            f"link set {veth} up",
            f"route replace {ip}/32 dev {veth} scope link",
        ],
        node.netns,
    )
    return netns


def pod_netns_on_node(node: NodeSpec) -> set[str]:
    """Names of existing pod netns whose veth ends in this node's netns (by the veth's alias)."""
    out = _run([IP, "-n", node.netns, "-j", "link", "show"], check=False).stdout
    found = set()
    for link in json.loads(out or "[]"):
        alias = str(link.get("ifalias") or "")
        if alias.startswith(POD_NS_PREFIX) and netns_exists(alias):
            found.add(alias)
    return found


def delete_pod_netns(netns: str, node: NodeSpec | None = None, ip: str | None = None) -> None:
    """Kill what is left in the pod netns, then remove it (its veth dies with it) and its /etc."""
    if not netns.startswith(POD_NS_PREFIX):
        raise ValueError(f"not a pod netns: {netns}")
    if netns_exists(netns):
        kill_pids(netns_pids(netns))
        _run(["ip", "netns", "del", netns], check=False)
    if node is not None and ip:
        _run(["ip", "-n", node.netns, "route", "del", f"{ip}/32"], check=False)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def find_container_pid(netns: str, uid: str | None = None) -> int | None:
    """The lowest-pid container process in a pod netns (they carry the container marker
    `container:<pod uid>:<name>`); `uid` picks one pod's among several (hostNetwork pods all
    share their node's netns)."""
    want = f"container:{uid}:" if uid else "container"
    found: list[int] = []
    for pid in netns_pids(netns):
        env = _environ(pid)
        if env.get(PROCESS_MARKER, "").startswith(want):
            found.append(pid)
    return min(found) if found else None


def exec_in_pod(
    netns: str,
    argv: Sequence[str],
    *,
    timeout: float = 30,
    input: str | None = None,
    env: dict[str, str] | None = None,
    pid: int | None = None,
    uid: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in a pod the way `kubectl exec` would: inside its network, mount and UTS namespace
    (via its running container), with the container's capabilities (CONTAINER_CAPS) and busybox
    applets first on PATH; falls back to the netns alone when no container process is running.
    Never raises on a non-zero exit; times out as given. `pid` picks the container (exec probes:
    each container has its own mount namespace); by default the pod's first running one."""
    from tests.lab import images

    applet_dir, _ = images.ensure_applet_dir(state_dir())
    run_env = marked_env("exec", env or {"PATH": f"{applet_dir}:{images.SYSTEM_PATH}", "HOME": "/"})
    run_env.setdefault("PATH", f"{applet_dir}:{images.SYSTEM_PATH}")
    if pid is None:
        pid = find_container_pid(netns, uid)
    if pid is not None:
        # -r: the container's root (its own root view when it has one).
        prefix = [NSENTER, "-t", str(pid), "-n", "-m", "-u", "-r", "--"]
    else:
        prefix = [IP, "netns", "exec", netns]
    prefix += setpriv_argv()
    try:
        return subprocess.run(
            [*prefix, *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=run_env,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess([*prefix, *argv], 124, out, err + "\n(timed out)")


# ---------------------------------------------------------------- processes


_CLONE_NEWNET = 0x40000000


def enter_netns(netns: str) -> None:
    """Move the CALLING THREAD into a named network namespace (setns(2) is per thread for
    CLONE_NEWNET): sockets it opens afterwards live there. For dedicated threads only."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(RUN_NETNS / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(RUN_NETNS / netns))
    finally:
        os.close(fd)


def netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def marked_pids() -> list[int]:
    """Processes carrying the lab marker, except this process and its ancestors."""
    protected = _ancestors(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if (
            entry.isdigit()
            and int(entry) not in protected
            and PROCESS_MARKER in _environ(int(entry))
        ):
            pids.append(int(entry))
    return sorted(pids)


def _ancestors(pid: int) -> set[int]:
    seen = {pid}
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        seen.add(pid)
    return seen


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
            .strip()
        )
    except OSError:
        return ""


def kill_pids(pids: Iterable[int], grace: float = 2.0) -> None:
    """SIGTERM, wait up to `grace`, then SIGKILL whatever is left."""
    protected = _ancestors(os.getpid())
    targets = [p for p in pids if p not in protected]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while targets and time.monotonic() < deadline:
        targets = [p for p in targets if _alive(p)]
        if targets:
            time.sleep(0.05)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        # A zombie is dead for our purposes: its parent reaps it, it holds no namespace open.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------- down / leftovers


def _root_chains() -> list[str]:
    out = _run(["iptables", "-w", "5", "-S"], check=False).stdout
    return [
        line.split()[1]
        for line in out.splitlines()
        if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIX)
    ]


def _root_links() -> list[str]:
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if name.startswith(LINK_PREFIX):
            names.append(name)
    return names


def _ipsets() -> list[str]:
    if not shutil.which("ipset"):
        return []
    out = _run(["ipset", "list", "-n"], check=False).stdout
    return [n for n in out.split() if n.lower().startswith((LINK_PREFIX, NETNS_PREFIX))]


def down() -> None:
    """Remove everything the lab network created; safe to call repeatedly and after a crash."""
    spaces = list_netns()
    pids: set[int] = set(marked_pids())
    for ns in spaces:
        pids.update(netns_pids(ns))
    kill_pids(sorted(pids))
    # Pods first so their veths go before the node netns; fabric last.
    order = sorted(spaces, key=lambda n: (not n.startswith(POD_NS_PREFIX), n == FABRIC_NS, n))
    for ns in order:
        _run(["ip", "netns", "del", ns], check=False)
    for link in _root_links():
        _run(["ip", "link", "del", link], check=False)
    for chain, hook in ROOT_HOOKS.items():
        while _iptables(["-D", hook, "-j", chain], check=False).returncode == 0:
            pass
    for chain in _root_chains():
        _iptables(["-F", chain], check=False)
        _iptables(["-X", chain], check=False)
    for name in _ipsets():
        _run(["ipset", "destroy", name], check=False)
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            if entry.name.startswith(NETNS_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
    for leftover in ("metadata.pid", "egress.pid", egress_socket().name):
        (state_dir() / leftover).unlink(missing_ok=True)
    # Last: until every lab link and process is gone, root keeps its unreachable routes.
    _run([IP, "-4", "route", "flush", "table", "main", "proto", LAB_ROUTE_PROTO], check=False)


def leftovers() -> list[str]:
    """Human-readable list of lab network objects/processes still present (empty = clean)."""
    found = [f"netns {ns}" for ns in list_netns()]
    found += [f"link {link}" for link in _root_links()]
    found += [f"iptables chain {chain}" for chain in _root_chains()]
    found += [f"ipset {name}" for name in _ipsets()]
    found += [f"route {route}" for route in lab_root_routes()]
    for pid in marked_pids():
        found.append(f"process {pid} ({_environ(pid).get(PROCESS_MARKER)}): {_cmdline(pid)[:120]}")
    if NETNS_ETC.is_dir():
        found += [
            f"dir {e}" for e in sorted(NETNS_ETC.iterdir()) if e.name.startswith(NETNS_PREFIX)
        ]
    # Pod volumes and the nodes' hostPath directories (`down` removes the whole state but logs).
    found += [f"dir {state_dir() / d}" for d in ("pods", "nodes") if (state_dir() / d).exists()]
    found += [f"mount {m}" for m in state_mounts()]
    return found


def state_mounts(pids: Iterable[str] = ("self",)) -> list[str]:
    """Mount points under the lab state dir, or mounts of something inside it, as the given
    processes see them. Containers bind their volumes only inside their own mount namespaces;
    one showing up in root's would be a leak."""
    root = str(state_dir()).rstrip("/") + "/"
    found = []
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 4 and (fields[4].startswith(root) or fields[3].startswith(root)):
                found.append(f"{fields[4]} (from {fields[3]}, pid {pid})")
    return found
