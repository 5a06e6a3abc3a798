"""The generate contract every served model honours (KServe v2 infer and `/v2/models/NAME/generate`).

The evaluation job speaks exactly this; it keeps its own copy of the names (jobs don't import each other)
and a test checks that both copies agree.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: User message (BYTES [1]); the chat template is applied on the server.
TEXT_INPUT = "text_input"
#: Optional system message (BYTES [1]); the reasoning toggle is `detailed thinking on|off`.
SYSTEM_PROMPT = "system_prompt"
#: Optional JSON object (BYTES [1]): max_tokens, temperature, top_p, seed.
SAMPLING_PARAMETERS = "sampling_parameters"
#: The generated text (BYTES [1]).
TEXT_OUTPUT = "text_output"
#: How many tokens were generated (INT32 [1]).
NUM_OUTPUT_TOKENS = "num_output_tokens"
#: "stop" (end of turn) or "length" (max_tokens reached) (BYTES [1]).
FINISH_REASON = "finish_reason"

#: Suffix of the decoupled twin of each model, served for `/v2/models/NAME_stream/generate_stream`.
STREAM_SUFFIX = "_stream"

REASONING_ON = "detailed thinking on"
REASONING_OFF = "detailed thinking off"


def reasoning_system_prompt(mode: Literal["on", "off"]) -> str:
    """The system prompt that turns reasoning on or off (Llama-Nemotron convention)."""
    return REASONING_ON if mode == "on" else REASONING_OFF


class SamplingParameters(BaseModel):
    """What a request may set; unknown keys are errors so that typos don't silently fall back to defaults."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=512, ge=1, le=1_048_576)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0)

    @classmethod
    def parse(cls, raw: bytes | str | None) -> SamplingParameters:
        """Parse the `sampling_parameters` tensor; a bad value raises ValueError naming the tensor."""
        if raw is None or raw in (b"", ""):
            return cls()
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as error:
            raise ValueError(f"{SAMPLING_PARAMETERS}: {error}") from error
