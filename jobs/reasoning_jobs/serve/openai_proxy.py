"""A small OpenAI-style `/v1/chat/completions` in front of either backend's Triton. It forwards to Triton's
`/v2/models/NAME/generate` (or, with `"stream": true`, `/v2/models/NAME_stream/generate_stream`, relayed as
OpenAI chunks), so whatever answers here answered through Triton. One system message and one user message
per request. `/metrics` serves the backend's Prometheus metrics when it has any."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reasoning_operator.api.contract import (
    NUM_OUTPUT_TOKENS,
    SAMPLING_PARAMETERS,
    SYSTEM_PROMPT,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

from .contract import STREAM_SUFFIX


class ChatRequestError(ValueError):
    """The request body is not a chat completion this proxy can serve (answered with 400)."""


def to_generate_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """OpenAI chat completion request → (Triton model name, generate body)."""
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not model:
        raise ChatRequestError("'model' is required")
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("'messages' must be a non-empty list")
    system = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if len(user) != 1 or len(system) > 1 or len(user) + len(system) != len(messages):
        raise ChatRequestError("this server takes at most one system message and exactly one user message")
    sampling: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    for key, value in (("max_tokens", max_tokens), ("temperature", body.get("temperature"))):
        if value is not None:
            sampling[key] = value
    for key in ("top_p", "seed"):
        if body.get(key) is not None:
            sampling[key] = body[key]
    generate: dict[str, Any] = {TEXT_INPUT: user[0], SAMPLING_PARAMETERS: json.dumps(sampling)}
    if system:
        generate[SYSTEM_PROMPT] = system[0]
    return model, generate


def to_chat_completion(model: str, generated: dict[str, Any]) -> dict[str, Any]:
    text = generated.get(TEXT_OUTPUT, "")
    tokens = generated.get(NUM_OUTPUT_TOKENS)
    completion_tokens = int(tokens[0] if isinstance(tokens, list) else tokens) if tokens is not None else None
    reason = generated.get("finish_reason", "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason[0] if isinstance(reason, list) else reason,
            }
        ],
        "usage": {"completion_tokens": completion_tokens},
    }


def chunk(completion_id: str, model: str, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    """One server-sent event of a streamed chat completion."""
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


def make_handler(
    triton_url: str, model_names: Sequence[str], metrics: Callable[[], bytes] | None = None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: Triton logs requests already
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._reply(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def _stream(self, model: str, body: dict[str, Any]) -> None:
            """Relay Triton's generate_stream events as OpenAI chunks, then `data: [DONE]`."""
            request = urllib.request.Request(
                f"{triton_url}/v2/models/{model}{STREAM_SUFFIX}/generate_stream",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                response = urllib.request.urlopen(request, timeout=3600)
            except urllib.error.HTTPError as error:
                self._error(HTTPStatus.BAD_REQUEST, error.read().decode(errors="replace"))
                return
            except OSError as error:
                self._error(HTTPStatus.BAD_GATEWAY, f"Triton at {triton_url}: {error}")
                return
            completion_id = f"chatcmpl-{uuid.uuid4().hex}"
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(chunk(completion_id, model, {"role": "assistant"}))
            with response:
                for line in response:
                    if not line.startswith(b"data:"):
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        error_event = {"error": {"message": event["error"], "type": "server_error"}}
                        self.wfile.write(f"data: {json.dumps(error_event)}\n\n".encode())
                        break
                    piece = event.get(TEXT_OUTPUT, "")
                    if piece:
                        self.wfile.write(chunk(completion_id, model, {"content": piece}))
                        self.wfile.flush()
            self.wfile.write(chunk(completion_id, model, {}, "stop") + b"data: [DONE]\n\n")

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/metrics" and metrics is not None:
                exposition = metrics()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(exposition)))
                self.end_headers()
                self.wfile.write(exposition)
            elif self.path.rstrip("/") == "/v1/models":
                data = [{"id": name, "object": "model", "owned_by": "reasoning-operator"} for name in model_names]
                self._reply(HTTPStatus.OK, {"object": "list", "data": data})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                request_body = json.loads(self.rfile.read(length) or b"{}")
                model, body = to_generate_body(request_body)
            except (ChatRequestError, json.JSONDecodeError, ValueError) as error:
                self._error(HTTPStatus.BAD_REQUEST, str(error))
                return
            if model not in model_names:
                self._error(HTTPStatus.NOT_FOUND, f"unknown model {model!r}; served: {', '.join(model_names)}")
                return
            if request_body.get("stream"):
                self._stream(model, body)
                return
            request = urllib.request.Request(
                f"{triton_url}/v2/models/{model}/generate",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=3600) as response:
                    generated = json.loads(response.read())
            except urllib.error.HTTPError as error:
                self._error(HTTPStatus.BAD_REQUEST, error.read().decode(errors="replace"))
                return
            except OSError as error:
                self._error(HTTPStatus.BAD_GATEWAY, f"Triton at {triton_url}: {error}")
                return
            self._reply(HTTPStatus.OK, to_chat_completion(model, generated))

    return Handler


def start_openai_proxy(
    host: str,
    port: int,
    triton_url: str,
    model_names: Sequence[str],
    metrics: Callable[[], bytes] | None = None,
) -> ThreadingHTTPServer:
    """Serve in a daemon thread; `.shutdown()` stops it."""
    server = ThreadingHTTPServer((host, port), make_handler(triton_url.rstrip("/"), list(model_names), metrics))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="openai-proxy", daemon=True).start()
    return server
