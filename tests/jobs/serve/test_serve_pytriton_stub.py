"""The stub patches against real PyTriton: its handshake server and `communication.py`, and a real Triton
whose dynamic batcher puts failing and answerable requests in one batch."""

from __future__ import annotations

import json
import pathlib
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("pytriton")

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.models import model as model_module
from pytriton.proxy import communication

from reasoning_jobs.serve.contract import ChatRequest
from reasoning_jobs.serve.pytriton_backend import Ports, ServedModel, start_triton
from reasoning_jobs.serve.pytriton_stub import patch_pytriton, patched_upload
from reasoning_operator.api.contract import TEXT_INPUT, TEXT_OUTPUT

CONFIG = {"data_socket": "/tmp/x.sock", "authkey": "a2V5"}


def uploaded_copy() -> types.ModuleType:
    """The module a stub runs: the patched upload of the installed `communication.py`, executed on its own."""
    source = pathlib.Path(communication.__file__).read_bytes()
    module = types.ModuleType("uploaded_communication")
    exec(compile(patched_upload("communication.py", source), "communication.py", "exec"), module.__dict__)
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


@pytest.mark.parametrize("name", ["communication.py", "model.py"])
def test_an_unknown_stub_file_is_refused(name: str) -> None:
    with pytest.raises(RuntimeError, match="revisited"):
        patched_upload(name, b"def something_else():\n    pass\n")


def test_models_upload_the_patient_copy_and_this_process_waits_too(late_server: pathlib.Path) -> None:
    patch_pytriton()
    patch_pytriton()
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
    files = model.get_proxy_model_files()
    assert all(files[f"file:1/{name}"].count(b"reasoning-operator") == 1 for name in ("communication.py", "model.py"))
    assert model_module.get_config_from_handshake_server(late_server) == CONFIG


def test_a_failing_request_fails_alone_in_its_batch(ports: Callable[[], int]) -> None:
    """Requests sent together reach one batched call (the answer function records the batch sizes); the ones
    that raise get an HTTP error with their message, their batch-mates their answers."""
    batches: list[int] = []

    def answer(requests: Sequence[ChatRequest]) -> list[tuple[str, int, str]]:
        batches.append(len(requests))
        time.sleep(0.3)  # the batcher gathers the requests that arrive meanwhile
        if any("boom" in user for user, _, _ in requests):
            raise RuntimeError("exploded on " + ", ".join(user for user, _, _ in requests if "boom" in user))
        return [(user.upper(), 1, "stop") for user, _, _ in requests]

    triton_ports = Ports(http=ports(), grpc=ports(), metrics=ports())
    triton = start_triton([ServedModel("m", answer)], triton_ports, host="127.0.0.1")
    url = f"http://127.0.0.1:{triton_ports.http}/v2/models/m/generate"

    def generate(user: str) -> tuple[int, str]:
        body = json.dumps({TEXT_INPUT: user}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())[TEXT_OUTPUT]
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    users = [f"boom {i}" if i % 4 == 1 else f"q {i}" for i in range(12)]
    try:
        generate("warm up")
        batches.clear()
        with ThreadPoolExecutor(len(users)) as pool:
            replies = list(pool.map(generate, users))
    finally:
        triton.stop()
    assert max(batches) > 1, batches
    for user, (status, text) in zip(users, replies, strict=True):
        if "boom" in user:
            assert status >= 400 and f"exploded on {user}" in text, (user, status, text)
        else:
            assert (status, text) == (200, user.upper()), user
