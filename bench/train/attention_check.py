"""Attention kernels for the training job's packed rows, one against another on the GPU: correctness and speed.

The job's packed rows hold several samples that must not attend to each other. It runs them through
`torch.nn.attention.varlen.varlen_attn` (PyTorch's Flash-Attention 2 kernels) and a row holding one sample
through causal SDPA. This script times forward + backward of each candidate on the benchmark's rows
(Llama-3.1-8B attention: 32 query heads, 8 KV heads, head dim 128; 8,192-token rows; packed samples with the
benchmark's log-normal lengths, mean 1,100) and compares outputs and input gradients with the varlen kernel's:

- `varlen-fa2`: the job's kernel today;
- `nested-cudnn` / `nested-flash`: SDPA over a jagged nested tensor built on the same packed buffer, with the
  backend forced (K/V heads repeated: nested SDPA takes no `enable_gqa`);
- `dense-*`: one 8,192-token sample, causal SDPA with each backend forced (the job's path for a full row);
- `varlen-fa4`: Flash-Attention 4's CuTe DSL kernels (`flash_attn.cute`, Hopper and Blackwell), where the
  `flash-attn-4` package is installed (not on the benchmark image: carried as wheels).

    python3 bench/train/attention_check.py --out DIR      # JSON lines in DIR/attention.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    *(str(Path(__file__).resolve().parents[2] / p) for p in ("jobs", "operator")),
]
from bench_lora import attention_keys, sample_lengths  # noqa: E402

HEADS, KV_HEADS, DIM = 32, 8, 128
Tensors = dict[str, torch.Tensor]


def packed_lengths(seq_len: int, mean: int, seed: int) -> list[int]:
    """One row's sample lengths, next-fit as the job packs them (the last sample is cut to fill the row)."""
    rng = random.Random(seed)
    lengths: list[int] = []
    for length in sample_lengths(64, mean, seq_len, rng):
        if sum(lengths) + length > seq_len:
            break
        lengths.append(length)
    if sum(lengths) < seq_len:
        lengths.append(seq_len - sum(lengths))
    return lengths


