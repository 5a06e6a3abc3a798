"""The evaluation client: KServe v2 infer through `tritonclient.http.aio`, bounded concurrency (one
connection pool of `concurrency` connections), retries with exponential backoff on transient errors.
A server_url ending in `/v1` selects the OpenAI-compatible client instead (openai_client.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

import numpy as np
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .contract import FINISH_REASON, NUM_OUTPUT_TOKENS, SAMPLING_PARAMETERS, SYSTEM_PROMPT, TEXT_INPUT, TEXT_OUTPUT

T = TypeVar("T")

#: HTTP statuses worth retrying (server busy, restarting, or a proxy in between failing).
TRANSIENT_STATUSES = {"408", "425", "429", "500", "502", "503", "504"}


class ServerUnreachableError(RuntimeError):
    """The server did not become ready (or stopped answering) within the retry budget."""


class RequestError(RuntimeError):
    """One request failed for good (a permanent error, or transient ones past the retries)."""


@dataclass(frozen=True)
class Completion:
    text: str
    num_output_tokens: int | None
    finish_reason: str | None
    seconds: float
    attempts: int


def host_port(url: str) -> str:
    """`http://host:port/` → `host:port` (what tritonclient wants); rejects anything but plain http."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"server_url {url!r}: expected http://HOST[:PORT]")
    if parts.path not in ("", "/"):
        raise ValueError(f"server_url {url!r}: must not have a path")
    return parts.netloc


def backoff(initial: float, maximum: float) -> Any:
    """Exponential backoff with jitter of the same order as the first wait."""
    return wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)


def is_transient(error: BaseException) -> bool:
    """Connection failures, time-outs and 5xx/429 answers; a 400 (bad request, unknown model) is permanent."""
    import aiohttp
    from tritonclient.utils import InferenceServerException

    if isinstance(error, asyncio.TimeoutError | aiohttp.ClientError | ConnectionError | OSError):
        return True
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        message = (error.message() or "").lower()
        return status in TRANSIENT_STATUSES or "unavailable" in message or "timed out" in message
    return False


class RetryPolicy(TypedDict, total=False):
    concurrency: int
    attempts: int
    request_timeout: float
    backoff_initial: float
    backoff_max: float


class RetryingClient:
    """What both transports share: the concurrency bound, the retry budget and the backoff policy, and one
    request loop that turns the last failure into a RequestError naming the model and the URL."""

    def __init__(
        self,
        url: str,
        concurrency: int = 64,
        attempts: int = 5,
        request_timeout: float = 3600.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.attempts = attempts
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max

    def _transient(self, error: BaseException) -> bool:
        return is_transient(error)

    def _retrying(self, stop: Any) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop,
            wait=backoff(self.backoff_initial, self.backoff_max),
            retry=retry_if_exception(self._transient),
            reraise=False,
        )

    async def _request(self, model: str, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """`call()` with retries on transient errors; returns its result and the number of attempts."""
        attempts = 0
        try:
            async for attempt in self._retrying(stop_after_attempt(self.attempts)):
                with attempt:
                    attempts += 1
                    result = await call()
        except RetryError as error:
            cause = error.last_attempt.exception()
            raise RequestError(f"{model} at {self.url}: {attempts} attempts failed, last: {cause}") from cause
        except Exception as error:
            raise RequestError(f"{model} at {self.url}: {error}") from error
        return result, attempts


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


def make_client(url: str, concurrency: int) -> Any:
    """KServe v2 (tritonclient) for `http://host:port`, OpenAI chat completions for `http://host:port/v1`."""
    from .openai_client import OpenAIChatClient, is_openai_url

    if is_openai_url(url):
        return OpenAIChatClient(url, concurrency=concurrency)
    return TritonChatClient(url, concurrency=concurrency)
