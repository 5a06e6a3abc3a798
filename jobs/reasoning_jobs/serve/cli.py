"""`reasoning serve --config FILE`: what the serving Deployment's container runs."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from reasoning_operator.api import ServingStageConfig, load_config

LOG = logging.getLogger("reasoning.serve")


def _serve_vllm(config: ServingStageConfig, repository: Path, host: str, dry_run: bool) -> None:
    from .vllm_backend import frontend_command, openai_model_names, write_model_repository

    if config.trained_model_path is not None:
        raise typer.BadParameter(
            "the vllm backend serves base + LoRA adapter; a fully fine-tuned model (training.method: full) "
            "is served by the pytriton backend for now",
            param_hint="serving.backend",
        )

    repo = write_model_repository(config, repository)
    command = frontend_command(config, repo.root, host=host)
    typer.echo(f"model repository: {repo.root}")
    typer.echo(f"OpenAI model names: {json.dumps(openai_model_names(config))}")
    typer.echo(f"command: {shlex.join(command)}")
    if dry_run:
        return
    sys.stdout.flush()
    os.execvp(command[0], command)


def _serve_pytriton(config: ServingStageConfig, host: str, tokenizer: str | None, stream: bool) -> None:
    from .chat_model import ChatModel
    from .openai_proxy import start_openai_proxy
    from .pytriton_backend import Ports, chat_models, start_triton

    typer.echo(f"loading {config.model.name}" + (f" + adapter {config.adapter_path}" if config.adapter_path else ""))
    chat = ChatModel(config.model.name, config.adapter_path, tokenizer_path=tokenizer)
    served = chat_models(chat, config.base_model_name, config.adapter_model_name, stream=stream)
    if config.trained_model_path is not None:
        # Full fine-tuning: the trained weights are a second model, served under the adapter's name.
        typer.echo(f"loading the fully fine-tuned {config.trained_model_path}")
        trained = ChatModel(config.trained_model_path, None, tokenizer_path=tokenizer)
        served += chat_models(trained, config.adapter_model_name, None, stream=stream)
    ports = Ports(http=config.http_port, grpc=config.grpc_port, metrics=config.metrics_port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    triton = start_triton(served, ports, host=host)
    triton_url = f"http://127.0.0.1:{config.http_port}"
    proxy = start_openai_proxy(host, config.openai_port, triton_url, [m.name for m in served])
    typer.echo(
        f"serving {', '.join(m.name for m in served)} on Triton http:{ports.http} grpc:{ports.grpc}; "
        f"OpenAI-style /v1/chat/completions on :{config.openai_port}"
    )
    try:
        stop.wait()
    finally:
        proxy.shutdown()
        triton.stop()


def main(
    config: Annotated[Path, typer.Option("--config", help="ServingStageConfig (YAML/JSON).", exists=True)],
    repository: Annotated[Path, typer.Option(help="vllm: where to write the Triton model repository.")] = Path(
        "/tmp/triton-model-repository"
    ),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    tokenizer: Annotated[
        str | None, typer.Option(help="pytriton: tokenizer path/id when the model's own has no chat template.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="pytriton: also serve decoupled NAME_stream models.")] = True,
    dry_run: Annotated[bool, typer.Option(help="vllm: write the repository and print the command only.")] = False,
) -> None:
    """Serve the base model and the trained adapter side by side on Triton."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = load_config(ServingStageConfig, config)
    if stage.serving.backend == "vllm":
        _serve_vllm(stage, repository, host, dry_run)
    else:
        _serve_pytriton(stage, host, tokenizer, stream)
