#!/usr/bin/env bash
# Build the Kueue controller (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy, once, and copy its CRDs
# (config/components/crd/bases: no conversion webhook) beside it, for tests/e2e/test_kueue.py.
#
# Output: ${REASONING_CACHE:-$HOME/.cache/reasoning-operator}/kueue/<version>/{bin/kueue,crds/*.yaml}.
# Idempotent; the last line of stdout is that directory.
set -euo pipefail

KUEUE_VERSION=v0.17.0   # served by the module proxy here; built against k8s.io v0.35 (its own go.mod)

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CACHE_ROOT=${REASONING_CACHE:-$HOME/.cache/reasoning-operator}
DIR="$CACHE_ROOT/kueue/$KUEUE_VERSION"

if [[ -x "$DIR/bin/kueue" && -d "$DIR/crds" ]]; then
  echo "$DIR"
  exit 0
fi
mkdir -p "$DIR/bin"
exec 9>"$CACHE_ROOT/kueue/.build.lock"
flock 9
if [[ -x "$DIR/bin/kueue" && -d "$DIR/crds" ]]; then   # built by another process while we waited for the lock
  echo "$DIR"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kueue-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
printf 'module kueuebuild\n\ngo 1.26\n' > go.mod
"$GO" get "sigs.k8s.io/kueue@$KUEUE_VERSION" >&2
nice -n 10 "$GO" build -p "${KUEUE_BUILD_JOBS:-2}" -o "$WORK/kueue" sigs.k8s.io/kueue/cmd/kueue >&2
SRC=$("$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
rm -rf "$DIR/crds.tmp" && cp -r "$SRC/config/components/crd/bases" "$DIR/crds.tmp" && chmod -R u+w "$DIR/crds.tmp"
mv "$WORK/kueue" "$DIR/bin/kueue"
rm -rf "$DIR/crds" && mv "$DIR/crds.tmp" "$DIR/crds"
echo "$DIR"
