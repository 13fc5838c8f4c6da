#!/usr/bin/env bash
# Prepare this machine for the lab: Debian packages the lab runs (only those missing, so a warm
# machine does no apt work at all), then the Go binaries (built only when absent from the
# version-keyed cache, see tests/lab/build.py). Idempotent; safe to run before every test run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

# iproute2: netns/veth/bridge; iptables+ipset+conntrack: kube-router's firewall and the lab's
# safety rules; busybox-static: the program behind busybox images; dnsmasq-base: the lab DNS pod;
# util-linux (essential, so normally present): nsenter for exec, setpriv to drop pods' capabilities.
# gcc, make, libc6-dev, libelf-dev, zlib1g-dev, libpcap-dev: calico-node is built with cgo against
# a static libbpf, and the other Calico binaries with it (tests/lab/build.py); the rest of the
# lab's binaries are pure Go.
packages=(iproute2 iptables ipset conntrack busybox-static dnsmasq-base procps ca-certificates
    util-linux gcc make libc6-dev libelf-dev zlib1g-dev libpcap-dev)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "lab setup: missing packages ${missing[*]} and not root; install them first" >&2
        exit 1
    fi
    echo "lab setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python="python3"
cd "$repo"

# Debian's dynamically linked busybox, unpacked into the lab cache (it conflicts with
# busybox-static as an installed package): its shell looks applets up on PATH like a real busybox
# image does, which the pods' wget shim relies on (see tests/lab/images.py). `apt-get download`
# needs package lists, which a machine that had every package may never have fetched.
if ! "$python" -m tests.lab.images fetch-busybox >/dev/null 2>&1; then
    apt-get update -qq
    "$python" -m tests.lab.images fetch-busybox >/dev/null
fi

if ! command -v go >/dev/null; then
    echo "lab setup: the Go toolchain (>= 1.26) is required to build the lab binaries" >&2
    exit 1
fi

# The Calico binaries are built from the project's shared source archives: ../shared beside the
# checkout (CI's copy) unless NETISO_SHARED_DIR names another directory.
start=$(date +%s)
"$python" -m tests.lab build
echo "lab setup: binaries ready ($(($(date +%s) - start)) s)" >&2
