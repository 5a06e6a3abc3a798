"""Serving metrics by model and mode, and the vLLM chat front's prompt and thinking-token counting (the parts
that need no engine; the engine itself is tested in test_serve_vllm_cpu.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasoning_jobs.common.assets import offline_tokenizer_path
from reasoning_jobs.serve.metrics import ServingMetrics, mode_of
from reasoning_jobs.serve.vllm_engine import EngineOptions, VllmChat, adapter_rank
from reasoning_operator.api.contract import REASONING_OFF, REASONING_ON


def sample(metrics: ServingMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_mode_follows_the_toggle_wherever_it_sits() -> None:
    assert mode_of(REASONING_ON) == "on"
    assert mode_of(f"You are helpful.\n{REASONING_OFF}") == "off"
    assert mode_of("You are helpful.") == mode_of(None) == "none"


def test_requests_tokens_and_errors_are_counted_by_model_and_mode() -> None:
    metrics = ServingMetrics()
    with metrics.request("trained", REASONING_ON) as mode:
        metrics.tokens("trained", mode, prompt=12, completion=30, thinking=20)
    with pytest.raises(ValueError, match="boom"), metrics.request("base", REASONING_OFF):
        raise ValueError("boom")
    assert sample(metrics, "reasoning_serving_requests_total", model="trained", mode="on") == 1
    assert sample(metrics, "reasoning_serving_completion_tokens_total", model="trained", mode="on") == 30
    assert sample(metrics, "reasoning_serving_thinking_tokens_total", model="trained", mode="on") == 20
    assert sample(metrics, "reasoning_serving_prompt_tokens_total", model="trained", mode="on") == 12
    assert sample(metrics, "reasoning_serving_errors_total", model="base", mode="off") == 1
    assert sample(metrics, "reasoning_serving_errors_total", model="trained", mode="on") == 0
    assert sample(metrics, "reasoning_serving_request_duration_seconds_count", model="base", mode="off") == 1
    assert b'reasoning_serving_requests_total{mode="on",model="trained"} 1.0' in metrics.exposition()


@pytest.fixture(scope="module")
def chat() -> VllmChat:
    return VllmChat(EngineOptions(model=str(offline_tokenizer_path())))


def test_prompt_is_the_tokenizers_chat_template(chat: VllmChat) -> None:
    ids = chat.prompt_ids("What is 2 + 2?", REASONING_ON)
    text = chat.tokenizer.decode(ids)
    assert text.startswith(chat.tokenizer.bos_token)
    assert "system<|end_header_id|>\n\ndetailed thinking on<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "system" not in chat.tokenizer.decode(chat.prompt_ids("hi", None))
    assert chat.stop_token_ids and chat.tokenizer.convert_tokens_to_ids("<|eot_id|>") in chat.stop_token_ids


def test_thinking_tokens_count_up_to_the_end_of_the_reasoning_block(chat: VllmChat) -> None:
    block = "<think>\nadd the numbers one by one\n</think>"
    expected = len(chat.tokenizer(block, add_special_tokens=False)["input_ids"])
    assert chat.thinking_tokens(block + "\n\nThe answer is 4.") == expected > 0
    assert chat.thinking_tokens("The answer is 4.") == 0


def test_adapter_rank_rounds_up_to_a_rank_vllm_serves(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 48}))
    assert adapter_rank(str(adapter)) == 64
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(ValueError, match="exceeds"):
        adapter_rank(str(adapter))
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        adapter_rank(str(tmp_path))
