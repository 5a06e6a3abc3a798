"""The pytriton backend: a real Triton Inference Server (shipped in the PyTriton wheel) hosting a transformers
model under the base and adapter names, plus decoupled `NAME_stream` twins for `generate_stream`.

The answering models have Triton's dynamic batcher, like the vllm backend's (the same model config, so a client
sends the same shapes to either backend): requests that arrive while a batch generates are answered together
by the next one."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from reasoning_operator.api.contract import (
    FINISH_REASON,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    NUM_OUTPUT_TOKENS,
    SAMPLING_PARAMETERS,
    SYSTEM_PROMPT,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

from .contract import STREAM_SUFFIX, ChatRequest, SamplingParameters
from .python_library import prefer_interpreter_libpython
from .pytriton_stub import FAILED, patch_pytriton

if TYPE_CHECKING:
    from pytriton.triton import Triton

    from .chat_model import ChatModel

LOG = logging.getLogger(__name__)
#: what a bind function returns (the vllm backend's served names)
B = TypeVar("B")

#: The most requests one generate call answers together, and how long the batcher waits to fill a batch
#: when the model is idle (a busy model batches whatever queued meanwhile).
MAX_BATCH = 64
QUEUE_DELAY_MICROSECONDS = 2000

#: One request's answer: (text, num_output_tokens, finish_reason).
Answered = tuple[str, int, str]
#: Answers a batch of requests, in order.
Answer = Callable[[Sequence[ChatRequest]], list[Answered]]
#: Answers one request.
AnswerOne = Callable[[str, str | None, SamplingParameters], Answered]
#: Streams one request's answer as text pieces.
StreamAnswer = Callable[[str, str | None, SamplingParameters], Iterator[str]]


@dataclass(frozen=True)
class ServedModel:
    """One Triton model name and how it answers; `stream` adds the decoupled `NAME_stream` twin."""

    name: str
    answer: Answer
    stream: StreamAnswer | None = None


@dataclass(frozen=True)
class Ports:
    http: int = HTTP_PORT
    grpc: int = GRPC_PORT
    metrics: int = METRICS_PORT


def one_by_one(answer: AnswerOne) -> Answer:
    """An `Answer` that takes a batch's requests one after the other (scripted models in tests, benchmarks)."""

    def each(requests: Sequence[ChatRequest]) -> list[Answered]:
        return [answer(*request) for request in requests]

    return each


def _scalar(request: Any, name: str) -> str | None:
    if name not in request:
        return None
    value = np.asarray(request[name]).reshape(-1)
    if value.size == 0:
        return None
    item = value[0]
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


def decode_request(request: Any) -> ChatRequest:
    """Inputs of one Triton request → (user, system, sampling); bad input raises ValueError naming the tensor."""
    user = _scalar(request, TEXT_INPUT)
    if user is None:
        raise ValueError(f"missing input {TEXT_INPUT}")
    return user, _scalar(request, SYSTEM_PROMPT), SamplingParameters.parse(_scalar(request, SAMPLING_PARAMETERS))


def _inputs() -> list[Any]:
    from pytriton.model_config import Tensor

    return [
        Tensor(name=TEXT_INPUT, dtype=bytes, shape=(1,)),
        Tensor(name=SYSTEM_PROMPT, dtype=bytes, shape=(1,), optional=True),
        Tensor(name=SAMPLING_PARAMETERS, dtype=bytes, shape=(1,), optional=True),
    ]


def _text(value: str, batched: bool = False) -> Any:
    array = np.array([value.encode("utf-8")], dtype=object)
    return array.reshape(1, 1) if batched else array


def answered_response(text: str, tokens: int, reason: str) -> dict[str, Any]:
    """One request's response in a batched model (both backends' answering models)."""
    return {
        TEXT_OUTPUT: _text(text, batched=True),
        NUM_OUTPUT_TOKENS: np.array([[tokens]], dtype=np.int32),
        FINISH_REASON: _text(reason, batched=True),
    }


def failed_response(error: BaseException) -> dict[str, Any]:
    """The response of one request that failed: the stub answers it alone with Triton's error carrying `error`
    (`pytriton_stub`: the FAILED finish reason marks it)."""
    return answered_response(f"{type(error).__name__}: {error}", 0, FAILED)


def answer_isolated(answer: Answer, requests: Sequence[ChatRequest | Exception]) -> list[Answered | Exception]:
    """`answer` over a batch in one call, each request failing alone: a request that did not decode (an
    Exception here) is left out, and when the batch call raises, its requests are answered one by one so that
    only those that fail alone get their error."""
    results: dict[int, Answered | Exception] = {i: r for i, r in enumerate(requests) if isinstance(r, Exception)}
    valid = [(i, r) for i, r in enumerate(requests) if not isinstance(r, Exception)]
    try:
        answers = answer([r for _, r in valid]) if valid else []
    except Exception as error:
        if len(valid) == 1:
            results[valid[0][0]] = error
        else:
            LOG.warning("a batch of %d failed (%s: %s); answering its requests one by one", len(valid),
                        type(error).__name__, error)  # fmt: skip
            for i, request in valid:
                try:
                    results[i] = answer([request])[0]
                except Exception as alone:
                    results[i] = alone
    else:
        results.update(zip((i for i, _ in valid), answers, strict=True))
    return [results[i] for i in range(len(requests))]


def _decode(request: Any) -> ChatRequest | Exception:
    try:
        return decode_request(request)
    except ValueError as error:
        return error


