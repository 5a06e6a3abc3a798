#!/usr/bin/env bash
# The whole gate, exactly what CI runs: environment, control-plane binaries, lint, format, types,
# import contracts, generated files up to date, the container images (make images), then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/controlplane/build.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
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
