#!/usr/bin/env bash
# Build the test control plane's binaries from source through the Go module proxy, once.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  <- k8s.io/kubernetes
#   etcd                                                              <- go.etcd.io/etcd/server/v3
#   kwok                                                              <- sigs.k8s.io/kwok/cmd/kwok
#
# The versions below are THE pin (the Python side reads the bin dir this script prints).
# Binaries go to ${REASONING_CACHE:-$HOME/.cache/reasoning-operator}/controlplane/<versions>/bin,
# outside the repository; go.mod files are generated in a temporary directory.
# Idempotent: a binary that is already there is not rebuilt. The last line of stdout is the bin dir.
#
# Usage: scripts/controlplane/build.sh [--print-bin-dir]
#   --print-bin-dir  print the bin dir and exit (0 if every binary is present, 1 otherwise)
set -euo pipefail

K8S_VERSION=v1.36.3    # kwok v0.8.0 is built against k8s.io/api v0.36.1; k8s 1.36 needs Go >= 1.26
ETCD_VERSION=v3.6.16   # the etcd minor that Kubernetes 1.36 is tested with
KWOK_VERSION=v0.8.0

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}
VERSIONS_KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BIN_DIR="$CACHE_ROOT/controlplane/$VERSIONS_KEY/bin"
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ALL_BINS=("${K8S_BINS[@]}" etcd kwok)

missing() {
  local b
  for b in "$@"; do [[ -x "$BIN_DIR/$b" ]] || return 0; done
  return 1
}

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN_DIR"
  if missing "${ALL_BINS[@]}"; then exit 1; fi
  exit 0
fi

if ! missing "${ALL_BINS[@]}"; then
  echo "$BIN_DIR"
  exit 0
fi

mkdir -p "$BIN_DIR"
# One build at a time (two test sessions may start together).
exec 9>"$CACHE_ROOT/controlplane/.build.lock"
flock 9

log() { echo "[controlplane/build] $*" >&2; }

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
JOBS=${CONTROLPLANE_BUILD_JOBS:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/controlplane-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/out"
mkdir -p "$STAGE"
"$GO" version >&2
start_all=$SECONDS

# Build into $STAGE, then move into place (a half-written binary is never picked up).
install_bins() {
  local b
  for b in "$@"; do mv -f "$STAGE/$b" "$BIN_DIR/$b"; done
}

if missing "${K8S_BINS[@]}"; then
  log "building ${K8S_BINS[*]} from k8s.io/kubernetes@$K8S_VERSION"
  t=$SECONDS
  mod="$WORK/k8s"
  mkdir -p "$mod"
  staging_version="v0.${K8S_VERSION#v1.}"   # v1.36.3 -> v0.36.3
  # The staging modules are `replace`d with ./staging/... paths in k8s.io/kubernetes's go.mod, which do not
  # apply to a dependency; pin every one of them to its published tag instead.
  k8s_gomod=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module reasoning-operator.invalid/controlplane-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$k8s_gomod"
    echo ")"
  } >"$mod/go.mod"
  grep -c '=>' "$mod/go.mod" | xargs -I{} echo "[controlplane/build] pinned {} staging modules to $staging_version" >&2
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ver_pkg=k8s.io/component-base/version
  ldflags="-s -w -X $ver_pkg.gitVersion=$K8S_VERSION -X $ver_pkg.gitMajor=1 -X $ver_pkg.gitMinor=$minor"
  ldflags+=" -X $ver_pkg.gitTreeState=clean -X $ver_pkg.buildDate=1970-01-01T00:00:00Z"
  pkgs=()
  for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$mod" && "$GO" build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$STAGE/" "${pkgs[@]}")
  install_bins "${K8S_BINS[@]}"
  log "kubernetes binaries built in $((SECONDS - t)) s"
fi

if missing etcd; then
  log "building etcd from go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  t=$SECONDS
  mod="$WORK/etcd"
  mkdir -p "$mod"
  # etcd's own go.mod replaces its sibling modules with ../ paths; pin them all to the same tag here.
  {
    echo "module reasoning-operator.invalid/etcd-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    echo "replace ("
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3 server/v3; do
      echo "	go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION"
    done
    echo ")"
  } >"$mod/go.mod"
  (cd "$mod" && "$GO" build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3)
  install_bins etcd
  log "etcd built in $((SECONDS - t)) s"
fi

if missing kwok; then
  log "building kwok from sigs.k8s.io/kwok@$KWOK_VERSION"
  t=$SECONDS
  # kwok's go.mod has no replace directives, so `go install pkg@version` builds exactly its pinned graph.
  GOFLAGS= GOBIN="$STAGE" "$GO" install -p "$JOBS" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  install_bins kwok
  log "kwok built in $((SECONDS - t)) s"
fi

{
  echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$GO" version) in $((SECONDS - start_all)) s (-p $JOBS, $(nproc) cores)"
} >>"$BIN_DIR/../build-info.txt"
log "done in $((SECONDS - start_all)) s"
echo "$BIN_DIR"
