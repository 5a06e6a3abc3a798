"""The same client over an OpenAI-compatible `/v1/chat/completions` (a server_url ending in `/v1`).

Used against the production backend: Triton's vLLM backend takes raw prompts, so the chat template (with the
reasoning system prompt) is applied by Triton's OpenAI frontend, which also selects the LoRA adapter through
the model name `<base><separator><adapter>`; `wait_ready` maps `trained` to the one served id ending in
`_lora_trained`. Same retries, concurrency bound and errors as the KServe client.
"""

from __future__ import annotations

import time
from typing import Any, Unpack
from urllib.parse import urlsplit

from tenacity import RetryError, stop_after_attempt, stop_after_delay

from .retrying import (
    TRANSIENT_STATUSES,
    Completion,
    RequestError,
    RetryingClient,
    RetryPolicy,
    ServerUnreachableError,
    is_transient,
)

#: Triton's OpenAI frontend names an adapter `<model><LORA_SEPARATOR><adapter>` (`--lora-separator`).
LORA_SEPARATOR = "_lora_"


class HTTPStatusError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


def is_openai_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/v1")


def resolve_model(name: str, served: list[str]) -> str | None:
    """The served id for `name`: itself, or the unique LoRA id `<base>_lora_<name>`."""
    if name in served:
        return name
    candidates = [model for model in served if model.endswith(f"{LORA_SEPARATOR}{name}")]
    return candidates[0] if len(candidates) == 1 else None


class OpenAIChatClient(RetryingClient):
    def __init__(self, url: str, **policy: Unpack[RetryPolicy]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server_url {url!r}: expected http(s)://HOST[:PORT]/v1")
        super().__init__(url.rstrip("/"), **policy)
        self._session: Any = None
        self._served: dict[str, str] = {}

    async def __aenter__(self) -> OpenAIChatClient:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _transient(self, error: BaseException) -> bool:
        if isinstance(error, HTTPStatusError):
            return str(error.status) in TRANSIENT_STATUSES
        return is_transient(error)

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(method, f"{self.url}{path}", json=body) as response:
            text = await response.text()
            if response.status != 200:
                raise HTTPStatusError(response.status, text)
            return await response.json(content_type=None)

    async def wait_ready(self, models: list[str], timeout: float = 300.0) -> None:
        missing: list[str] = list(models)

        async def check() -> None:
            nonlocal missing
            listed = await self._json("GET", "/models")
            served = [str(entry.get("id")) for entry in listed.get("data", [])]
            self._served = {m: r for m in models if (r := resolve_model(m, served)) is not None}
            missing = [m for m in models if m not in self._served]
            if missing:
                raise ConnectionError(f"model(s) {', '.join(missing)} not served; served: {', '.join(served)}")

        try:
            async for attempt in self._retrying(stop_after_delay(timeout) | stop_after_attempt(10_000)):
                with attempt:
                    await check()
        except RetryError as error:
            cause = error.last_attempt.exception()
            raise ServerUnreachableError(
                f"OpenAI endpoint {self.url} not ready after {timeout:.0f}s: {cause}"
            ) from cause
        except HTTPStatusError as error:
            raise ServerUnreachableError(f"OpenAI endpoint {self.url}: {error}") from error

    async def generate(self, model: str, user: str, system: str | None, sampling: dict[str, Any]) -> Completion:
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": user}
        ]
        body = {"model": self._served.get(model, model), "messages": messages, **sampling}
        started = time.perf_counter()
        reply, attempts = await self._request(model, lambda: self._json("POST", "/chat/completions", body))
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as error:
            raise RequestError(f"{model} at {self.url}: unexpected reply {str(reply)[:300]}") from error
        usage = reply.get("usage") or {}
        tokens = usage.get("completion_tokens")
        return Completion(
            text=text,
            num_output_tokens=int(tokens) if tokens is not None else None,
            finish_reason=choice.get("finish_reason"),
            seconds=time.perf_counter() - started,
            attempts=attempts,
        )
