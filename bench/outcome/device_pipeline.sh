#!/usr/bin/env bash
# The whole pipeline as a user runs it, `reasoning run examples/smollm2-reasoning.yaml`, on the lent GPU machine
# (README.md "The pipeline through `reasoning run` on the GPU"). Curation ran here first, on the CPU, into the same
# run directory (/tmp/rr-smollm2): the lent machine has no NeMo Curator or Ray, so the carried run directory holds
# the generated dataset, the curated set and the runner's stage record, and the runner on the GPU machine reuses
# curation by its input key (the dataset's fingerprint survives tar: names, sizes and mtimes) and runs training,
# serving and evaluation (tritonclient) itself.
#
# One call carries at most 64 MiB and a call runs at most 10 minutes, so the parts go over several calls to a warm
# machine and wait in STATE, and each run goes on in the background (setsid) between calls:
#   c1: gguf.part00 whl/          c2: gguf.part01 whl-serve/
#   c3: pytriton.tar.xz whl-serve/numpy-1.26.4 rundir.tar.gz      -> start   (the pytriton backend)
#   c4: vllm.tar.xz.part00        c5: vllm.tar.xz.part01           c6: whl-vllm/ -> vllm (waits for the first run, then the
#                                                                              same run directory on the vllm backend)
#   any: wait NAME [SECONDS]      (until that run ends; its files come back in $OUT)
# pack_carry.py makes the folders c1..c6 from PyPI and a run directory whose curation ran on a CPU.
#   bash bench/outcome/device_pipeline.sh CARRY stash|start|vllm|wait [NAME] [--set section.field=value ...]
#
# bench/serve/bench_serve.py on the same venv (pack_carry.py without --run-dir: no GGUF, no run directory):
#   c1 c2 c6 (one call): stash, then build ARGS   random weights made on the GPU in the background (image python)
#   c3, c4: stash;  c5: bench ARGS                 vLLM unpacked, bench_serve.py in the background (after build)
#   any: wait bench [SECONDS]                      bench.json (rewritten after every cell), bench.log, serve.log
set -euo pipefail
CARRY=$(cd "$1" && pwd); PHASE=$2; shift 2
STATE=${PIPELINE_STATE:-/root/pipeline-state}; mkdir -p "$STATE/whl" "$STATE/whl-serve" "$STATE/whl-vllm"
for part in "$CARRY"/gguf.part0* "$CARRY"/pytriton.tar.xz "$CARRY"/rundir.tar.gz "$CARRY"/vllm.tar.xz.part0*; do
  if [ -f "$part" ]; then cp "$part" "$STATE/"; fi
