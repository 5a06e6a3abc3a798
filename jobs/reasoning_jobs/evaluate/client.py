"""The KServe v2 evaluation client: infer through `tritonclient.http.aio`, bounded concurrency (one
connection pool of `concurrency` connections), retries from retrying.py."""

from __future__ import annotations

import json
import time
from typing import Any, Unpack

import numpy as np
from tenacity import RetryError, stop_after_attempt, stop_after_delay

from reasoning_operator.api.contract import (
    FINISH_REASON,
    NUM_OUTPUT_TOKENS,
    SAMPLING_PARAMETERS,
    SYSTEM_PROMPT,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

from .retrying import Completion, RetryingClient, RetryPolicy, ServerUnreachableError, host_port


class TritonChatClient(RetryingClient):
    """`async with TritonChatClient(url) as client: await client.generate(...)`."""

    def __init__(self, url: str, **policy: Unpack[RetryPolicy]) -> None:
        super().__init__(url, **policy)
        self._address = host_port(url)
        self._client: Any = None
        self._batched: dict[str, bool] = {}

    async def __aenter__(self) -> TritonChatClient:
        import tritonclient.http.aio as aioclient

        self._client = aioclient.InferenceServerClient(
            self._address, conn_limit=self.concurrency, conn_timeout=self.request_timeout
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def wait_ready(self, models: list[str], timeout: float = 300.0) -> None:
        """Wait (with backoff) until the server and every model are ready, then fail naming the URL.

        Models are polled too: a Triton in explicit model-control mode (PyTriton) reports the server ready
        while its models are still loading, and Triton cannot tell a loading model from an unknown one.
        """
        from tritonclient.utils import InferenceServerException

        missing: list[str] = list(models)

        class NotReadyError(ConnectionError):
            """Transient by construction (ConnectionError), so tenacity retries it."""

        async def check() -> None:
            nonlocal missing
            if not await self._client.is_server_ready():
                raise NotReadyError("server not ready")
            missing = [model for model in models if not await self._model_ready(model)]
            if missing:
                raise NotReadyError(f"model(s) {', '.join(missing)} not ready")

        try:
            async for attempt in self._retrying(stop_after_delay(timeout) | stop_after_attempt(10_000)):
                with attempt:
                    await check()
        except RetryError as error:
            cause = error.last_attempt.exception()
            if isinstance(cause, NotReadyError) and missing and "model" in str(cause):
                raise ServerUnreachableError(
                    f"Triton server at {self.url} has no ready model(s) {', '.join(missing)} after {timeout:.0f}s"
                ) from cause
            raise ServerUnreachableError(
                f"Triton server at {self.url} not reachable/ready after {timeout:.0f}s: {cause}"
            ) from cause
        except InferenceServerException as error:
            raise ServerUnreachableError(f"Triton server at {self.url}: {error}") from error

    async def _model_ready(self, model: str) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            ready: bool = await self._client.is_model_ready(model)
        except InferenceServerException:
            return False
        return ready

    async def _is_batched(self, model: str) -> bool:
        """Whether Triton batches `model` (max_batch_size > 0: the vllm backend's dynamic batcher), so that each
        input carries a batch dimension of 1. Asked once per model."""
        from tritonclient.utils import InferenceServerException

        if model not in self._batched:
            try:
                config = await self._client.get_model_config(model)
            except InferenceServerException as error:
                if self._transient(error):
                    raise  # retried by _request
                config = {}  # a server that does not tell: send the unbatched shape
            self._batched[model] = int(config.get("max_batch_size", 0) or 0) > 0
        return self._batched[model]

    @staticmethod
    def _inputs(user: str, system: str | None, sampling: dict[str, Any], batched: bool = False) -> list[Any]:
        import tritonclient.http.aio as aioclient

        values = {TEXT_INPUT: user, SAMPLING_PARAMETERS: json.dumps(sampling)}
        if system is not None:
            values[SYSTEM_PROMPT] = system
        shape = [1, 1] if batched else [1]
        tensors = []
        for name, value in values.items():
            tensor = aioclient.InferInput(name, shape, "BYTES")
            tensor.set_data_from_numpy(np.array([value.encode("utf-8")], dtype=object).reshape(shape))
            tensors.append(tensor)
        return tensors

    async def generate(self, model: str, user: str, system: str | None, sampling: dict[str, Any]) -> Completion:
        """One chat request; transient failures are retried, the last error is raised as RequestError."""
        batched, _ = await self._request(model, lambda: self._is_batched(model))
        inputs = self._inputs(user, system, sampling, batched)
        started = time.perf_counter()
        result, attempts = await self._request(model, lambda: self._client.infer(model, inputs))
        return Completion(
            text=_first_text(result.as_numpy(TEXT_OUTPUT)) or "",
            num_output_tokens=_first_int(result.as_numpy(NUM_OUTPUT_TOKENS)),
            finish_reason=_first_text(result.as_numpy(FINISH_REASON)),
            seconds=time.perf_counter() - started,
            attempts=attempts,
        )


def _first_text(array: Any) -> str | None:
    if array is None or np.size(array) == 0:
        return None
    value = np.asarray(array).reshape(-1)[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _first_int(array: Any) -> int | None:
    if array is None or np.size(array) == 0:
        return None
    return int(np.asarray(array).reshape(-1)[0])
