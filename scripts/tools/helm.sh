#!/usr/bin/env bash
# Build helm from source through the Go module proxy, once, and print the binary's path (last line of stdout).
#
# The binary is cached outside the repository under
#   ${REASONING_CACHE:-$HOME/.cache/reasoning-operator}/tools/helm-<version>/helm
# (the same layout as scripts/controlplane/build.sh). helm's go.mod has no replace directives, so
# `go install pkg@version` builds exactly its pinned dependency graph. Idempotent; one build at a time.
#
# Usage: scripts/tools/helm.sh [--print-path]
#   --print-path  print where the binary is (or would be) and exit 0 if it is there, 1 otherwise
set -euo pipefail

HELM_VERSION=v3.22.0   # needs Go >= 1.26; built against k8s.io/client-go v0.37
K8S_MINOR=37           # helm's Makefile derives this from client-go: default kube version for template/lint

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}
BIN_DIR="$CACHE_ROOT/tools/helm-$HELM_VERSION-k8s1.$K8S_MINOR"
HELM="$BIN_DIR/helm"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$HELM"
  [[ -x "$HELM" ]]
  exit
fi

if [[ -x "$HELM" ]]; then
  echo "$HELM"
  exit 0
fi

mkdir -p "$BIN_DIR"
exec 9>"$CACHE_ROOT/tools/.helm.lock"
flock 9
if [[ ! -x "$HELM" ]]; then   # another process may have built it while we waited for the lock
  echo "[tools/helm] building helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  t=$SECONDS
  STAGE=$(mktemp -d "${TMPDIR:-/tmp}/helm-build.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
  # The -X flags helm's own Makefile sets; without them `helm template` assumes Kubernetes v1.20.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$K8S_MINOR"
  done
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS= GOBIN="$STAGE" \
    "$GO" install -p "${TOOLS_BUILD_JOBS:-2}" -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv -f "$STAGE/helm" "$HELM"   # a half-written binary is never picked up
  echo "[tools/helm] built in $((SECONDS - t)) s" >&2
fi
echo "$HELM"
