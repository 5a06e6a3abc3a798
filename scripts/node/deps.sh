#!/usr/bin/env bash
# Debian packages the real test node and the image tests need (idempotent: apt-get runs only when one is missing).
#   containerd 1.6 + runc (crun refuses this machine's hybrid cgroup layout), the CNI plugins (bridge,
#   host-local, loopback, portmap), iptables + conntrack for kube-proxy, iproute2 for the node's address,
#   gcc + libc6-dev for the static pause binary, busybox-static for the tests' from-scratch image,
#   docker-registry (CNCF distribution) for the test of `make images-push`.
set -euo pipefail
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 gcc libc6-dev busybox-static docker-registry)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[node/deps] installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Debian's containerd package starts a system containerd under systemd where there is one; the harness runs
# its own instance with its own config, sockets and state, so a system one (if any) does not matter.
