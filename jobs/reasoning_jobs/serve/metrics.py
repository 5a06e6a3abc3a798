"""Serving metrics by model and reasoning mode, on Prometheus (scraped from the OpenAI port's `/metrics`).

Triton's own metrics (port 8002) count requests and queue time per model but know nothing of tokens or of the
reasoning toggle; these do. `mode` is what the system prompt asked for: on, off, or none (no toggle).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from reasoning_operator.api.contract import REASONING_OFF, REASONING_ON

Mode = Literal["on", "off", "none"]
#: Seconds: a short answer on a GPU to a 20k-token reasoning answer on a CPU.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def mode_of(system: str | None) -> Mode:
    """The reasoning mode a system prompt selects (the toggle may sit inside a longer system prompt)."""
    text = (system or "").lower()
    if REASONING_ON in text:
        return "on"
    if REASONING_OFF in text:
        return "off"
    return "none"


@dataclass
class ServingMetrics:
    """One registry per server, so tests can start several in one process."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ("model", "mode")
        r = self.registry
        self.duration = Histogram(
            "reasoning_serving_request_duration_seconds",
            "Time from request to last token.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "reasoning_serving_requests", "Requests by model and reasoning toggle (toggle use).", labels, registry=r
        )
        self.prompt_tokens = Counter("reasoning_serving_prompt_tokens", "Prompt tokens.", labels, registry=r)
        self.completion_tokens = Counter(
            "reasoning_serving_completion_tokens", "Generated tokens (thinking included).", labels, registry=r
        )
        self.thinking_tokens = Counter(
            "reasoning_serving_thinking_tokens", "Generated tokens up to the reasoning block's end.", labels, registry=r
        )
        self.errors = Counter("reasoning_serving_errors", "Requests that ended in an error.", labels, registry=r)

    @contextmanager
    def request(self, model: str, system: str | None) -> Iterator[Mode]:
        """Count one request and time it; an exception escaping the block counts as an error."""
        mode = mode_of(system)
        self.requests.labels(model, mode).inc()
        start = time.perf_counter()
        try:
            yield mode
        except BaseException:
            self.errors.labels(model, mode).inc()
            raise
        finally:
            self.duration.labels(model, mode).observe(time.perf_counter() - start)

    def tokens(self, model: str, mode: Mode, prompt: int, completion: int, thinking: int) -> None:
        self.prompt_tokens.labels(model, mode).inc(prompt)
        self.completion_tokens.labels(model, mode).inc(completion)
        self.thinking_tokens.labels(model, mode).inc(thinking)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        data: bytes = generate_latest(self.registry)
        return data
