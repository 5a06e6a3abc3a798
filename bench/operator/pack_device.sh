#!/usr/bin/env bash
# The carry folders device_bench.sh unpacks on the lent machine (CPython 3.12, nothing installed that the operator
# needs, nothing reachable): OUT/op1 = the control plane's binaries (xz, first part), OUT/op2 = the rest of them,
# the operator's wheels at uv.lock's versions (+ cryptography for the test control plane's certificates) and the
# baseline operator tree (git archive of BASELINE_REF).
#   bash bench/operator/pack_device.sh .dev [BASELINE_REF]      # .dev is ignored (.git/info/exclude)
set -euo pipefail
OUT=$1; BASELINE_REF=${2:-370d152}
REPO=$(cd "$(dirname "$0")/../.." && pwd); cd "$REPO"
BIN_DIR=$(bash scripts/controlplane/build.sh)   # cached: prints the bin dir
WORK=$OUT/op-work; mkdir -p "$WORK" "$OUT/op1" "$OUT/op2/whl" "$OUT/op2/baseline"
if [ ! -f "$WORK/cp.tar.xz" ]; then tar -C "$(dirname "$BIN_DIR")" -c bin | xz -T0 -6 > "$WORK/cp.tar.xz.tmp" && mv "$WORK/cp.tar.xz.tmp" "$WORK/cp.tar.xz"; fi
rm -f "$WORK"/cp.tar.xz.part*; split -b 50M -d -a 2 "$WORK/cp.tar.xz" "$WORK/cp.tar.xz.part"
mv "$WORK/cp.tar.xz.part00" "$OUT/op1/"; mv "$WORK"/cp.tar.xz.part* "$OUT/op2/"
# pack_carry.py's cached downloader: one wheel per pin, CPython 3.12 on x86-64 Linux
{ uv export --extra operator --no-hashes --no-dev --no-emit-project | grep -v '^#\|^ ' | sed 's/ ;.*//'
  python3 -c "import sys; sys.path.insert(0, 'bench/outcome'); import pack_carry as p
for n in ('cryptography', 'cffi', 'pycparser'): print(f'{n}=={p.locked_version(n)}')"
} > "$WORK/reqs.txt"
python3 - "$WORK/reqs.txt" "$OUT/op2/whl" <<'PY'
import shutil, sys
sys.path.insert(0, "bench/outcome")
import pack_carry
for line in open(sys.argv[1]):
    if line.strip():
        shutil.copy(pack_carry.download(line.strip()), sys.argv[2])
PY
git archive "$BASELINE_REF" operator jobs crds | tar -x -C "$OUT/op2/baseline"
du -sh "$OUT"/op1 "$OUT"/op2
