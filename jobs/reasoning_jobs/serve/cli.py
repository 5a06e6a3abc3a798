"""`reasoning serve --config FILE`: what the serving Deployment's container runs."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from reasoning_operator.api import ServingStageConfig, load_config

LOG = logging.getLogger("reasoning.serve")
#: How often the vllm backend checks that its engine is alive.
ENGINE_CHECK_SECONDS = 10.0


def _stop_on_signal(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set `stop` from now on (before anything starts: a signal during a minutes-long engine
    load must not kill this process and orphan the engine's and Triton's child processes)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def _wait_for_signal(stop: threading.Event, alive: Callable[[], bool] | None = None) -> None:
    """Block until SIGTERM/SIGINT; with `alive`, also exit non-zero once it turns false (checked every
    ENGINE_CHECK_SECONDS), so that a dead engine restarts the pod instead of failing every request."""
    _stop_on_signal(stop)
    last_check = time.monotonic()
    while not stop.wait(0.5):
        if alive is not None and time.monotonic() - last_check >= ENGINE_CHECK_SECONDS:
            last_check = time.monotonic()
            if not alive():
                LOG.error("the vLLM engine died; exiting so the pod restarts")
                raise typer.Exit(code=1)
    LOG.info("stop signal received")


def _serve_vllm(config: ServingStageConfig, host: str, grace: float) -> None:
    import asyncio

    from .contract import STREAM_SUFFIX
    from .metrics import ServingMetrics
    from .openai_proxy import start_openai_proxy
    from .pytriton_backend import Ports
    from .vllm_backend import InFlight, drain, engine_options, start_vllm_triton
    from .vllm_engine import VllmChat

    if config.trained_model_path is not None:
        raise typer.BadParameter(
            "the vllm backend serves base + LoRA adapter; a fully fine-tuned model (training.method: full) "
            "is served by the pytriton backend",
            param_hint="serving.backend",
        )
    stop = threading.Event()
    _stop_on_signal(stop)
    options = engine_options(config)
    adapter = f" + adapter {options.adapter_path}" if options.adapter_path else ""
    typer.echo(f"starting vLLM on {options.model}{adapter}")
    chat = VllmChat(options)
    metrics = ServingMetrics()
    in_flight = InFlight()
    ports = Ports(http=config.http_port, grpc=config.grpc_port, metrics=config.metrics_port)
    triton: Any = None
    proxy: Any = None
    try:
        chat.start()
        if stop.is_set():
            return
        triton, names = start_vllm_triton(
            chat, ports, config.base_model_name, config.adapter_model_name, metrics, in_flight, host=host
        )
        if stop.is_set():
            return
        triton_url = f"http://127.0.0.1:{config.http_port}"
        chat_names = [name for name in names if not name.endswith(STREAM_SUFFIX)]
        proxy = start_openai_proxy(host, config.openai_port, triton_url, chat_names, metrics=metrics.exposition)
        typer.echo(
            f"serving {', '.join(names)} on Triton http:{ports.http} grpc:{ports.grpc}; "
            f"OpenAI-style /v1/chat/completions and /metrics on :{config.openai_port}"
        )
        sys.stdout.flush()
        _wait_for_signal(stop, alive=lambda: asyncio.run(chat.healthy()))
    finally:
        # Graceful: stop taking requests, let those in flight finish, then stop Triton and the engine.
        if proxy is not None:
            proxy.shutdown()
        drain(in_flight, grace)
        if triton is not None:
            triton.stop()
        chat.shutdown()


def _serve_pytriton(config: ServingStageConfig, host: str, tokenizer: str | None, stream: bool) -> None:
    import torch

    from .chat_model import ChatModel, serving_device
    from .openai_proxy import start_openai_proxy
    from .pytriton_backend import Ports, chat_models, start_triton

    device = serving_device(config.serving.gpus, torch.cuda.is_available())
    adapter = f" + adapter {config.adapter_path}" if config.adapter_path else ""
    typer.echo(f"loading {config.model.name}{adapter} on {device}")
    chat = ChatModel(config.model.name, config.adapter_path, tokenizer_path=tokenizer, device=device)
    served = chat_models(chat, config.base_model_name, config.adapter_model_name, stream=stream)
    if config.trained_model_path is not None:
        # Full fine-tuning: the trained weights are a second model, served under the adapter's name.
        typer.echo(f"loading the fully fine-tuned {config.trained_model_path}")
        trained = ChatModel(config.trained_model_path, None, tokenizer_path=tokenizer, device=device)
        served += chat_models(trained, config.adapter_model_name, None, stream=stream)
    ports = Ports(http=config.http_port, grpc=config.grpc_port, metrics=config.metrics_port)
    stop = threading.Event()
    triton_url = f"http://127.0.0.1:{config.http_port}"
    # The proxy binds first: once Triton reports ready (the pod's readiness probe), its port already answers.
    proxy = start_openai_proxy(host, config.openai_port, triton_url, [m.name for m in served])
    try:
        triton = start_triton(served, ports, host=host)
    except BaseException:
        proxy.shutdown()
        raise
    typer.echo(
        f"serving {', '.join(m.name for m in served)} on Triton http:{ports.http} grpc:{ports.grpc}; "
        f"OpenAI-style /v1/chat/completions on :{config.openai_port}"
    )
    try:
        _wait_for_signal(stop)
    finally:
        proxy.shutdown()
        triton.stop()


def main(
    config: Annotated[Path, typer.Option("--config", help="ServingStageConfig (YAML/JSON).", exists=True)],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    tokenizer: Annotated[
        str | None, typer.Option(help="pytriton: tokenizer path/id when the model's own has no chat template.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="pytriton: also serve decoupled NAME_stream models.")] = True,
    grace: Annotated[float, typer.Option(help="vllm: seconds in-flight requests get to finish on SIGTERM.")] = 25.0,
) -> None:
    """Serve the base model and the trained adapter side by side on Triton."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = load_config(ServingStageConfig, config)
    if stage.serving.backend == "vllm":
        _serve_vllm(stage, host, grace)
    else:
        _serve_pytriton(stage, host, tokenizer, stream)
