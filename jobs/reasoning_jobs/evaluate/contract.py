"""The serving stage's generate contract, as the evaluation client sends it (tensor names and reasoning
system prompts). A copy of reasoning_jobs.serve.contract, because jobs don't import each other; a test
checks that the two agree."""

from __future__ import annotations

from typing import Literal

TEXT_INPUT = "text_input"
SYSTEM_PROMPT = "system_prompt"
SAMPLING_PARAMETERS = "sampling_parameters"
TEXT_OUTPUT = "text_output"
NUM_OUTPUT_TOKENS = "num_output_tokens"
FINISH_REASON = "finish_reason"

REASONING_ON = "detailed thinking on"
REASONING_OFF = "detailed thinking off"

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def reasoning_system_prompt(mode: Literal["on", "off"] | str) -> str:
    if mode not in ("on", "off"):
        raise ValueError(f"reasoning mode must be 'on' or 'off', not {mode!r}")
    return REASONING_ON if mode == "on" else REASONING_OFF
