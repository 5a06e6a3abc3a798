#!/usr/bin/env bash
# Build (cached) and start the test control plane plus one real kubelet node in the foreground (root).
#   scripts/node/up.sh [--image ARCHIVE ...] [--gpus N]      Ctrl-C tears everything down.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m tests.support.node "$@"
