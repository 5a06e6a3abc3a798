"""What both evaluation transports share: the error types, the completion record, the transient-error rule
and one retrying request loop (tenacity, exponential backoff with jitter)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

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