done
for folder in whl whl-serve whl-vllm; do
  if [ -d "$CARRY/$folder" ]; then cp "$CARRY/$folder"/*.whl "$STATE/$folder/"; fi
done
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR=/tmp/rr-smollm2
if [ "$PHASE" = stash ]; then ls -la "$STATE" "$STATE"/whl*; exit 0; fi

# PyTriton 0.7's stub imports from the server's sys.exec_prefix and needs numpy < 2; the image's scipy needs numpy 2
# (device_call.sh says how this was found): a venv holds numpy 1.26 + the serving stack, the image's packages come
# after them (image.pth), and every process but the stub sees the image's numpy 2 first through PYTHONPATH.
VENV=/root/serve-venv; SITE=$VENV/lib/python3.12/site-packages
if [ ! -d /tmp/site/pydantic ] && compgen -G "$STATE/whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$STATE"/whl/*.whl
fi
if [ ! -d "$SITE/pytriton" ] && [ -f "$STATE/pytriton.tar.xz" ]; then
  python3 -m venv --without-pip "$VENV"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$STATE"/whl-serve/*.whl
  tar -C "$SITE" -xJf "$STATE/pytriton.tar.xz"
  python3 -c "import site; print(site.getsitepackages()[0])" > "$SITE/image.pth"
  IMAGE_NUMPY=$(python3 -c "import numpy, os; print(os.path.dirname(numpy.__file__))")
  mkdir -p /tmp/site-numpy2 && ln -sfn "$IMAGE_NUMPY" /tmp/site-numpy2/numpy
  if [ -d "$IMAGE_NUMPY.libs" ]; then ln -sfn "$IMAGE_NUMPY.libs" /tmp/site-numpy2/numpy.libs; fi
fi
# vLLM 0.26.0 (the last release built for the image's torch 2.11; the lock's 0.33.0 pins torch 2.14), slimmed to
# what a Hopper GPU runs (its FA2 kernels, Rust frontend and DeepGEMM/SM100 headers left out: pack_carry.py) and
# the dependencies the image lacks, in a folder of their own.
if { [ "$PHASE" = vllm ] || [ "$PHASE" = bench ]; } && [ ! -d /tmp/site-vllm/vllm ]; then
  mkdir -p /tmp/site-vllm
  cat "$STATE"/vllm.tar.xz.part0* | tar -C /tmp/site-vllm -xJ
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-vllm "$STATE"/whl-vllm/*.whl
fi
export PYTHONPATH=/tmp/site-numpy2:/tmp/site-vllm:/tmp/site:$REPO/operator:$REPO/jobs
# FlashInfer is left out of the carried closure (pack_carry.py): vLLM samples with its own top-k/top-p kernels then
export VLLM_USE_FLASHINFER_SAMPLER=0
PY=$VENV/bin/python
export REASONING_CACHE=/root/reasoning-cache
GGUF=$REASONING_CACHE/gguf/SmolLM2-135M-Instruct.Q4_1.gguf

background() {  # NAME DIR SCRIPT: SCRIPT run by bash in DIR in a process session of its own (it outlives the
  # call), its output in $STATE/NAME.log and its exit status in $STATE/NAME.rc
  local name=$1 dir=$2 script=$3
  rm -f "$STATE/$name.rc"
  setsid bash -c "cd '$dir' && { $script; } > '$STATE/$name.log' 2>&1; echo \$? > '$STATE/$name.rc'" \
    < /dev/null > /dev/null 2>&1 &
  echo "started $name"
}
launch() {  # NAME ARGS...: `reasoning run` in the background, its log and exit status in $STATE/NAME.*
  local name=$1; shift
  background "$name" "$REPO" "PYTHONUNBUFFERED=1 '$PY' -m reasoning_operator.cli run examples/smollm2-reasoning.yaml \
    --run-dir $RUN_DIR $*"
}
BENCH_WORK=/root/bench-serve
snapshot() {  # NAME: this call's operator/ jobs/ bench/ copied to /root/repo-NAME, which a background run reads
  # from after the call has returned (the next call brings its own copy of the tree)
  rm -rf "/root/repo-$1" && mkdir -p "/root/repo-$1"
  cp -r "$REPO/operator" "$REPO/jobs" "$REPO/bench" "$REPO/pyproject.toml" "/root/repo-$1/"
}
collect() {  # NAME: the run's files into $OUT (at most 8 files come back)
  local name=$1
  mkdir -p "$OUT/$name"
  cp "$STATE/$name.log" "$OUT/$name/run.log"
  if [ "$name" = build ] || [ "$name" = bench ]; then
    cp "$STATE/machine.txt" "$OUT/$name/" 2>/dev/null || true
    cp "$STATE/bench.json" "$OUT/$name/" 2>/dev/null || true
    if [ -f "$BENCH_WORK/serve.log" ]; then tail -c 8000000 "$BENCH_WORK/serve.log" > "$OUT/$name/serve.log"; fi
    return 0
  fi
  cp "$RUN_DIR/status.yaml" "$RUN_DIR/report.md" "$OUT/$name/" 2>/dev/null || true
  tar -C "$RUN_DIR" -czf "$OUT/$name/files.tar.gz" logs stages configs \
    $(cd "$RUN_DIR" && find workspace/runs -name '*.json' -o -name '*.jsonl' -size -20M | grep -v curated) 2>/dev/null || true
}
ended() {  # NAME SECONDS: wait until the run ends or SECONDS pass; true if it ended
  local name=$1 seconds=$2 waited=0
  while [ ! -f "$STATE/$name.rc" ] && [ "$waited" -lt "$seconds" ]; do sleep 5; waited=$((waited + 5)); done
  [ -f "$STATE/$name.rc" ]
}
wait_for() {  # NAME SECONDS: wait until the run ends or SECONDS pass; collect; exit with its status (124 if running)
  local name=$1 seconds=$2
  ended "$name" "$seconds" || true
  collect "$name"
  tail -n 40 "$STATE/$name.log"
  if [ -f "$STATE/$name.rc" ]; then exit "$(cat "$STATE/$name.rc")"; fi
  echo "$name still running after ${seconds}s"; exit 124
}

case "$PHASE" in
  start)
    if [ ! -f "$GGUF" ]; then mkdir -p "$(dirname "$GGUF")" && cat "$STATE"/gguf.part00 "$STATE"/gguf.part01 > "$GGUF"; fi
    if [ ! -d "$RUN_DIR" ]; then tar -C /tmp -xzf "$STATE/rundir.tar.gz"; fi
    {
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      "$PY" -c "import numpy, torch, transformers, peft, pytriton, tritonclient; print('numpy', numpy.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
    } | tee "$STATE/machine.txt"
    launch pytriton --set serving.gpus=1 "$@"
    wait_for pytriton 30 ;;
  vllm)
    "$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" | tee -a "$STATE/machine.txt"
    # The same run directory: curation and training are reused by their keys, serving and evaluation run again.
    ended pytriton 420 || wait_for pytriton 0   # still running: its files so far, exit 124
    collect pytriton
    launch vllm --set serving.gpus=1 --set serving.backend=vllm --set serving.maxModelLen=4096 "$@"
    wait_for vllm 360 ;;
  build)  # ARGS: bench_serve.py's --gpus/--shape/--rank; the image's python (the serving venv may not be there yet)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$STATE/machine.txt"
    snapshot build
    background build /root/repo-build "PYTHONUNBUFFERED=1 python3 bench/serve/bench_serve.py --build-only \
      --work $BENCH_WORK $*"
    if ended build 20; then wait_for build 0; fi
    tail -n 5 "$STATE/build.log"; echo "build still running" ;;
  bench)  # ARGS: bench_serve.py's; after the build (if one was started), with the serving venv as client and server
    "$PY" -c "import vllm, torch, pytriton, tritonclient.http.aio; print('vllm', vllm.__version__, 'torch', torch.__version__)" \
      | tee -a "$STATE/machine.txt"
    snapshot bench
    background bench /root/repo-bench "while [ -f '$STATE/build.log' ] && [ ! -f '$STATE/build.rc' ]; do sleep 2; done; \
      PYTHONUNBUFFERED=1 '$PY' bench/serve/bench_serve.py --server-python '$PY' --work $BENCH_WORK \
      --json-out '$STATE/bench.json' $*"
    wait_for bench "${BENCH_WAIT:-480}" ;;
  wait)
    wait_for "$1" "${2:-540}" ;;
  *) echo "unknown phase $PHASE" >&2; exit 2 ;;
esac
