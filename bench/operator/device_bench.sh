#!/usr/bin/env bash
# bench_operator.py on the lent machine's 16 cores, which the bench has to itself (bench/operator/README.md says
# why: on the shared 2-core VM the apiserver's starvation dominates every latency). That machine reaches nothing
# and starts bare, so the control plane's binaries, the operator's wheels and the baseline tree are carried
# (pack_device.sh makes them, 64 MiB a call; they wait in STATE between calls):
#   call 1: bash bench/operator/device_bench.sh .dev/op1 stash
#   call 2: bash bench/operator/device_bench.sh .dev/op2 run ARGS...   (bench_operator.py's arguments)
# The bench's JSON (rewritten after every row; a later --out names another) and its log come back in $OUT.
# The baseline tree is $STATE/baseline: --variant baseline=/root/bench-operator-state/baseline.
set -euo pipefail
CARRY=$(cd "$1" && pwd); PHASE=$2; shift 2
STATE=${BENCH_STATE:-/root/bench-operator-state}; mkdir -p "$STATE"
cp -r "$CARRY"/. "$STATE/"
if [ "$PHASE" = stash ]; then ls -la "$STATE"; exit 0; fi
BIN=$HOME/.cache/reasoning-operator/controlplane/k8s-v1.36.3_etcd-v3.6.16_kwok-v0.8.0
if [ ! -x "$BIN/bin/kwok" ]; then mkdir -p "$BIN" && cat "$STATE"/cp.tar.xz.part* | tar -C "$BIN" -xJ; fi
VENV=/root/op-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv --without-pip "$VENV"
  SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$STATE"/whl/*.whl
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{ nproc; grep -m1 'model name' /proc/cpuinfo; free -g | head -2; } | tee "$OUT/machine.txt"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
status=0
"$VENV/bin/python" bench/operator/bench_operator.py --out "$OUT/bench-operator.json" "$@" >> "$OUT/bench.log" 2>&1 \
  || status=$?
tail -n 20 "$OUT/bench.log"
exit "$status"
