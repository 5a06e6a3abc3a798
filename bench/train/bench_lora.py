"""LoRA SFT throughput on one GPU: naive transformers+PEFT baseline vs the training job's own path.

Llama-3.1-8B architecture with random bf16 weights (built on the meta device, materialised on the GPU; no
download), LoRA r64/alpha128 on q,k,v,o,gate,up,down with the spec's default dropout (0, the reference
recipe's), AdamW (fused), 8192-token micro batches.

  (a) baseline: transformers + PEFT, `gradient_checkpointing_enable()`, SDPA, micro batch 1 (one 8192-token
      sequence), `model(input_ids, labels=...)` with full fp32 logits.
  (b) project: `reasoning_jobs.train` — `prepare_model` + `StepRunner` + the job's packing — with the levers
      given on the command line (attention, recomputed layers, chunked loss, compile).

Each variant runs in its own process (clean GPU memory); results are JSON lines. Model FLOPs per token use the
convention of shared/reference-figures.md: 4·N (forward + input-gradient backward through frozen weights) plus
8·L·d·k̄ for causal attention, k̄ = mean number of keys a token attends to (within its own sample when packed);
recomputation is not counted. MFU = model FLOP/s / 989 TFLOP/s (H100 SXM dense bf16).

    python bench/train/bench_lora.py --all --out DIR            # the GPU run
    python bench/train/bench_lora.py --all --tiny --out DIR     # CPU smoke test of the same code
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]

PEAK_TFLOPS = 989.0
LLAMA_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
TINY = {
    "vocab_size": 2050,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}

#: What the training job does by default (the compiled variants get 4 warm-up steps: compilation stays out).
JOB: dict[str, Any] = {"kind": "project", "recompute": "auto", "compile": True, "warmup": 4}

#: name -> variant. kind: baseline | project; data: full (one seq_len sample per row) | docs (packed samples).
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"kind": "baseline", "data": "full"},
    "proj-gc32-full": {"kind": "project", "data": "full", "recompute": 32},
    "proj-gc32-docs": {"kind": "project", "data": "docs", "recompute": 32},
    "proj-gc16-docs": {"kind": "project", "data": "docs", "recompute": 16},
    "proj-gc8-docs": {"kind": "project", "data": "docs", "recompute": 8},
    "proj-gc0-docs": {"kind": "project", "data": "docs", "recompute": 0},
    "proj-gc16-sdpa-docs": {"kind": "project", "data": "docs", "recompute": 16, "attention": "sdpa"},
    "proj-gc4-docs": {"kind": "project", "data": "docs", "recompute": 4},
    "proj-gc8-compile-docs": {"kind": "project", "data": "docs", "recompute": 8, "compile": True, "warmup": 4},
    "proj-gc4-compile-docs": {"kind": "project", "data": "docs", "recompute": 4, "compile": True, "warmup": 4},
    "proj-gc0-compile-docs": {"kind": "project", "data": "docs", "recompute": 0, "compile": True, "warmup": 4},
    # The job's defaults on CUDA: varlen attention, chunked loss, compiled and tuned layers, recompute as memory
    # needs; `fp8` adds spec.training.fp8BaseWeights (FP8 matmuls on the frozen projections).
    "job-default-docs": {**JOB, "data": "docs"},
    "job-default-full": {**JOB, "data": "full"},
    # The job's default maxSeqLength (16,384) packs two full 8k samples into one micro batch: its default shape
    # for 8k rows (attention stays within each sample).
    "job-default-full-mb2": {**JOB, "data": "full", "micro_batch": 2},
    "job-fp8-full-mb2": {**JOB, "data": "full", "micro_batch": 2, "fp8": True},
    "job-default-docs-16k": {**JOB, "data": "docs", "seq_len": 16384},
    "job-fp8-docs": {**JOB, "data": "docs", "fp8": True},
    "job-fp8-full": {**JOB, "data": "full", "fp8": True},
    "job-fp8-docs-16k": {**JOB, "data": "docs", "seq_len": 16384, "fp8": True},
    # LoRA dropout 0.05 (the spec's default before it followed the reference recipe's 0), both sides.
    "baseline-drop05": {"kind": "baseline", "data": "full", "lora_dropout": 0.05},
    "job-fp8-drop05-docs": {**JOB, "data": "docs", "fp8": True, "lora_dropout": 0.05},
    # Single-sample rows through Flash-Attention 2 instead of cuDNN (the job's preference), for comparison.
    "job-fp8-flash-full": {**JOB, "data": "full", "fp8": True, "dense_backends": ["FLASH_ATTENTION"]},
    # Micro batch 2: packed rows of 2 x 8,192 tokens (samples still <= 8,192), memory freed by FP8 and no dropout.
    "job-fp8-mb2-docs": {**JOB, "data": "docs", "fp8": True, "micro_batch": 2},
    "job-mb2-docs": {**JOB, "data": "docs", "micro_batch": 2},  # the same in bf16 (the job's default precision)
    # Packed rows through PyTorch's varlen kernel (Flash-Attention 2) even where Flash-Attention 4 is installed.
    "job-fp8-mb2-fa2-docs": {**JOB, "data": "docs", "fp8": True, "micro_batch": 2, "fa4": False},
    # Micro batch 2 with no whole layer recomputed: inductor's partitioner instead recomputes the cheapest ops
    # (elementwise: norms, SiLU*up) inside every layer until the saved activations fit the budget's fraction.
    "job-fp8-mb2-b80-docs": {
        **JOB,
        "data": "docs",
        "fp8": True,
        "micro_batch": 2,
        "recompute": 0,
        "activation_budget": 0.8,
    },
    "job-fp8-mb2-b70-docs": {
        **JOB,
        "data": "docs",
        "fp8": True,
        "micro_batch": 2,
        "recompute": 0,
        "activation_budget": 0.7,
    },
    "job-fp8-eager-docs": {"kind": "project", "data": "docs", "recompute": "auto", "compile": False, "fp8": True},
    # Peers: what a transformers user who wants speed picks. The naive script's step with Liger Kernel's fused
    # RMSNorm/SwiGLU/RoPE and fused linear cross-entropy patched into the model before PEFT, with HF gradient
    # checkpointing on and off (`peer` marks the rows the table's "x best peer" divides by).
    "liger-gc-full": {"kind": "baseline", "data": "full", "liger": True, "peer": True},
    "liger-full": {"kind": "baseline", "data": "full", "liger": True, "checkpointing": False, "peer": True},
    "liger-gc-full-16k": {"kind": "baseline", "data": "full", "seq_len": 16384, "liger": True, "peer": True},
    "liger-full-16k": {
        "kind": "baseline",
        "data": "full",
        "seq_len": 16384,
        "liger": True,
        "checkpointing": False,
        "peer": True,
    },
    # Unsloth: its FastLanguageModel loads the same random weights from a local directory (written once per
    # machine by this script: it only loads from disk) and wraps them with its own LoRA; "unsloth" gradient
    # checkpointing (its offloaded variant, what its docs recommend) or none.
    "unsloth-gc-full": {"kind": "unsloth", "data": "full", "checkpointing": "unsloth", "peer": True},
    "unsloth-full": {"kind": "unsloth", "data": "full", "checkpointing": False, "peer": True},
    "unsloth-gc-full-16k": {
        "kind": "unsloth",
        "data": "full",
        "seq_len": 16384,
        "checkpointing": "unsloth",
        "peer": True,
    },
    "unsloth-full-16k": {"kind": "unsloth", "data": "full", "seq_len": 16384, "checkpointing": False, "peer": True},
    "baseline-16k": {"kind": "baseline", "data": "full", "seq_len": 16384},
    "job-default-full-16k": {**JOB, "data": "full", "seq_len": 16384},
    "job-fp8-full-16k": {**JOB, "data": "full", "seq_len": 16384, "fp8": True},
}


def build_model(arch: dict[str, Any], device: str, dtype: Any) -> Any:
    """Random weights without a checkpoint: construct on meta, allocate on the device, fill in place."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**arch)
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(dtype)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(1234)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
        rotary = model.model.rotary_emb
        with torch.device(device):  # inv_freq is a non-persistent buffer: to_empty left it uninitialised
            model.model.rotary_emb = type(rotary)(config=config)
    return model


