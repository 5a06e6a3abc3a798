"""The production backend: the Triton Inference Server that PyTriton's wheel ships, with one vLLM engine as
its model (NGC's Triton vLLM image cannot be pulled here; this is built from PyPI alone).

Triton serves the same contract as the pytriton backend (contract.py), so the evaluation job's tritonclient
and the OpenAI-style proxy work unchanged:

* `base` and `trained` (the adapter): KServe v2 infer and `/generate`. Dynamic batching hands Triton's
  queue to the engine a batch at a time, and each instance's async handler submits every request of its
  batch to the engine at once; vLLM's continuous batching then mixes all in-flight requests of both names.
* `base_stream` and `trained_stream`: decoupled twins for `/generate_stream` (one response per delta).

Both names share one engine and one copy of the weights (vLLM multi-LoRA). `reasoning serve` loads the engine
before Triton starts, so a model's `/v2/models/NAME/ready` means the engine can answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from reasoning_operator.api.contract import FINISH_REASON, NUM_OUTPUT_TOKENS, TEXT_OUTPUT

from .contract import STREAM_SUFFIX
from .metrics import ServingMetrics
from .pytriton_backend import Ports, _inputs, _text, answered_response, decode_request, failed_response, run_triton
from .vllm_engine import EngineOptions, VllmChat, adapter_rank

if TYPE_CHECKING:
    from pytriton.triton import Triton

    from reasoning_operator.api import ServingStageConfig

LOG = logging.getLogger(__name__)

#: Requests Triton hands one instance at once, and instances per name: up to 2 x 128 requests of one name reach
#: the engine together (the evaluation's concurrency is 64 by default). Each instance is a stub process.
MAX_BATCH = 128
INSTANCES = 2
#: GiB of KV cache on a CPU (vLLM's default is a quarter of the machine's memory).
CPU_KV_CACHE_GIB = "2"
#: LoRA slots on a CPU: one for the adapter and one that stays empty. vLLM's CPU LoRA ops (torch_ops/lora_ops.py,
#: 0.32) gather `weights[token_lora_indices]`, and a base-model token's index is -1: with one slot, -1 is the
#: adapter's slot, so a base request batched next to an adapter request got the adapter's weights (found by
#: test_concurrent_requests_all_answer_like_one_at_a_time; upstream fix not released: vllm-project/vllm#48421).
#: With two slots, -1 is the empty, all-zero one. vLLM's GPU kernels skip -1, so a GPU keeps one slot.
CPU_LORA_SLOTS = 2


def engine_options(config: ServingStageConfig) -> EngineOptions:
    """Engine options from the stage config; `gpus: 0` means vLLM's CPU build (float32, eager, small KV cache)."""
    serving = config.serving
    cpu = serving.gpus == 0
    if cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
    return EngineOptions(
        model=config.model.name,
        adapter_path=config.adapter_path,
        adapter_name=config.adapter_model_name,
        max_model_len=serving.max_model_len,
        max_lora_rank=adapter_rank(config.adapter_path),
        max_loras=CPU_LORA_SLOTS if cpu else 1,
        dtype="float32" if cpu else "bfloat16",
        gpu_memory_utilization=serving.gpu_memory_utilization,
        tensor_parallel_size=max(serving.gpus, 1),
        enforce_eager=cpu,
    )