def timed(fn: Callable[[], torch.Tensor], grads: list[torch.Tensor], reps: int) -> float:
    """Median milliseconds of forward + backward."""
    times = []
    for i in range(reps + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()  # type: ignore[no-untyped-call]
        out = fn()
        out.backward(grads[0])
        end.record()  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))  # type: ignore[no-untyped-call]
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--mean-len", type=int, default=1100)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--kernels", default="", help="comma-separated kernel names to run (default: all)")
    args = parser.parse_args()
    wanted = {k for k in args.kernels.split(",") if k}
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from reasoning_jobs.train import attention as attention_module

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    lengths = packed_lengths(args.seq_len, args.mean_len, seed=7)
    total = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=torch.bfloat16, generator=gen).requires_grad_()

    q, k, v = leaf(total, HEADS, DIM), leaf(total, KV_HEADS, DIM), leaf(total, KV_HEADS, DIM)
    grad_out = [torch.randn(total, HEADS, DIM, device=device, dtype=torch.bfloat16, generator=gen)]
    scale = DIM**-0.5
    longest = max(lengths)

    def varlen() -> torch.Tensor:
        # The job's own function (it adapts to this PyTorch's varlen_attn signature and GQA support).
        as_bhsd = [t.unsqueeze(0).transpose(1, 2) for t in (q, k, v)]
        out, _ = attention_module.varlen_attention_forward(
            None, *as_bhsd, None, scaling=scale, cu_seq_lens_q=cu, max_length_q=longest
        )
        return out.reshape(total, HEADS, DIM)

    def nested(backend: Any) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            rep = HEADS // KV_HEADS
            kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            offsets = cu.to(torch.int64)
            qn, kn, vn = (
                torch.nested.nested_tensor_from_jagged(t, offsets=offsets, max_seqlen=longest).transpose(1, 2)
                for t in (q, kk, vv)
            )
            with sdpa_kernel([backend]):
                o = torch.nn.functional.scaled_dot_product_attention(qn, kn, vn, is_causal=True, scale=scale)
            return o.transpose(1, 2).values()

        return run

    flops = 4 * attention_keys(lengths) * HEADS * DIM * 3.5  # fwd (2 matmuls) + bwd (5 matmuls) = 3.5x fwd

    def record(
        name: str,
        fn: Callable[[], torch.Tensor],
        reference: Tensors | None,
        leaves: tuple[torch.Tensor, ...] = (q, k, v),
        grad: torch.Tensor = grad_out[0],
        work: float = flops,
    ) -> tuple[dict[str, Any], Tensors | None]:
        """One kernel's row (diffs against `reference` when given) and its outputs and input gradients."""
        row: dict[str, Any] = {"kernel": name, "tokens": grad.numel() // (HEADS * DIM)}
        row["gpu"] = torch.cuda.get_device_name()
        try:
            for t in leaves:
                t.grad = None
            started = time.perf_counter()
            out = fn()
            out.backward(grad)
            torch.cuda.synchronize()
            row["first_call_s"] = round(time.perf_counter() - started, 2)  # includes any JIT compilation
            grads = [t.grad for t in leaves]
            assert all(g is not None for g in grads)
            named = zip(("dq", "dk", "dv"), grads, strict=True)
            got = {"out": out.detach().float(), **{n: g.float() for n, g in named}}  # type: ignore[union-attr]
            if reference is not None:
                for key, value in got.items():
                    row[f"max_abs_diff_{key}"] = float((value - reference[key]).abs().max())
            ms = timed(fn, [grad], args.reps)
            row.update(ms_fwd_bwd=round(ms, 3), tflops=round(work / ms / 1e9, 1))
            return row, got
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
            return row, None

    def fa4() -> torch.Tensor:
        from flash_attn.cute import flash_attn_varlen_func

        out = flash_attn_varlen_func(
            q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest, max_seqlen_k=longest,
            softmax_scale=scale, causal=True,
        )  # fmt: skip
        return out[0] if isinstance(out, tuple) else out

    ref_row, tensors = record("varlen-fa2", varlen, None)
    rows = [ref_row]
    for name, fn in (
        ("varlen-fa4", fa4),
        ("nested-cudnn", nested(SDPBackend.CUDNN_ATTENTION)),
        ("nested-flash", nested(SDPBackend.FLASH_ATTENTION)),
    ):
        if not wanted or name in wanted:
            rows.append(record(name, fn, tensors)[0])
    if wanted and not wanted & {"dense-flash", "dense-cudnn", "dense-pytorch-pick", "job-dense"}:
        write_rows(out_dir, rows)
        return

    # One sample filling the row: dense causal SDPA with each backend forced, PyTorch's own pick, and the job's
    # function (which prefers cuDNN); all against Flash.
    dq, dk, dv = (
        leaf(1, HEADS, args.seq_len, DIM),
        leaf(1, KV_HEADS, args.seq_len, DIM),
        leaf(1, KV_HEADS, args.seq_len, DIM),
    )
    dgrad = torch.randn(1, HEADS, args.seq_len, DIM, device=device, dtype=torch.bfloat16, generator=gen)
    dense_flops = 4 * attention_keys([args.seq_len]) * HEADS * DIM * 3.5

    def dense(backend: Any) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            if backend is None:  # PyTorch's own choice
                return torch.nn.functional.scaled_dot_product_attention(
                    dq, dk, dv, is_causal=True, scale=scale, enable_gqa=True
                )
            with sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(
                    dq, dk, dv, is_causal=True, scale=scale, enable_gqa=True
                )

        return run

    def job_dense() -> torch.Tensor:
        cu_one = torch.tensor([0, args.seq_len], dtype=torch.int32, device=device)
        out, _ = attention_module.varlen_attention_forward(
            None, dq, dk, dv, None, scaling=scale, cu_seq_lens_q=cu_one, max_length_q=args.seq_len
        )
        return out.transpose(1, 2)

    dense_leaves = (dq, dk, dv)
    flash_row, flash = record("dense-flash", dense(SDPBackend.FLASH_ATTENTION), None, dense_leaves, dgrad, dense_flops)
    rows.append(flash_row)
    for name, fn in (
        ("dense-cudnn", dense(SDPBackend.CUDNN_ATTENTION)),
        ("dense-pytorch-pick", dense(None)),
        ("job-dense", job_dense),
    ):
        rows.append(record(name, fn, flash, dense_leaves, dgrad, dense_flops)[0])

    write_rows(out_dir, rows)


def write_rows(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    with (out_dir / "attention.jsonl").open("w") as fh:
        for row in rows:
            print(json.dumps(row), flush=True)
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
