"""Shared fixtures for the training job's tests: a tiny Llama built from a config with the offline tokenizer,
and a small curated-style dataset (templated prompt in `input`, completion in `output`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest


def write_dataset(path: Path, count: int, seed: int = 0) -> Path:
    from transformers import AutoTokenizer

    from reasoning_jobs.common.assets import offline_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            thinking = i % 2 == 0
            a, b = rng.randint(1, 40), rng.randint(1, 40)
            prompt = tokenizer.apply_chat_template(
                [
                    {"role": "system", "content": f"detailed thinking {'on' if thinking else 'off'}"},
                    {"role": "user", "content": f"What is {a} + {b}?"},
                ],
                tokenize=False,
                add_generation_prompt=True,
            )
            answer = f"The answer is {a + b}."
            output = f"<think>\n{a} plus {b} makes {a + b}.\n</think>\n\n{answer}" if thinking else answer
            handle.write(json.dumps({"input": prompt, "output": output}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    return build_tiny_llama(
        tmp_path_factory.mktemp("tiny") / "model", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=128,
    )  # fmt: skip


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "training.jsonl", 192)