class InFlight:
    """Counts requests being answered, so a graceful shutdown can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._count == 0, timeout=timeout)


def infer_function(
    chat: VllmChat, name: str, use_adapter: bool, metrics: ServingMetrics, in_flight: InFlight
) -> Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]:
    """A batch of Triton requests → all submitted to the engine at once → one response each."""

    async def answer(request: Any) -> dict[str, Any]:
        user, system, params = decode_request(request)
        with in_flight, metrics.request(name, system) as mode:
            out = await chat.generate(user, system, params, use_adapter)
            metrics.tokens(name, mode, out.prompt_tokens, out.num_output_tokens, out.thinking_tokens)
        return answered_response(out.text, out.num_output_tokens, out.finish_reason)

    async def infer(requests: list[Any]) -> list[dict[str, Any]]:
        """Each request fails alone: its exception becomes its own error response (`pytriton_stub`)."""
        results = await asyncio.gather(*(answer(request) for request in requests), return_exceptions=True)
        return [failed_response(r) if isinstance(r, BaseException) else r for r in results]

    return infer


def stream_function(
    chat: VllmChat, name: str, use_adapter: bool, metrics: ServingMetrics, in_flight: InFlight
) -> Callable[[list[Any]], AsyncIterator[list[dict[str, Any]]]]:
    """Decoupled: one response per engine delta (Triton sends each as it comes)."""

    async def infer(requests: list[Any]) -> AsyncIterator[list[dict[str, Any]]]:
        for request in requests:
            user, system, params = decode_request(request)
            with in_flight, metrics.request(name, system) as mode:
                text: list[str] = []
                count = 0
                async for delta in chat.stream(user, system, params, use_adapter):
                    count += len([t for t in delta.token_ids if t not in chat.stop_token_ids])
                    text.append(delta.text)
                    if delta.text:
                        yield [{TEXT_OUTPUT: _text(delta.text)}]
                prompt = len(chat.prompt_ids(user, system))
                metrics.tokens(name, mode, prompt, count, chat.thinking_tokens("".join(text)))

    return infer


def bind_vllm_models(
    triton: Triton, chat: VllmChat, base_name: str, adapter_name: str, metrics: ServingMetrics, in_flight: InFlight
) -> list[str]:
    """Bind `base` (+ `trained` when the engine has the adapter) and their `_stream` twins. Triton loads them in
    this order, the adapter's own name last, so its readiness (the Deployment's probe) means all are loaded."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    served = [(base_name, False)] + ([(adapter_name, True)] if chat.has_adapter else [])
    names = []
    for name, use_adapter in served:
        triton.bind(
            model_name=name + STREAM_SUFFIX,
            infer_func=stream_function(chat, name, use_adapter, metrics, in_flight),
            inputs=_inputs(),
            outputs=[Tensor(name=TEXT_OUTPUT, dtype=bytes, shape=(1,))],
            config=ModelConfig(batching=False, decoupled=True),
            strict=True,
        )
        triton.bind(
            model_name=name,
            infer_func=[infer_function(chat, name, use_adapter, metrics, in_flight) for _ in range(INSTANCES)],
            inputs=_inputs(),
            outputs=[
                Tensor(name=TEXT_OUTPUT, dtype=bytes, shape=(1,)),
                Tensor(name=NUM_OUTPUT_TOKENS, dtype=np.int32, shape=(1,)),
                Tensor(name=FINISH_REASON, dtype=bytes, shape=(1,)),
            ],
            config=ModelConfig(
                batching=True, max_batch_size=MAX_BATCH, batcher=DynamicBatcher(max_queue_delay_microseconds=2000)
            ),
            strict=True,
        )
        names += [name + STREAM_SUFFIX, name]
    return names


def start_vllm_triton(
    chat: VllmChat,
    ports: Ports,
    base_name: str,
    adapter_name: str,
    metrics: ServingMetrics,
    in_flight: InFlight,
    host: str = "0.0.0.0",
    attempts: int = 3,
) -> tuple[Triton, list[str]]:
    """Start Triton with the engine's models bound and loaded (the engine is started already)."""

    def bind(triton: Triton) -> list[str]:
        return bind_vllm_models(triton, chat, base_name, adapter_name, metrics, in_flight)

    return run_triton(bind, ports, host, attempts)


def drain(in_flight: InFlight, grace_seconds: float) -> bool:
    """Wait for in-flight requests (graceful shutdown); False if some were still running at the deadline."""
    start = time.monotonic()
    idle = in_flight.wait_idle(grace_seconds)
    LOG.info("drained in %.1fs (%d still in flight)", time.monotonic() - start, in_flight.count)
    return idle