def sample_lengths(count: int, mean: int, cap: int, rng: random.Random) -> list[int]:
    """Log-normal sample lengths (a long tail, as SFT data has), clipped to [64, cap]."""
    sigma = 0.8
    mu = math.log(mean) - sigma * sigma / 2
    return [max(64, min(cap, int(rng.lognormvariate(mu, sigma)))) for _ in range(count)]


def make_samples(data: str, seq_len: int, vocab: int, count: int, mean_len: int, seed: int) -> list[Any]:
    from reasoning_jobs.train.data import Sample

    rng = random.Random(seed)
    lengths = [seq_len] * count if data == "full" else sample_lengths(count, mean_len, seq_len, rng)
    samples = []
    for i, length in enumerate(lengths):
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = 0 if data == "full" else length // 6
        samples.append(Sample(input_ids=ids, prompt_length=prompt, line=i + 1))
    return samples


def attention_keys(seq_lengths: list[int]) -> float:
    """Σ over tokens of keys attended (causal, within own sample)."""
    return float(sum(n * (n + 1) / 2 for n in seq_lengths))


def lora_spec(dropout: float | None = None) -> Any:
    """r64/alpha128; dropout as given, else the spec's default."""
    from reasoning_operator.api import LoraSpec

    return LoraSpec(rank=64, alpha=128, **({} if dropout is None else {"dropout": dropout}))


