#!/usr/bin/env bash
# Make sure a container engine is here and configured for this kind of machine; print the env to use it.
#
# Installs (as root, idempotent) podman, buildah, runc and mmdebstrap from Debian when one is missing, and
# writes a containers.conf under the project's cache that only the project's own podman calls read
# (CONTAINERS_CONF): a developer's podman configuration is never touched. What it sets, each found by a failure
# on these machines (../shared/environment-notes.md): cgroupfs (no systemd), runc (crun 1.8 refuses the hybrid
# cgroup layout), file event log, and default ulimits at the hard limits (no CAP_SYS_RESOURCE here, so
# podman's default nofile=1048576 fails at setrlimit).
#
# Usage: eval "$(scripts/images/engine.sh)"   # exports CONTAINERS_CONF
set -euo pipefail

PACKAGES=(podman buildah runc mmdebstrap uidmap fuse-overlayfs containernetworking-plugins)
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}

missing=()
for tool in podman buildah runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${PACKAGES[*]} from Debian (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
  else
    cat >&2 <<MSG
error: no container engine: ${missing[*]} not found.
  make images builds with podman (buildah) and makes the base image with mmdebstrap. Install them, e.g. on
  Debian/Ubuntu:  sudo apt-get install ${PACKAGES[*]}
  (or run make images as root on Debian, and it installs them itself).
MSG
    exit 3
  fi
fi

conf_dir="$CACHE_ROOT/containers"
mkdir -p "$conf_dir"
hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
[[ $hard_nofile == unlimited || $hard_nofile -gt 1048576 ]] && hard_nofile=1048576
# nproc above 32768 failed at setrlimit here even under a higher hard limit (environment notes).
[[ $hard_nproc == unlimited || $hard_nproc -gt 32768 ]] && hard_nproc=32768
cgroup_manager=cgroupfs
[[ -d /run/systemd/system ]] && cgroup_manager=systemd
cat >"$conf_dir/containers.conf.tmp" <<CONF
# Written by scripts/images/engine.sh for the project's own podman calls (CONTAINERS_CONF); regenerated each run.
[containers]
default_ulimits = ["nofile=${hard_nofile}:${hard_nofile}", "nproc=${hard_nproc}:${hard_nproc}"]

[engine]
cgroup_manager = "${cgroup_manager}"
events_logger = "file"
runtime = "runc"
CONF
mv "$conf_dir/containers.conf.tmp" "$conf_dir/containers.conf"
echo "export CONTAINERS_CONF=$conf_dir/containers.conf"
