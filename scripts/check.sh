#!/usr/bin/env bash
# The whole gate, exactly what CI runs: environment, control-plane binaries, lint, format, types,
# import contracts, generated files up to date, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/controlplane/build.sh >/dev/null
bash scripts/node/deps.sh                     # the real node's Debian packages (containerd, runc, CNI, ...)
bash scripts/node/build.sh >/dev/null         # kubelet, kube-proxy, CoreDNS, pause (cached)
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";        ruff check . && ruff format --check .
echo "== mypy";        mypy
echo "== imports";     lint-imports
echo "== crds";        reasoning crds --check
echo "== tests";       python -m pytest "$@"
