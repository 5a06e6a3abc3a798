"""Retries with backoff. Triton never answers 503 on purpose, so a small loopback HTTP server stands in for a
server that is still starting / overloaded (a stub only at that boundary); it speaks the KServe v2 JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reasoning_jobs.evaluate.client import TritonChatClient
from reasoning_jobs.evaluate.retrying import RequestError, ServerUnreachableError, host_port


class Flaky:
    """Answers 503 to the first `failures` health checks and to the first `failures` infers of each text."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.health_calls = 0
        self.infer_calls: dict[str, int] = {}
        self.lock = threading.Lock()


def read_text_input(raw: bytes, headers: Any) -> str:
    """`text_input` of a KServe v2 request: a JSON header, then each binary tensor (BYTES: 4-byte length + data)."""
    header_length = int(headers.get("Inference-Header-Content-Length", len(raw)))
    header = json.loads(raw[:header_length])
    offset = header_length
    for tensor in header["inputs"]:
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is None:
            value = tensor["data"][0]
        else:
            chunk = raw[offset : offset + size]
            offset += size
            value = chunk[4 : 4 + int.from_bytes(chunk[:4], "little")].decode()
        if tensor["name"] == "text_input":
            return str(value)
    raise AssertionError("no text_input")


@pytest.fixture
def flaky(ports: Callable[[], int]) -> Iterator[tuple[str, Flaky]]:
    state = Flaky(failures=2)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v2/health/ready":
                with state.lock:
                    state.health_calls += 1
                    calls = state.health_calls
                self.reply(503 if calls <= state.failures else 200)
            else:
                self.reply(200 if self.path == "/v2/models/m/ready" else 400, {"error": "unknown"})

        def do_POST(self) -> None:
            text = read_text_input(self.rfile.read(int(self.headers["Content-Length"])), self.headers)
            if text == "bad":
                self.reply(400, {"error": "malformed request"})
                return
            with state.lock:
                state.infer_calls[text] = state.infer_calls.get(text, 0) + 1
                calls = state.infer_calls[text]
            if calls <= state.failures:
                self.reply(503, {"error": "busy"})
                return
            outputs = [
                {"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [f"Answer: {text}"]},
                {"name": "num_output_tokens", "datatype": "INT32", "shape": [1], "data": [3]},
            ]
            self.reply(200, {"model_name": "m", "outputs": outputs})

    server = ThreadingHTTPServer(("127.0.0.1", ports()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()


def test_wait_ready_and_generate_retry_transient_errors(flaky: tuple[str, Flaky]) -> None:
    url, state = flaky

    async def run() -> list[Any]:
        async with TritonChatClient(url, concurrency=4, attempts=4, backoff_initial=0.01, backoff_max=0.05) as client:
            await client.wait_ready(["m"], timeout=10)
            return list(await asyncio.gather(*(client.generate("m", t, None, {}) for t in "ABCD")))

    completions = asyncio.run(run())
    assert state.health_calls == 3
    assert [c.text for c in completions] == [f"Answer: {t}" for t in "ABCD"]
    assert all(c.attempts == 3 and c.num_output_tokens == 3 for c in completions)


def test_retries_give_up_with_the_last_error(flaky: tuple[str, Flaky]) -> None:
    url, _ = flaky

    async def run() -> None:
        async with TritonChatClient(url, attempts=2, backoff_initial=0.01, backoff_max=0.02) as client:
            await client.generate("m", "A", None, {})

    with pytest.raises(RequestError, match=r"2 attempts failed.*busy"):
        asyncio.run(run())


def test_permanent_error_is_not_retried(flaky: tuple[str, Flaky]) -> None:
    url, state = flaky

    async def run() -> None:
        async with TritonChatClient(url, attempts=5, backoff_initial=0.01) as client:
            await client.generate("m", "bad", None, {})

    with pytest.raises(RequestError, match="malformed request"):
        asyncio.run(run())
    assert "bad" not in state.infer_calls


def test_unknown_model_and_unreachable(flaky: tuple[str, Flaky], ports: Callable[[], int]) -> None:
    url, _ = flaky

    async def ready(target: str, models: list[str], timeout: float) -> None:
        async with TritonChatClient(target, backoff_initial=0.01, backoff_max=0.05) as client:
            await client.wait_ready(models, timeout=timeout)

    with pytest.raises(ServerUnreachableError, match=r"no ready model.*other"):
        asyncio.run(ready(url, ["m", "other"], 0.5))
    dead = f"http://127.0.0.1:{ports()}"
    with pytest.raises(ServerUnreachableError, match=f"{dead} not reachable"):
        asyncio.run(ready(dead, ["m"], 0.5))


@pytest.mark.parametrize("url", ["https://x:1", "http://x:1/v2", "ftp://x"])
def test_bad_server_url(url: str) -> None:
    with pytest.raises(ValueError, match="server_url"):
        host_port(url)


def test_openai_model_names_resolve_to_lora_ids() -> None:
    # Triton's own OpenAI frontend (NGC's vLLM image) names an adapter <base>_lora_<adapter>; this project's
    # servers list the plain names.
    from reasoning_jobs.evaluate.openai_client import LORA_SEPARATOR, is_openai_url, resolve_model

    served = ["base", f"base{LORA_SEPARATOR}trained"]
    assert resolve_model("base", served) == "base"
    assert resolve_model("trained", served) == f"base{LORA_SEPARATOR}trained"
    assert resolve_model("other", served) is None
    assert is_openai_url("http://serving:9000/v1") and is_openai_url("http://serving:9000/v1/")
    assert not is_openai_url("http://serving:8000")