def run_variant(name: str, variant: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    arch = TINY if args.tiny else LLAMA_8B
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    seq_len = variant.get("seq_len", args.seq_len)
    if variant["kind"] == "unsloth":
        model = unsloth_model(arch, seq_len, checkpointing=variant.get("checkpointing", "unsloth"))
    else:
        model = build_model(arch, device, dtype)
    # The base model's parameters (Unsloth's model already holds its adapter: its weights are not counted).
    n_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    layers, hidden = arch["num_hidden_layers"], arch["hidden_size"]
    samples = make_samples(variant["data"], seq_len, arch["vocab_size"], 4096, args.mean_len, seed=7)

    from reasoning_jobs.train.batching import step_micro_batches

    # Each optimizer step consumes `per_step` micro batches' worth of samples, built by the job's own packing.
    # A micro batch of `micro` packed rows is one padding-free row of micro x seq_len tokens (samples <= seq_len).
    rows = variant.get("micro_batch", 1)
    if variant["data"] == "full":
        per_step_samples = args.micro_per_step * rows
    else:
        per_step_samples = max(1, int(args.micro_per_step * rows * seq_len / args.mean_len))

    def batches(step: int) -> list[Any]:
        return step_micro_batches(samples, step, per_step_samples, rows, seq_len, True, False, 0, 0)

    result: dict[str, Any] = {"variant": name, **variant, "seq_len": seq_len, "params": n_params}
    if variant["kind"] == "baseline":
        step_fn = baseline_step_fn(
            model,
            device,
            dtype,
            variant.get("lora_dropout"),
            liger=variant.get("liger", False),
            checkpointing=variant.get("checkpointing", True),
        )
        if variant.get("liger"):
            from importlib.metadata import version

            result["liger_version"] = version("liger-kernel")
    elif variant["kind"] == "unsloth":
        from importlib.metadata import version

        step_fn = plain_step_fn(model, device, dtype)
        result["unsloth_version"] = version("unsloth")
    else:
        step_fn, levers = project_step_fn(model, variant, device, dtype, arch, seq_len)
        result["levers"] = str(levers)
        if levers.attention == "reasoning_varlen":
            from reasoning_jobs.train.attention import packed_kernel

            result["packed_kernel"] = packed_kernel(torch.device(device))
    if device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    timings: list[tuple[float, int, float, float]] = []
    warmup = variant.get("warmup", args.warmup)
    for step in range(warmup + args.steps):
        micro = batches(step)
        if device == "cuda":
            torch.cuda.synchronize()
        if step == warmup and device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        loss = step_fn(micro)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(mb.num_tokens for mb in micro)
        keys = sum(attention_keys(mb.seq_lengths) for mb in micro)
        if step == 0:
            result["first_step_loss"] = loss
            result["first_step_seconds"] = seconds
        if step >= warmup:
            timings.append((seconds, tokens, keys, loss))
        print(f"  {name} step {step} {seconds:.3f}s {tokens} tok loss {loss:.4f}", flush=True)
    if args.profile and device == "cuda":
        profile_step(step_fn, batches(warmup + args.steps), Path(args.out) / f"profile-{name}.txt")
    seconds = sorted(t[0] / t[1] for t in timings)[len(timings) // 2]  # median seconds per token
    tokens_total = sum(t[1] for t in timings)
    keys_per_token = sum(t[2] for t in timings) / tokens_total
    flops_per_token = 4 * n_params + 8 * layers * hidden * keys_per_token
    tokens_per_second = 1.0 / seconds
    result.update(
        tokens_per_second=round(tokens_per_second, 1),
        mean_keys_per_token=round(keys_per_token, 1),
        model_flops_per_token=flops_per_token,
        model_tflops=round(tokens_per_second * flops_per_token / 1e12, 1),
        mfu=round(tokens_per_second * flops_per_token / 1e12 / PEAK_TFLOPS, 4),
        peak_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None,
        last_loss=timings[-1][3],
        tokens_per_step=tokens_total / len(timings),
    )
    return result


def profile_step(step_fn: Any, micro: list[Any], path: Path) -> None:
    """One more step under the torch profiler: the kernels that take the GPU's time, largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step_fn(micro)
        torch.cuda.synchronize()
    averages = prof.key_averages()
    table = averages.table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    kernels = [(e.key, e.self_device_time_total, e.count) for e in averages if e.self_device_time_total > 0]
    groups: dict[str, float] = {}
    for key, micros, _ in kernels:
        group = kernel_group(key)
        groups[group] = groups.get(group, 0.0) + micros / 1e3
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    total = sum(groups.values())
    summary = {
        "total_ms": round(total, 2),
        "groups_ms": {k: round(v, 2) for k, v in ranked},
        "groups_share": {k: round(v / total, 4) for k, v in ranked},
        "kernels": sorted(([k, round(t / 1e3, 3), c] for k, t, c in kernels), key=lambda r: -float(r[1])),
    }
    path.with_suffix(".json").write_text(json.dumps(summary, indent=1))


def kernel_group(name: str) -> str:
    """Coarse kernel families of a LoRA step, to see where GPU time goes."""
    lowered = name.lower()
    if "qqtst" in lowered or "f8" in lowered or "e4m3" in lowered:
        return "fp8 gemm"
    if "flash" in lowered or "fmha" in lowered or "sdpa" in lowered or "attention" in lowered:
        return "attention"
    if "nvjet" in lowered or "gemm" in lowered or "cutlass" in lowered or "sm90_xmma" in lowered:
        return "bf16 gemm"
    if lowered.startswith("triton") and "amax" in lowered:
        return "triton: quantize (+fused)"
    if lowered.startswith("triton"):
        return "triton: other fused"
    if "adam" in lowered or "foreach" in lowered or "multi_tensor" in lowered:
        return "optimizer"
    if "copy" in lowered:
        return "copies"
    return "other aten"


def baseline_step_fn(
    model: Any, device: str, dtype: Any, dropout: float | None, liger: bool = False, checkpointing: bool = True
) -> Any:
    """The naive script: HF gradient checkpointing, full logits, one sequence per forward. With `liger`, the peer:
    Liger Kernel applied to the model instance before PEFT (its patched forward then computes the loss with the
    fused linear cross-entropy, never materialising the logits)."""

    from reasoning_jobs.train.modeling import apply_lora

    model.config.use_cache = False
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return plain_step_fn(apply_lora(model, lora_spec(dropout)), device, dtype)


def plain_step_fn(model: Any, device: str, dtype: Any) -> Any:
    """The naive script's step: HF's loss through `labels`, AdamW (fused) on the trainable parameters."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.001, fused=device == "cuda")

    def step(micro: list[Any]) -> float:
        model.train()
        total = 0.0
        for mb in micro:
            ids = torch.tensor(mb.input_ids, device=device)
            with torch.autocast(device_type=device, dtype=dtype, enabled=device == "cuda"):
                loss = model(input_ids=ids, labels=ids).loss
            (loss / len(micro)).backward()
            total += float(loss.detach()) / len(micro)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    return step


UNSLOTH_DIR = Path(os.environ.get("BENCH_UNSLOTH_DIR", "/tmp/bench-unsloth-llama"))


def unsloth_model(arch: dict[str, Any], seq_len: int, checkpointing: Any) -> Any:
    """The peer as Unsloth's docs run it: `FastLanguageModel.from_pretrained` (16-bit, no quantisation) and
    `get_peft_model` with the same LoRA. It loads only from disk, so the random weights of `build_model` (same
    seed) are written there once, with a word-level tokenizer of the model's vocabulary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from unsloth import FastLanguageModel  # before transformers: it patches transformers and PEFT on import

    if not (UNSLOTH_DIR / "config.json").exists():
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        model = build_model(arch, "cuda", torch.bfloat16)
        model.save_pretrained(UNSLOTH_DIR, safe_serialization=True)
        del model
        torch.cuda.empty_cache()
        vocab = {f"t{i}": i for i in range(arch["vocab_size"])}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="t0", eos_token="t1", pad_token="t2")
        fast.save_pretrained(UNSLOTH_DIR)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=str(UNSLOTH_DIR),
        max_seq_length=seq_len,
        dtype=torch.bfloat16,
        load_in_4bit=False,
        load_in_8bit=False,
        fix_tokenizer=False,
        use_gradient_checkpointing=checkpointing,
        local_files_only=True,
    )
    spec = lora_spec()
    return FastLanguageModel.get_peft_model(
        model,
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        bias="none",
        use_gradient_checkpointing=checkpointing,
        random_state=1234,
    )


def project_step_fn(
    model: Any, variant: dict[str, Any], device: str, dtype: Any, arch: dict[str, Any], seq_len: int
) -> Any:
    """The job's path: the same config objects, `levers_for`/`prepare_model`/`build_optimizer`/`StepRunner`."""
    import torch

    from reasoning_jobs.train import attention as attention_module
    from reasoning_jobs.train.options import Resolved, RunOptions
    from reasoning_jobs.train.trainer import StepRunner, build_optimizer, prepare_model
    from reasoning_operator.api import ModelSpec, TrainingSpec, TrainingStageConfig

    attention_module.DENSE_BACKENDS = tuple(variant.get("dense_backends", attention_module.DENSE_BACKENDS))
    attention_module.PREFER_FA4 = variant.get("fa4", attention_module.PREFER_FA4)
    if "activation_budget" in variant:  # read when the layers compile (first step)
        import torch._functorch.config as functorch_config

        functorch_config.activation_memory_budget = float(variant["activation_budget"])

    config = TrainingStageConfig(
        model=ModelSpec(name="random-llama"),
        training=TrainingSpec(
            lora=lora_spec(variant.get("lora_dropout")),
            max_steps=2000,
            micro_batch_size=variant.get("micro_batch", 1),
            max_seq_length=seq_len,
            fp8_base_weights=variant.get("fp8", False),
        ),
        data_path="/dev/null",
        output_dir="/tmp/bench-train",
    )
    attention = variant.get("attention", "varlen" if device == "cuda" else "sdpa")
    recompute = variant.get("recompute", "auto")
    options = RunOptions(
        device="auto",
        attention=attention,
        recompute_layers=None if recompute == "auto" else min(recompute, arch["num_hidden_layers"]),
        chunked_loss=variant.get("chunked_loss", True),
        compile=variant.get("compile", False),
    )
    precision = "bf16" if device == "cuda" else "fp32"
    resolved = Resolved(device=device, precision=precision, attention=attention, fp8=variant.get("fp8", False))
    model, levers = prepare_model(model, config, options, resolved)
    optimizer, scheduler = build_optimizer(model, config, torch.device(device))
    runner = StepRunner(model, optimizer, scheduler, levers, torch.device(device), dtype if device == "cuda" else None)
    return (lambda micro: runner.step(micro).loss), levers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", help="run one variant in this process")
    parser.add_argument("--all", action="store_true", help="run the variants, each in a subprocess")
    parser.add_argument("--only", default="", help="comma-separated variant names for --all")
    parser.add_argument("--extra", default="", help="JSON object of extra variants to add")
    parser.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke test)")
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--mean-len", type=int, default=1100, help="mean sample length for packed 'docs' data")
    parser.add_argument("--micro-per-step", type=int, default=2, help="micro batches per optimizer step")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="write a kernel profile of one extra step")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per variant")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    args = parser.parse_args()
    variants = dict(VARIANTS)
    if args.extra:
        variants.update(json.loads(args.extra))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.variant:
        try:
            result = run_variant(args.variant, variants[args.variant], args)
        except Exception as error:  # record OOMs and failures as results, not crashes
            traceback.print_exc()
            result = {
                "variant": args.variant,
                **variants[args.variant],
                "error": f"{type(error).__name__}: {error}"[:500],
            }
        with (out / "results.jsonl").open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print("RESULT " + json.dumps(result), flush=True)
        return
    names = [n for n in args.only.split(",") if n] or list(variants)
    forwarded = [a for a in sys.argv[1:] if a not in ("--all",)]
    for name in names:
        cmd = [sys.executable, __file__, "--variant", name, *forwarded]
        limit = args.timeout * (2 if variants[name].get("compile") else 1)
        try:
            subprocess.run(cmd, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            with (out / "results.jsonl").open("a") as handle:
                handle.write(json.dumps({"variant": name, "error": f"timeout after {limit}s"}) + "\n")
    summarize(out / "results.jsonl")


def summarize(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    base = next((r for r in rows if r.get("variant") == "baseline" and "tokens_per_second" in r), None)
    measured = [r for r in rows if "tokens_per_second" in r]
    # The best peer of the same row length: the 16k rows are compared with 16k peers.
    best_peer: dict[int, float] = {}
    for r in measured:
        if r.get("peer"):
            best_peer[r["seq_len"]] = max(best_peer.get(r["seq_len"], 0.0), r["tokens_per_second"])
    header = f"{'variant':28} {'tok/s':>9} {'xbase':>6} {'xpeer':>6} {'TFLOP/s':>8} {'MFU':>6} {'peakGB':>7}"
    print(header + f" {'loss0':>8}")
    for r in rows:
        if "tokens_per_second" not in r:
            print(f"{r['variant']:28} {r.get('error', '?')[:90]}")
            continue
        ratio = r["tokens_per_second"] / base["tokens_per_second"] if base else float("nan")
        peer = best_peer.get(r.get("seq_len", 0))
        versus_peer = r["tokens_per_second"] / peer if peer else float("nan")
        print(
            f"{r['variant']:28} {r['tokens_per_second']:9.0f} {ratio:6.2f} {versus_peer:6.2f} {r['model_tflops']:8.1f} "
            f"{r['mfu']:6.3f} {r['peak_gb'] or 0:7.1f} {r['first_step_loss']:8.4f}"
        )


if __name__ == "__main__":
    main()
