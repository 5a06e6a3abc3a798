#!/usr/bin/env bash
# The whole pipeline as a user runs it, `reasoning run examples/smollm2-reasoning.yaml`, on the lent GPU machine
# (README.md "The pipeline through `reasoning run` on the GPU"). Curation ran here first, on the CPU, into the same
# run directory (/tmp/rr-smollm2): the lent machine has no NeMo Curator or Ray, so the carried run directory holds
# the generated dataset, the curated set and the runner's stage record, and the runner on the GPU machine reuses
# curation by its input key (the dataset's fingerprint survives tar: names, sizes and mtimes) and runs training,
# serving (PyTriton on the GPU, dynamic batching) and evaluation (tritonclient) itself.
#
# One call carries at most 64 MiB, so the parts go over several calls to a warm machine and wait in STATE:
#   c1: gguf.part00 whl/          c2: gguf.part01 whl-serve/        c3: pytriton.tar.xz whl-serve/numpy-1.26.4
#   c4: rundir.tar.gz             then: run
#   bash bench/outcome/device_pipeline.sh CARRY stash|run [--set section.field=value ...]
set -euo pipefail
CARRY=$(cd "$1" && pwd); PHASE=$2; shift 2
STATE=/root/pipeline-state; mkdir -p "$STATE/whl" "$STATE/whl-serve"
for part in "$CARRY"/gguf.part0* "$CARRY"/pytriton.tar.xz "$CARRY"/rundir.tar.gz; do
  if [ -f "$part" ]; then cp "$part" "$STATE/"; fi
done
for folder in whl whl-serve; do
  if [ -d "$CARRY/$folder" ]; then cp "$CARRY/$folder"/*.whl "$STATE/$folder/"; fi
done
if [ "$PHASE" = stash ]; then ls -la "$STATE" "$STATE"/whl*; exit 0; fi

OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$STATE"/whl/*.whl
# PyTriton 0.7's stub imports from the server's sys.exec_prefix and needs numpy < 2; the image's scipy needs numpy 2
# (device_call.sh says how this was found): a venv holds numpy 1.26 + the serving stack, the image's packages come
# after them (image.pth), and every process but the stub sees the image's numpy 2 first through PYTHONPATH.
VENV=/root/serve-venv; SITE=$VENV/lib/python3.12/site-packages
if [ ! -d "$SITE/pytriton" ]; then
  python3 -m venv --without-pip "$VENV"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$STATE"/whl-serve/*.whl
  tar -C "$SITE" -xJf "$STATE/pytriton.tar.xz"
  python3 -c "import site; print(site.getsitepackages()[0])" > "$SITE/image.pth"
  IMAGE_NUMPY=$(python3 -c "import numpy, os; print(os.path.dirname(numpy.__file__))")
  mkdir -p /tmp/site-numpy2 && ln -sfn "$IMAGE_NUMPY" /tmp/site-numpy2/numpy
  if [ -d "$IMAGE_NUMPY.libs" ]; then ln -sfn "$IMAGE_NUMPY.libs" /tmp/site-numpy2/numpy.libs; fi
fi
export PYTHONPATH=/tmp/site-numpy2:/tmp/site:$REPO/operator:$REPO/jobs
PY=$VENV/bin/python
# The model: the runner converts the wheel's GGUF once (reasoning_jobs.common.smollm2), from the cache.
export REASONING_CACHE=/root/reasoning-cache
GGUF=$REASONING_CACHE/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$GGUF" ]; then mkdir -p "$(dirname "$GGUF")" && cat "$STATE"/gguf.part00 "$STATE"/gguf.part01 > "$GGUF"; fi
if [ ! -d /tmp/rr-smollm2 ]; then tar -C /tmp -xzf "$STATE/rundir.tar.gz"; fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import numpy, torch, transformers, peft, pytriton, tritonclient; print('numpy', numpy.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} | tee "$OUT/machine.txt"
cd "$REPO"
set +e
PYTHONUNBUFFERED=1 "$PY" -m reasoning_operator.cli run examples/smollm2-reasoning.yaml --run-dir /tmp/rr-smollm2 "$@" \
  2>&1 | tee "$OUT/run.log"
rc=${PIPESTATUS[0]}
set -e
cp /tmp/rr-smollm2/status.yaml /tmp/rr-smollm2/report.md "$OUT/" 2>/dev/null || true
find /tmp/rr-smollm2 -name results.json -newer "$STATE/rundir.tar.gz" -exec cp {} "$OUT/" \; 2>/dev/null || true
tar -C /tmp/rr-smollm2 -czf "$OUT/logs.tar.gz" logs stages configs 2>/dev/null || true
exit "$rc"
