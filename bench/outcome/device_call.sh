#!/usr/bin/env bash
# One call on the lent GPU machine (README.md "Reproduce"). The carried folder CARRY holds this repo's
# operator/ jobs/ bench/ examples/ pyproject.toml (under repo/), wheels the image lacks (whl/), the prepared
# data (prep.tar.gz) and one half of the GGUF (gguf.part00 or gguf.part01): a call carries at most 64 MiB, the
# GGUF is 94 MiB, so the halves go over two calls to a warm machine and wait in STATE. For serve-eval the
# serving stack waits there too: whl-serve/ (tritonclient, pyzmq, gevent, protobuf 6, ... and numpy 1.26) and
# pytriton.tar.xz (the unpacked PyTriton 0.7.0 wheel, xz-compressed from 55 to 36 MB), installed into a venv of
# their own for that phase only (see below).
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
PY=python3
if [ "$PHASE" = serve-eval ]; then
  # PyTriton 0.7's Python-backend stub runs in the environment of the server's sys.exec_prefix and ignores
  # PYTHONPATH; its bytes tensors fail to deserialise under numpy 2 ('unpack_from requires a buffer of at least
  # 84215049 bytes'), while the image's scipy and scikit-learn, which transformers' generation imports, fail under
  # numpy 1.26 ("module 'numpy' has no attribute 'long'", seen on the H200 2026-12-01). So the serving stack gets
  # its own venv: numpy 1.26 + pyzmq + PyTriton + tritonclient in its site-packages (what the stub sees), the
  # image's packages after them (image.pth), and the processes themselves see the image's numpy 2 first through
  # PYTHONPATH. Rehearsed on the CPU (numpy 2.3 on PYTHONPATH, 1.26 in the venv: a bytes request answered),
  # not yet on the GPU machine.
  VENV=/root/serve-venv; SITE=$VENV/lib/python3.12/site-packages
  if [ ! -d "$SITE/pytriton" ]; then
    python3 -m venv --without-pip "$VENV"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$STATE"/whl-serve/*.whl
    tar -C "$SITE" -xJf "$STATE/pytriton.tar.xz"
    python3 -c "import site; print(site.getsitepackages()[0])" > "$SITE/image.pth"
    IMAGE_NUMPY=$(python3 -c "import numpy, os; print(os.path.dirname(numpy.__file__))")
    mkdir -p /tmp/site-numpy2 && ln -sfn "$IMAGE_NUMPY" /tmp/site-numpy2/numpy
    if [ -d "$IMAGE_NUMPY.libs" ]; then ln -sfn "$IMAGE_NUMPY.libs" /tmp/site-numpy2/numpy.libs; fi
  fi
  PY=$VENV/bin/python
  export PYTHONPATH=/tmp/site-numpy2:$PYTHONPATH
  "$PY" -c "import numpy, pytriton, tritonclient.http.aio, zmq, torch, transformers; print('serving: numpy', numpy.__version__)"
  (unset PYTHONPATH; "$PY" -c "import numpy, zmq; print('the stub\'s environment: numpy', numpy.__version__)")
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, transformers, peft, pydantic, gguf; print(torch.__version__, transformers.__version__, peft.__version__, pydantic.VERSION)"
"$PY" -m reasoning_operator.cli train --help > /dev/null && echo "train CLI imports"
if [ "$PHASE" = check ]; then
  mkdir -p "$STATE/check" && tar -C "$STATE/check" -xzf "$CARRY/prep-small.tar.gz"
  cd "$CARRY/repo" && exec python3 bench/outcome/outcome.py device --prep "$STATE/check/prep" --gguf none --phase check --out "${OUT:-/tmp/out}" --state "$STATE"
fi
GGUF=$STATE/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$GGUF" ]; then cat "$STATE"/gguf.part00 "$STATE"/gguf.part01 > "$GGUF"; fi
cd "$CARRY/repo"
"$PY" bench/outcome/outcome.py device --prep "$STATE/prep" --gguf "$GGUF" --phase "$PHASE" --out "${OUT:-/tmp/out}" --state "$STATE" "${@:3}"
