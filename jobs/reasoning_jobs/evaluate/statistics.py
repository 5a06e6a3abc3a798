"""Scores of one (benchmark, model, mode) cell: accuracy with a 95% Wilson interval, unanswered rate, mean
thinking tokens and reasoning-toggle compliance."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reasoning_operator.api.contract import THINK_CLOSE, THINK_OPEN

#: Two-sided 95% normal quantile.
Z_95 = 1.959963984540054

_EMPTY_THINK = re.compile(re.escape(THINK_OPEN) + r"\s*" + re.escape(THINK_CLOSE))


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there is no trial."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def thinking_text(response: str) -> str:
    """What was thought: the text inside the think block (up to the end when it was never closed)."""
    if THINK_OPEN not in response:
        return ""
    inner = response.split(THINK_OPEN, 1)[1]
    return inner.split(THINK_CLOSE, 1)[0].strip()


def thinking_tokens(response: str, num_output_tokens: int | None) -> float:
    """Tokens spent thinking: the server's output token count × the think block's share of the characters,
    or the block's whitespace-separated words when the server did not report a count."""
    thought = thinking_text(response)
    if not thought:
        return 0.0
    if num_output_tokens is not None and response:
        return num_output_tokens * len(thought) / len(response)
    return float(len(thought.split()))


def complies(response: str, mode: str) -> bool:
    """Reasoning on: a think block opened and closed. Off: no think tags (an empty `<think></think>` counts
    as no thinking)."""
    if mode == "on":
        return THINK_OPEN in response and THINK_CLOSE in response.split(THINK_OPEN, 1)[1]
    without_empty = _EMPTY_THINK.sub("", response)
    return THINK_OPEN not in without_empty and THINK_CLOSE not in without_empty


@dataclass(frozen=True)
class CellScore:
    benchmark: str
    model: str
    mode: str
    n: int
    correct: int
    unanswered: int
    errors: int
    accuracy: float
    ci_low: float
    ci_high: float
    unanswered_rate: float
    mean_thinking_tokens: float
    compliance: float


def score_cell(
    benchmark: str,
    model: str,
    mode: str,
    correct: Sequence[bool],
    answered: Sequence[bool],
    errors: int,
    thinking: Sequence[float],
    compliant: Sequence[bool],
) -> CellScore:
    """Accuracy counts unanswered (and failed) questions as wrong, so every model is scored on the same n."""
    n = len(correct)
    k = sum(correct)
    low, high = wilson_interval(k, n)
    return CellScore(
        benchmark=benchmark,
        model=model,
        mode=mode,
        n=n,
        correct=k,
        unanswered=n - sum(answered),
        errors=errors,
        accuracy=k / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        unanswered_rate=(n - sum(answered)) / n if n else 0.0,
        mean_thinking_tokens=sum(thinking) / len(thinking) if thinking else 0.0,
        compliance=sum(compliant) / len(compliant) if compliant else 0.0,
    )
