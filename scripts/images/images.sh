#!/usr/bin/env bash
# Entry point of `make images|images-push|images-save`: engine check/setup, the project's .venv (the driver
# reads image names from the API), then scripts/images/build.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(bash scripts/images/engine.sh)"
[[ -x .venv/bin/python ]] || bash scripts/setup.sh >&2
exec .venv/bin/python scripts/images/build.py "$@"