def _infer_function(answer: Answer) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """The batcher's requests (each of batch size 1) → one `answer` call → one response each; a request that
    fails gets its own error response (`failed_response`), the others their answers."""

    def infer(requests: list[Any]) -> list[dict[str, Any]]:
        results = answer_isolated(answer, [_decode(request) for request in requests])
        LOG.debug("answered a batch of %d", len(requests))
        return [failed_response(r) if isinstance(r, Exception) else answered_response(*r) for r in results]

    return infer


def _stream_function(stream: StreamAnswer) -> Callable[[list[Any]], Iterator[list[dict[str, Any]]]]:
    def infer(requests: list[Any]) -> Iterator[list[dict[str, Any]]]:
        for request in requests:
            for piece in stream(*decode_request(request)):
                yield [{TEXT_OUTPUT: _text(piece)}]

    return infer


def bind_models(triton: Triton, models: Sequence[ServedModel], instances: int = 1) -> list[str]:
    """Bind each model (and its stream twin); `instances` > 1 runs that many requests of one model at once."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    names = []
    outputs = [
        Tensor(name=TEXT_OUTPUT, dtype=bytes, shape=(1,)),
        Tensor(name=NUM_OUTPUT_TOKENS, dtype=np.int32, shape=(1,)),
        Tensor(name=FINISH_REASON, dtype=bytes, shape=(1,)),
    ]
    for model in models:
        triton.bind(
            model_name=model.name,
            infer_func=[_infer_function(model.answer)] * instances,
            inputs=_inputs(),
            outputs=outputs,
            config=ModelConfig(
                batching=True,
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=QUEUE_DELAY_MICROSECONDS),
            ),
            strict=True,
        )
        names.append(model.name)
        if model.stream is not None:
            triton.bind(
                model_name=model.name + STREAM_SUFFIX,
                infer_func=_stream_function(model.stream),
                inputs=_inputs(),
                outputs=[Tensor(name=TEXT_OUTPUT, dtype=bytes, shape=(1,))],
                config=ModelConfig(batching=False, decoupled=True),
                strict=True,
            )
            names.append(model.name + STREAM_SUFFIX)
    return names


def start_triton(
    models: Sequence[ServedModel], ports: Ports, host: str = "0.0.0.0", instances: int = 1, attempts: int = 5
) -> Triton:
    """Start Triton in the background with `models` bound and loaded; the caller stops it (`.stop()`).

    The stubs run PyTriton's code with two changes (`pytriton_stub.py`: a patient handshake, one error per failed
    request); a load that still fails (a stub that dies starting) retries the whole start after a pause that
    grows.
    """
    triton, _ = run_triton(lambda triton: bind_models(triton, models, instances=instances), ports, host, attempts)
    return triton


def check_triton_binaries(pytriton_dir: Path) -> None:
    """Refuse, naming the file, a PyTriton whose Triton binaries are not executable (a wheel unpacked by a tool
    that drops file modes, as Python's zipfile does): PyTriton itself says only `CommandNotFound: <path>`."""
    binaries = [pytriton_dir / "tritonserver" / "bin" / "tritonserver"]
    binaries += sorted((pytriton_dir / "tritonserver").glob("python_backend_stubs/*/triton_python_backend_stub"))
    for binary in binaries:
        if binary.is_file() and not os.access(binary, os.X_OK):
            raise RuntimeError(
                f"{binary} is not executable: PyTriton's wheel was unpacked without file modes "
                "(install it with pip or uv, or chmod +x its tritonserver/bin and python_backend_stubs files)"
            )


def run_triton(bind: Callable[[Triton], B], ports: Ports, host: str, attempts: int) -> tuple[Triton, B]:
    """Triton started with what `bind` binds, retried whole (pauses that grow) up to `attempts` times."""
    import pytriton

    check_triton_binaries(Path(pytriton.__file__).parent)
    prefer_interpreter_libpython()
    patch_pytriton()
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        http_address=host,
        http_port=ports.http,
        grpc_address=host,
        grpc_port=ports.grpc,
        metrics_address=host,
        metrics_port=ports.metrics,
        allow_gpu_metrics=False,
        exit_timeout_secs=5,
    )
    for attempt in range(1, attempts + 1):
        triton = Triton(config=config)
        try:
            bound = bind(triton)
            triton.run()
            return triton, bound
        except Exception as error:
            triton.stop()
            if attempt == attempts:
                raise
            LOG.warning(
                "Triton start failed (attempt %d/%d), retrying: %s: %s", attempt, attempts, type(error).__name__, error
            )
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def chat_models(chat: ChatModel, base_name: str, adapter_name: str | None, stream: bool) -> list[ServedModel]:
    """The base name (adapter off) and, when an adapter is loaded, the adapter name (adapter on)."""

    def answering(use_adapter: bool) -> Answer:
        def answer(requests: Sequence[ChatRequest]) -> list[Answered]:
            outs = chat.generate_batch(requests, use_adapter=use_adapter)
            return [(out.text, out.num_output_tokens, out.finish_reason) for out in outs]

        return answer

    def streaming(use_adapter: bool) -> StreamAnswer:
        def answer(user: str, system: str | None, params: SamplingParameters) -> Iterator[str]:
            return chat.stream(user, system, params, use_adapter=use_adapter)

        return answer

    served = [ServedModel(base_name, answering(False), streaming(False) if stream else None)]
    if adapter_name is not None and chat.has_adapter:
        served.append(ServedModel(adapter_name, answering(True), streaming(True) if stream else None))
    return served
