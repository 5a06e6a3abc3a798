#!/usr/bin/env bash
# Create (or update) the project's virtual environment with every extra the tests need.
# Idempotent and cached: uv keeps wheels in ~/.cache/uv, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.8   # the uv that wrote uv.lock; the gate's `uv lock --check` runs this one (.venv/bin/uv)
if ! command -v uv >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
UV=$(command -v uv || echo "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/uv")
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$PYTHON" .venv
"$UV" pip install --quiet --python .venv/bin/python -e ".[all]" "uv==$UV_VERSION"
echo "environment ready: $(.venv/bin/python --version) in .venv"
