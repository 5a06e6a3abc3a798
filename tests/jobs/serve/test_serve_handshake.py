"""The patient handshake against PyTriton's real handshake server and its real `communication.py`."""

from __future__ import annotations

import pathlib
import threading
import time
import types
from collections.abc import Iterator

import pytest

pytest.importorskip("pytriton")

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.models import model as model_module
from pytriton.proxy import communication

from reasoning_jobs.serve.handshake import patient_handshake, patient_source

CONFIG = {"data_socket": "/tmp/x.sock", "authkey": "a2V5"}


def uploaded_copy() -> types.ModuleType:
    """The module a stub runs: the patched upload of the installed `communication.py`, executed on its own."""
    source = pathlib.Path(communication.__file__).read_bytes()
    module = types.ModuleType("uploaded_communication")
    exec(compile(patient_source(source), "communication.py", "exec"), module.__dict__)
    return module


@pytest.fixture
def late_server(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A handshake server that starts 2.5 s late, as the first instance's stub does on a busy machine."""
    socket_path = tmp_path / "base-config.sock"
    servers: list[communication.HandshakeServer] = []

    def start_late() -> None:
        time.sleep(2.5)
        server = communication.HandshakeServer(socket_path, CONFIG)
        server.start()
        servers.append(server)

    starter = threading.Thread(target=start_late)
    starter.start()
    yield socket_path
    starter.join()
    for server in servers:
        server.close()


def test_pytritons_own_fetch_gives_up_on_a_late_server(late_server: pathlib.Path) -> None:
    with pytest.raises(TimeoutError):
        communication.get_config_from_handshake_server(late_server)


def test_the_uploaded_copy_waits_for_a_late_server(late_server: pathlib.Path) -> None:
    module = uploaded_copy()
    assert module.get_config_from_handshake_server(late_server) == CONFIG


def test_the_uploaded_copy_still_gives_up_when_no_server_comes(tmp_path: pathlib.Path) -> None:
    module = uploaded_copy()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        module.get_config_from_handshake_server(tmp_path / "never.sock", timeout_s=1.5)
    assert time.monotonic() - start < 10


def test_an_unknown_communication_module_is_refused() -> None:
    with pytest.raises(RuntimeError, match="revisited"):
        patient_source(b"def something_else():\n    pass\n")


def test_models_upload_the_patient_copy_and_this_process_waits_too(late_server: pathlib.Path) -> None:
    patient_handshake()
    patient_handshake()
    model = model_module.Model(
        model_name="m",
        model_version=1,
        inference_fn=lambda **_: {},
        inputs=[Tensor(name="x", dtype=np.float32, shape=(1,))],
        outputs=[Tensor(name="y", dtype=np.float32, shape=(1,))],
        config=ModelConfig(),
        workspace=None,  # type: ignore[arg-type]
        triton_context=None,  # type: ignore[arg-type]
        strict=True,
        trace_config=[],
    )
    uploaded = model.get_proxy_model_files()["file:1/communication.py"]
    assert uploaded.count(b"reasoning-operator") == 1
    assert model_module.get_config_from_handshake_server(late_server) == CONFIG
