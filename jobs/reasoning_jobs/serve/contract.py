"""The serving job's side of the generate contract: how it parses the sampling-parameters tensor, and the
name of each model's streaming twin. The tensor names, the served model names and the reasoning system
prompts are the wire contract's (`reasoning_operator.api.contract`), which the evaluation job speaks too.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasoning_operator.api.contract import SAMPLING_PARAMETERS

#: Suffix of the decoupled twin of each model, served for `/v2/models/NAME_stream/generate_stream`.
STREAM_SUFFIX = "_stream"


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


#: One chat request, decoded: user message, system prompt (the reasoning toggle), sampling parameters.
ChatRequest = tuple[str, str | None, SamplingParameters]
