#!/usr/bin/env bash
# One call on the lent GPU machine (README.md "Reproduce"). The carried folder CARRY holds this repo's
# operator/ jobs/ bench/ examples/ pyproject.toml (under repo/), wheels the image lacks (whl/), the prepared
# data (prep.tar.gz) and one half of the GGUF (gguf.part00 or gguf.part01): a call carries at most 64 MiB, the
# GGUF is 94 MiB, so the halves go over two calls to a warm machine and wait in STATE. For serve-eval the
# serving stack waits there too: whl-serve/ (tritonclient, pyzmq, gevent, ... and numpy 1.26: PyTriton 0.7's
# bytes tensors fail to deserialise under numpy 2) and pytriton.tar.xz (the unpacked PyTriton 0.7.0 wheel,
# xz-compressed from 55 to 36 MB), installed into /tmp/site-serve for that phase only.
#   bash device_call.sh CARRY stash|check|sweep|all|eval|train|serve-eval [--skip-eval] [--limit N]
set -euo pipefail
CARRY=$(cd "$1" && pwd); PHASE=$2
STATE=/root/smollm2-state; mkdir -p "$STATE/whl" "$STATE/whl-serve"
for part in "$CARRY"/gguf.part0* "$CARRY"/pytriton.tar.xz; do [ -f "$part" ] && cp "$part" "$STATE/"; done
for folder in whl whl-serve; do
  if [ -d "$CARRY/$folder" ]; then cp "$CARRY/$folder"/*.whl "$STATE/$folder/"; fi
done
if [ ! -f "$STATE/prep/curated/training.jsonl" ] && [ -f "$CARRY/prep.tar.gz" ]; then
  tar -C "$STATE" -xzf "$CARRY/prep.tar.gz"
fi
if [ "$PHASE" = stash ]; then ls -la "$STATE" "$STATE"/whl*; exit 0; fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$STATE"/whl/*.whl
export PYTHONPATH=/tmp/site:$CARRY/repo/operator:$CARRY/repo/jobs
if [ "$PHASE" = serve-eval ]; then
  if [ ! -d /tmp/site-serve/pytriton ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-serve \
      "$STATE"/whl-serve/*.whl
    tar -C /tmp/site-serve -xJf "$STATE/pytriton.tar.xz"
  fi
  export PYTHONPATH=/tmp/site-serve:$PYTHONPATH
  python3 -c "import numpy, pytriton, tritonclient.http.aio, zmq, torch; print('serving stack: numpy', numpy.__version__)"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft, pydantic, gguf; print(torch.__version__, transformers.__version__, peft.__version__, pydantic.VERSION)"
python3 -m reasoning_operator.cli train --help > /dev/null && echo "train CLI imports"
if [ "$PHASE" = check ]; then
  mkdir -p "$STATE/check" && tar -C "$STATE/check" -xzf "$CARRY/prep-small.tar.gz"
  cd "$CARRY/repo" && exec python3 bench/outcome/outcome.py device --prep "$STATE/check/prep" --gguf none --phase check --out "${OUT:-/tmp/out}" --state "$STATE"
fi
GGUF=$STATE/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$GGUF" ]; then cat "$STATE"/gguf.part00 "$STATE"/gguf.part01 > "$GGUF"; fi
cd "$CARRY/repo"
python3 bench/outcome/outcome.py device --prep "$STATE/prep" --gguf "$GGUF" --phase "$PHASE" --out "${OUT:-/tmp/out}" --state "$STATE" "${@:3}"
