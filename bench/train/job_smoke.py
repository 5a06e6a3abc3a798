"""The training job's CLI on a GPU with a tiny model: CUDA defaults (bf16, varlen attention, compiled layers,
planned recomputation), a simulated preemption after step 6 and the automatic resume. Prints the metrics.

    python bench/train/job_smoke.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]


def write_data(path: Path, count: int) -> None:
    from transformers import AutoTokenizer

    from reasoning_jobs.common.assets import offline_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    rng = random.Random(0)
    with path.open("w") as handle:
        for i in range(count):
            on = i % 2 == 0
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            prompt = tokenizer.apply_chat_template(
                [
                    {"role": "system", "content": f"detailed thinking {'on' if on else 'off'}"},
                    {"role": "user", "content": f"What is {a} + {b}?"},
                ],
                tokenize=False,
                add_generation_prompt=True,
            )
            output = (f"<think>\n{a} plus {b} is {a + b}. " * rng.randint(1, 30) + "\n</think>\n\n" if on else "") + (
                f"The answer is {a + b}."
            )
            handle.write(json.dumps({"input": prompt, "output": output}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    args, extra = parser.parse_known_args()
    out = Path(args.out)
    work = Path("/tmp/job-smoke")
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    model = build_tiny_llama(work / "model", hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=2)
    write_data(work / "training.jsonl", 2000)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "reasoning_operator.cli", "train", "--model", str(model),
        "--data", str(work / "training.jsonl"), "--output-dir", str(work / "run"), "--max-steps", "8",
        "--global-batch-size", "64", "--micro-batch-size", "1", "--max-seq-length", "1024",
        "--checkpoint-interval", "4", "--learning-rate", "1e-3", "--no-progress", *extra,
    ]  # fmt: skip
    for name, stop in (("first", "5"), ("second", "")):
        with (out / f"smoke_{name}.txt").open("w") as log:
            code = subprocess.run(command, env={**env, "REASONING_TRAIN_STOP_AFTER_STEP": stop}, stdout=log, stderr=log)
        print(f"{name} run exit code {code.returncode}", flush=True)
    summary = work / "run" / "summary.json"
    if summary.is_file():
        print(summary.read_text())
        print((work / "run" / "metrics.jsonl").read_text())


if __name__ == "__main__":
    main()
