"""FP8 frozen projection vs bf16, one layer's shapes of Llama-3.1-8B at 8,192 tokens: relative error of the
output and the input gradient, and forward + input-gradient time (eager and compiled). GPU only.

    python bench/train/fp8_linear_check.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]

SHAPES = {"q": (4096, 4096), "kv": (4096, 1024), "gate_up": (4096, 14336), "down": (14336, 4096)}


def main() -> None:
    import torch
    from torch.utils.benchmark import Timer

    from reasoning_jobs.train.fp8 import Fp8FrozenLinear

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, (k, n) in SHAPES.items():
        linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
        torch.nn.init.normal_(linear.weight, 0.0, 0.02)
        linear.weight.requires_grad_(False)
        fp8 = Fp8FrozenLinear(linear)
        x = torch.randn(args.tokens, k, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(args.tokens, n, device="cuda", dtype=torch.bfloat16)

        def fwd_bwd(module: torch.nn.Module, x: torch.Tensor = x, g: torch.Tensor = g) -> torch.Tensor:
            (grad,) = torch.autograd.grad(module(x), x, g)
            return grad

        ref_y, y = linear(x), fp8(x)
        ref_dx, dx = fwd_bwd(linear), fwd_bwd(fp8)
        row = {
            "shape": name,
            "k": k,
            "n": n,
            "rel_err_out": float((y.float() - ref_y.float()).norm() / ref_y.float().norm()),
            "rel_err_dx": float((dx.float() - ref_dx.float()).norm() / ref_dx.float().norm()),
        }
        flops = 2 * 2 * args.tokens * k * n
        compiled_fp8 = torch.compile(fp8)
        for label, module in (("bf16", linear), ("fp8", fp8), ("fp8_compiled", compiled_fp8)):
            for _ in range(3):
                fwd_bwd(module)
            seconds = Timer("f(m)", globals={"f": fwd_bwd, "m": module}).blocked_autorange(min_run_time=0.5).median
            row[f"{label}_ms"] = round(seconds * 1e3, 3)
            row[f"{label}_tflops"] = round(flops / seconds / 1e12, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fp8_linear.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
