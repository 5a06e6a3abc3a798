"""The vLLM engine options `reasoning serve` derives from the stage config (no engine started: the engine itself
runs in test_serve_vllm_cpu.py, which is where a wrong option shows as a wrong answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasoning_jobs.serve.vllm_backend import engine_options
from reasoning_operator.api import ModelSpec, ServingSpec, ServingStageConfig


def config(tmp_path: Path, gpus: int) -> ServingStageConfig:
    adapter = tmp_path / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16}))
    return ServingStageConfig(
        model=ModelSpec(name="/models/tiny"),
        serving=ServingSpec(backend="vllm", gpus=gpus, max_model_len=8192),
        adapter_path=str(adapter),
    )


def test_cpu_engine_keeps_an_empty_lora_slot_for_base_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM 0.32's CPU LoRA ops index the stacked adapter weights with a base token's -1: with one slot that is
    the adapter, so the CPU engine gets a second slot that stays zero (vllm-project/vllm#48421)."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # engine_options sets a default; restored after the test
    cpu = engine_options(config(tmp_path, gpus=0))
    assert (cpu.max_loras, cpu.max_lora_rank, cpu.dtype, cpu.enforce_eager) == (2, 16, "float32", True)
    gpu = engine_options(config(tmp_path, gpus=2))
    assert (gpu.max_loras, gpu.dtype, gpu.tensor_parallel_size, gpu.enforce_eager) == (1, "bfloat16", 2, False)
