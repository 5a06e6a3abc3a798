#!/usr/bin/env bash
# Start the test control plane in the foreground for manual use (Ctrl-C stops it).
# Builds the binaries first if they are missing, then prints `export KUBECONFIG=...`.
#   scripts/controlplane/up.sh [--work-dir DIR]   (with --work-dir, state and logs are kept there)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cd "$root"
exec "$python" -m tests.support.controlplane "$@"
