"""`reasoning serve --config FILE` with the pytriton backend, as the Deployment runs it: becomes ready,
answers on both names and through the OpenAI-style endpoint, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from reasoning_operator.api import ModelSpec, ServingSpec, ServingStageConfig


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """What the readiness probe should check: the adapter's model (the server alone is 'ready' while PyTriton
    still loads its models in explicit model-control mode)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "reasoning serve exited before becoming ready"
        try:
            with urllib.request.urlopen(f"{url}/v2/models/trained/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def test_serve_cli_pytriton(tiny_llama: tuple[Path, Path], ports: Callable[[], int], tmp_path: Path) -> None:
    model_dir, adapter_dir = tiny_llama
    config = ServingStageConfig(
        model=ModelSpec(name=str(model_dir)),
        serving=ServingSpec(backend="pytriton"),
        adapter_path=str(adapter_dir),
        http_port=ports(),
        grpc_port=ports(),
        metrics_port=ports(),
        openai_port=ports(),
    )
    config_file = tmp_path / "serving.yaml"
    config_file.write_text(json.dumps(config.to_wire()))
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "reasoning_operator.cli", "serve", "--config", str(config_file)]
    process = subprocess.Popen([*command, "--host", "127.0.0.1", "--no-stream"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config.http_port}"
    try:
        wait_ready(url, process)
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/base/ready"):
            with urllib.request.urlopen(f"{url}{path}", timeout=5) as response:
                assert response.status == 200
        body = {"model": "trained", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        request = urllib.request.Request(
            f"http://127.0.0.1:{config.openai_port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                completion = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(error.read().decode()) from error
        assert completion["model"] == "trained" and completion["usage"]["completion_tokens"] <= 3
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
