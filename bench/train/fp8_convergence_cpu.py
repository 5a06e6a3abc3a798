"""Does LoRA still learn the same on an FP8-quantized base? A small CPU check of `fp8BaseWeights`' numerics.

Two LoRA runs of the training job's own step (`prepare_model` + `StepRunner` + the job's packing), identical
except for the base: (a) fp32 weights, (b) the seven projections quantized to e4m3 with per-row scales
(`torch._scaled_mm` has a CPU kernel). Same seed, data, order and dropout masks. The model is the quickstart's
tiny Llama (random init, 3 layers) and the data the quickstart's curated training set, so this says something
about optimisation on a quantized base, nothing about an 8B model's downstream accuracy.

    make quickstart   # once: writes the curated set below
    python bench/train/fp8_convergence_cpu.py --out bench/out/fp8   # --data: another training.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_DATA = ROOT / "runs/quickstart/workspace/runs/quickstart/curated/training.jsonl"
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]


def train(model_dir: Path, data: Path, fp8: bool, args: argparse.Namespace) -> list[float]:
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasoning_jobs.train.batching import step_micro_batches
    from reasoning_jobs.train.data import load_samples
    from reasoning_jobs.train.options import Resolved, RunOptions
    from reasoning_jobs.train.trainer import StepRunner, build_optimizer, prepare_model
    from reasoning_operator.api import LoraSpec, ModelSpec, TrainingSpec, TrainingStageConfig

    training = TrainingSpec(
        lora=LoraSpec(rank=args.rank, alpha=2 * args.rank, dropout=0.05),
        learning_rate=args.lr,
        max_steps=args.steps,
        global_batch_size=args.batch,
        micro_batch_size=args.batch,
        max_seq_length=1024,
        checkpoint_interval=args.steps,
        fp8_base_weights=fp8,
    )
    config = TrainingStageConfig(
        model=ModelSpec(name=str(model_dir)), training=training, data_path=str(data), output_dir="/tmp/unused"
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    samples = load_samples(data, tokenizer, training.max_seq_length)
    torch.manual_seed(training.seed)
    resolved = Resolved(device="cpu", precision="fp32", attention="varlen", fp8=fp8)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model, levers = prepare_model(base, config, RunOptions(compile=False), resolved)
    optimizer, scheduler = build_optimizer(model, config, torch.device("cpu"))
    runner = StepRunner(model, optimizer, scheduler, levers, torch.device("cpu"), None)
    losses = []
    for step in tqdm(range(args.steps), desc=f"{'fp8' if fp8 else 'fp32'} base", leave=False):
        batches = step_micro_batches(samples, step, args.batch, args.batch, 1024, True, False, 0, 0)
        losses.append(runner.step(batches).loss)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=QUICKSTART_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/fp8")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data} not found: run `make quickstart` first, or pass --data")
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llama(Path(tmp) / "tiny")
        curves = {"fp32": train(model_dir, args.data, False, args), "fp8": train(model_dir, args.data, True, args)}
    window = max(1, args.steps // 10)
    result: dict[str, Any] = {
        "steps": args.steps,
        "first_loss": {k: round(v[0], 4) for k, v in curves.items()},
        f"mean_loss_last_{window}_steps": {k: round(sum(v[-window:]) / window, 4) for k, v in curves.items()},
        "max_abs_gap": round(max(abs(a - b) for a, b in zip(curves["fp32"], curves["fp8"], strict=True)), 4),
        "curves": curves,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fp8_convergence.json").write_text(json.dumps(result, indent=1))
    plot(curves, args.out / "fp8_convergence.png")
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=1))


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=f"{label} base")
    ax.set(xlabel="optimizer step", ylabel="loss (completion tokens)", title="LoRA on an fp32 vs FP8 base (CPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
