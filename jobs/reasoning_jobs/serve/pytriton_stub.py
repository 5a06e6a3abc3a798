"""Two changes to what PyTriton's stub processes run: a patient handshake, and one error per failed request.

Triton's Python backend runs a stub process per model instance; PyTriton uploads the stub's code
(`pytriton/proxy/{model,communication}.py`) with each model it loads. Two of its behaviours break a server
that batches on a busy machine, so definitions are appended to that upload (and the handshake fetch is used
by this process too); the installed wheel and the image stay as PyPI ships them, and a PyTriton whose files
no longer hold the definitions replaced is refused at start-up, not silently left unpatched.

- **Handshake.** The stub of the first instance serves a model's settings over a Unix socket; the other
  instances' stubs and this process fetch them with one try of 1 s (`get_config_from_handshake_server`). An
  instance whose stub is still importing misses that second (or connects between the socket's bind and
  listen) and the whole load fails; retrying the start only replays the race. The fetch is retried until
  HANDSHAKE_TIMEOUT_S.
- **Per-request errors.** A batched model (Triton's dynamic batcher) answers a list of requests with a list of
  responses, and PyTriton turns an exception into one error for every request of the batch: one bad request
  fails its neighbours. An infer function marks a request that failed (`pytriton_backend.failed_response`), and the
  stub sends that request, alone, Triton's error response with the message.
"""

from __future__ import annotations

import functools
import inspect
import pathlib
import textwrap
from collections.abc import Callable
from typing import Any

from reasoning_operator.api.contract import FINISH_REASON, TEXT_OUTPUT

#: Long enough for a stub that starts on a saturated 2-core machine; a stub that never comes still fails.
HANDSHAKE_TIMEOUT_S = 60.0
#: The finish reason that marks a failed request; the stub turns it into an error, so no client sees it.
FAILED = "error"

_FETCH = b"\ndef get_config_from_handshake_server("
_WRAP = b"\ndef _wrap_response("

#: PyTriton's own fetch; set by `patch_pytriton` here, and by the appended alias in the uploaded copy.
_pytriton_get_config_from_handshake_server: Callable[..., dict[str, Any]]


def patient_fetch(socket_path: pathlib.Path, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> dict[str, Any]:
    """PyTriton's one-shot fetch, tried again until `timeout_s` (self-contained: it is appended as source)."""
    import time as _time

    deadline = _time.monotonic() + timeout_s
    while True:
        left = deadline - _time.monotonic()
        try:
            return _pytriton_get_config_from_handshake_server(socket_path, timeout_s=min(5.0, max(left, 0.1)))
        except (TimeoutError, ConnectionError, FileNotFoundError, ValueError):
            if left <= 0:
                raise
            _time.sleep(0.05)


def _stub_error(response: Any) -> str | None:
    """In the stub: the message of a failed request's response, or None (self-contained: appended as source)."""

    def first(value: Any) -> str:
        item = value.reshape(-1)[0] if value.size else b""
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)

    data = response.data
    if data is None or "FINISH_REASON" not in data or "TEXT_OUTPUT" not in data:
        return None
    return first(data["TEXT_OUTPUT"]) if first(data["FINISH_REASON"]) == "FAILED" else None


def _wrap_response(response: Any, requested_outputs_names: Any, model_outputs_dict: Any) -> Any:
    """In the stub: PyTriton's `_wrap_response`, except a failed request gets its own error response."""
    message = _stub_error(response)
    if message is not None:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))  # type: ignore[name-defined]  # noqa: F821
    return _pytriton_wrap_response(response, requested_outputs_names, model_outputs_dict)  # type: ignore[name-defined]  # noqa: F821


def _source(*functions: Callable[..., Any]) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getsource(function)) for function in functions)


_COMMUNICATION_TAIL = (
    "\n\n# reasoning-operator (jobs/reasoning_jobs/serve/pytriton_stub.py): retry the handshake fetch.\n"
    "_pytriton_get_config_from_handshake_server = get_config_from_handshake_server\n\n\n"
    + _source(patient_fetch)
    .replace("def patient_fetch(", "def get_config_from_handshake_server(")
    .replace("HANDSHAKE_TIMEOUT_S", repr(HANDSHAKE_TIMEOUT_S))
    .replace("dict[str, Any]", "dict")
)
_MODEL_TAIL = (
    "\n\n# reasoning-operator (jobs/reasoning_jobs/serve/pytriton_stub.py): one error per failed request.\n"
    "_pytriton_wrap_response = _wrap_response\n\n\n"
    + _source(_stub_error, _wrap_response)
    .replace('"FINISH_REASON"', repr(FINISH_REASON))
    .replace('"TEXT_OUTPUT"', repr(TEXT_OUTPUT))
    .replace('"FAILED"', repr(FAILED))
    .replace("Any", "object")
)


def _append(source: bytes, definition: bytes, tail: str, name: str) -> bytes:
    if source.count(definition) != 1:
        raise RuntimeError(
            f"pytriton's proxy/{name} no longer defines {definition.decode().strip()}...) once: "
            "the stub patches (reasoning_jobs/serve/pytriton_stub.py) must be revisited for this PyTriton version"
        )
    return source + tail.encode()


def patched_upload(name: str, source: bytes) -> bytes:
    """The stub file `name` as uploaded: the two changes appended to communication.py and model.py."""
    if name == "communication.py":
        return _append(source, _FETCH, _COMMUNICATION_TAIL, name)
    if name == "model.py":
        return _append(source, _WRAP, _MODEL_TAIL, name)
    return source


def patch_pytriton() -> None:
    """Make every PyTriton model loaded from this process run the patched stub (idempotent)."""
    from pytriton.models import model as model_module
    from pytriton.proxy import communication

    original = model_module.Model.get_proxy_model_files
    if getattr(original, "_reasoning_patched", False):
        return

    @functools.wraps(original)
    def proxy_model_files(self: Any) -> dict[str, bytes]:
        files: dict[str, bytes] = original(self)
        for name in ("communication.py", "model.py"):
            key = f"file:{self.model_version}/{name}"
            files[key] = patched_upload(name, files[key])
        return files

    proxy_model_files._reasoning_patched = True  # type: ignore[attr-defined]
    model_module.Model.get_proxy_model_files = proxy_model_files
    global _pytriton_get_config_from_handshake_server
    _pytriton_get_config_from_handshake_server = communication.get_config_from_handshake_server
    model_module.get_config_from_handshake_server = patient_fetch
