"""A patient handshake between PyTriton's stub processes and the process that serves the model.

PyTriton hands a model's settings over a Unix socket when Triton loads it: the stub of the first instance
serves them, the other instances' stubs and this process fetch them with one try of 1 s
(`get_config_from_handshake_server`). On a busy machine an instance whose stub is still importing misses
that second (or connects between the socket's bind and listen) and the whole load fails; retrying the
start only replays the race. The stubs run the copy of `pytriton/proxy/communication.py` that this process
uploads with the model, so the retrying fetch below is appended to that upload (and used by this process),
not patched into the installed package: the image and the wheel stay as PyPI ships them.
"""

from __future__ import annotations

import functools
import inspect
import pathlib
import textwrap
from collections.abc import Callable
from typing import Any

#: Long enough for a stub that starts on a saturated 2-core machine; a stub that never comes still fails.
HANDSHAKE_TIMEOUT_S = 60.0

_FETCH = b"\ndef get_config_from_handshake_server("

#: PyTriton's own fetch; set by `patient_handshake` here, and by the appended alias in the uploaded copy.
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


_APPENDED = (
    "\n\n# reasoning-operator (jobs/reasoning_jobs/serve/handshake.py): retry the handshake fetch.\n"
    "_pytriton_get_config_from_handshake_server = get_config_from_handshake_server\n\n\n"
    + textwrap.dedent(inspect.getsource(patient_fetch))
    .replace("def patient_fetch(", "def get_config_from_handshake_server(")
    .replace("HANDSHAKE_TIMEOUT_S", repr(HANDSHAKE_TIMEOUT_S))
    .replace("dict[str, Any]", "dict")
)


def patient_source(source: bytes) -> bytes:
    """`communication.py` with the retrying fetch appended; refuses a file it does not recognise."""
    if source.count(_FETCH) != 1:
        raise RuntimeError(
            "pytriton's proxy/communication.py no longer defines get_config_from_handshake_server once: "
            "the handshake patch must be revisited for this PyTriton version"
        )
    return source + _APPENDED.encode()


def patient_handshake() -> None:
    """Make every PyTriton model loaded from this process retry its handshake (idempotent)."""
    from pytriton.models import model as model_module
    from pytriton.proxy import communication

    original = model_module.Model.get_proxy_model_files
    if getattr(original, "_reasoning_patient", False):
        return

    @functools.wraps(original)
    def proxy_model_files(self: Any) -> dict[str, bytes]:
        files: dict[str, bytes] = original(self)
        key = f"file:{self.model_version}/communication.py"
        files[key] = patient_source(files[key])
        return files

    proxy_model_files._reasoning_patient = True  # type: ignore[attr-defined]
    model_module.Model.get_proxy_model_files = proxy_model_files
    global _pytriton_get_config_from_handshake_server
    _pytriton_get_config_from_handshake_server = communication.get_config_from_handshake_server
    model_module.get_config_from_handshake_server = patient_fetch
