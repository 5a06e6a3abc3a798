#!/usr/bin/env bash
# Build the real test node's binaries once, outside the repository, with the control plane's pin.
#
#   kubelet, kube-proxy  <- k8s.io/kubernetes at scripts/controlplane/build.sh's K8S_VERSION (shares its
#                           Go build cache: ~1,680 of the kubelet's packages are already compiled there)
#   coredns              <- github.com/coredns/coredns@COREDNS_VERSION with only the plugins the cluster
#                           DNS uses (a full CoreDNS compiles every cloud SDK: minutes we do not need)
#   pause                <- Kubernetes' own build/pause/linux/pause.c from the same module zip, gcc -static
#
# containerd, runc and the CNI plugins come from Debian (scripts/node/deps.sh).
# Binaries go to ${REASONING_CACHE:-$HOME/.cache/reasoning-operator}/node/<versions>/bin. Idempotent; the last
# line of stdout is the bin dir. Usage: scripts/node/build.sh [--print-bin-dir]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# One pin for the whole cluster: read it from the control plane's build script.
K8S_VERSION=$(sed -n 's/^K8S_VERSION=\([^ ]*\).*/\1/p' "$HERE/../controlplane/build.sh")
COREDNS_VERSION=v1.15.0
PAUSE_VERSION=3.10.2   # build/pause/Makefile TAG in k8s.io/kubernetes v1.36.x

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}
VERSIONS_KEY="k8s-${K8S_VERSION}_coredns-${COREDNS_VERSION}_pause-${PAUSE_VERSION}"
BIN_DIR="$CACHE_ROOT/node/$VERSIONS_KEY/bin"
ALL_BINS=(kubelet kube-proxy coredns pause)

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

mkdir -p "$BIN_DIR" "$CACHE_ROOT/controlplane"
# The control plane's lock: one Go build at a time on a 2-core machine, and they share the build cache.
exec 9>"$CACHE_ROOT/controlplane/.build.lock"
flock 9

log() { echo "[node/build] $*" >&2; }
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
JOBS=${CONTROLPLANE_BUILD_JOBS:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/node-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/out"
mkdir -p "$STAGE"
start_all=$SECONDS
install_bins() {
  local b
  for b in "$@"; do mv -f "$STAGE/$b" "$BIN_DIR/$b"; done
}

k8s_dir=""
k8s_module_dir() {
  [[ -n "$k8s_dir" ]] || k8s_dir=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  echo "$k8s_dir"
}

if missing kubelet kube-proxy; then
  log "building kubelet kube-proxy from k8s.io/kubernetes@$K8S_VERSION"
  t=$SECONDS
  mod="$WORK/k8s"
  mkdir -p "$mod"
  staging_version="v0.${K8S_VERSION#v1.}"
  k8s_gomod=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # The same generated go.mod as scripts/controlplane/build.sh (staging modules pinned to their tags), so the
  # build cache entries match.
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
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ver_pkg=k8s.io/component-base/version
  ldflags="-s -w -X $ver_pkg.gitVersion=$K8S_VERSION -X $ver_pkg.gitMajor=1 -X $ver_pkg.gitMinor=$minor"
  ldflags+=" -X $ver_pkg.gitTreeState=clean -X $ver_pkg.buildDate=1970-01-01T00:00:00Z"
  (cd "$mod" && nice -n 10 "$GO" build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$STAGE/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  install_bins kubelet kube-proxy
  log "kubelet and kube-proxy built in $((SECONDS - t)) s"
fi

if missing coredns; then
  log "building coredns from github.com/coredns/coredns@$COREDNS_VERSION (cluster-DNS plugins only)"
  t=$SECONDS
  mod="$WORK/coredns"
  mkdir -p "$mod"
  {
    echo "module reasoning-operator.invalid/coredns-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require github.com/coredns/coredns $COREDNS_VERSION"
  } >"$mod/go.mod"
  # CoreDNS's documented way to choose plugins at compile time: set dnsserver.Directives (their order is the
  # plugin chain order, as in CoreDNS's plugin.cfg) and import only those plugins.
  plugins=(bind errors log health ready cache kubernetes forward)
  "$GO" mod download "github.com/coredns/coredns@$COREDNS_VERSION"
  order=$("$GO" mod download -json "github.com/coredns/coredns@$COREDNS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  order=$(grep -o '^[[:space:]]*"[a-z0-9_]*",' "$order/core/dnsserver/zdirectives.go" | tr -d ' \t",')
  {
    echo "package main"
    echo
    echo "import ("
    echo '	"github.com/coredns/coredns/core/dnsserver"'
    echo '	"github.com/coredns/coredns/coremain"'
    for p in "${plugins[@]}"; do echo "	_ \"github.com/coredns/coredns/plugin/$p\""; done
    echo ")"
    echo
    echo "func init() {"
    echo "	dnsserver.Directives = []string{"
    for p in $order; do  # upstream's chain order, restricted to our plugins
      for q in "${plugins[@]}"; do [[ "$p" == "$q" ]] && echo "		\"$p\","; done
    done
    echo "	}"
    echo "}"
    echo
    echo "func main() { coremain.Run() }"
  } >"$mod/main.go"
  (cd "$mod" && nice -n 10 "$GO" build -p "$JOBS" -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$STAGE/coredns" .)
  install_bins coredns
  log "coredns built in $((SECONDS - t)) s"
fi

if missing pause; then
  log "building pause $PAUSE_VERSION from k8s.io/kubernetes@$K8S_VERSION build/pause/linux/pause.c"
  src="$(k8s_module_dir)/build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-reasoning" -o "$STAGE/pause" "$src"
  strip "$STAGE/pause"
  install_bins pause
fi

{
  echo "k8s=$K8S_VERSION coredns=$COREDNS_VERSION pause=$PAUSE_VERSION"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$GO" version) in $((SECONDS - start_all)) s (-p $JOBS, $(nproc) cores)"
} >>"$BIN_DIR/../build-info.txt"
log "done in $((SECONDS - start_all)) s"
echo "$BIN_DIR"
