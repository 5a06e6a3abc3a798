"""`reasoning train`: LoRA (or full) SFT on the curated training.jsonl. Imports torch only when it runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reasoning_operator.api import ModelSpec, TrainingSpec, TrainingStageConfig, load_config


def build_config(
    config_file: Path | None,
    overrides: dict[str, Any],
    model: str | None,
    data: Path | None,
    output_dir: Path | None,
    lora: dict[str, Any] | None = None,
) -> TrainingStageConfig:
    """The stage config from --config, with flags applied on top (validated again as a whole)."""
    if config_file is not None:
        base = load_config(TrainingStageConfig, config_file)
    else:
        missing = [
            flag for flag, value in (("--model", model), ("--data", data), ("--output-dir", output_dir)) if not value
        ]
        if missing:
            raise typer.BadParameter(f"without --config, {', '.join(missing)} must be given")
        base = TrainingStageConfig(
            model=ModelSpec(name=str(model)), training=TrainingSpec(), data_path=str(data), output_dir=str(output_dir)
        )
    training = base.training.model_dump()
    training.update({k: v for k, v in overrides.items() if v is not None})
    training["lora"].update({k: v for k, v in (lora or {}).items() if v is not None})
    wire = base.model_dump()
    wire["training"] = training
    if model:
        wire["model"]["name"] = model
    if data:
        wire["data_path"] = str(data)
    if output_dir:
        wire["output_dir"] = str(output_dir)
    return TrainingStageConfig.model_validate(wire)


def main(
    config: Annotated[Path | None, typer.Option("--config", help="TrainingStageConfig YAML/JSON.")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: hub id or local HF directory.")] = None,
    data: Annotated[Path | None, typer.Option(help="Curated training.jsonl.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Checkpoints, adapter, metrics, summary.")] = None,
    method: Annotated[str | None, typer.Option(help="lora | full")] = None,
    max_steps: Annotated[int | None, typer.Option()] = None,
    global_batch_size: Annotated[int | None, typer.Option()] = None,
    micro_batch_size: Annotated[int | None, typer.Option()] = None,
    max_seq_length: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    checkpoint_interval: Annotated[int | None, typer.Option()] = None,
    lora_rank: Annotated[int | None, typer.Option()] = None,
    lora_alpha: Annotated[int | None, typer.Option()] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="Dropout on the adapters' input (default 0)")] = None,
    packing: Annotated[bool | None, typer.Option("--packing/--no-packing")] = None,
    shuffle: Annotated[bool | None, typer.Option("--shuffle/--no-shuffle")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="bf16 | fp16 | fp32")] = None,
    backend: Annotated[str | None, typer.Option(help="transformers (the only one)")] = None,
    merge_weights: Annotated[bool | None, typer.Option("--merge-weights/--no-merge-weights")] = None,
    fp8_base_weights: Annotated[
        bool | None,
        typer.Option(
            "--fp8-base-weights/--no-fp8-base-weights", help="LoRA: FP8 matmuls on the frozen base (Ada/Hopper)"
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (cuda fails fast without a GPU)")] = "auto",
    attention: Annotated[str, typer.Option(help="auto | varlen | sdpa | eager")] = "auto",
    recompute_layers: Annotated[
        int | None,
        typer.Option(
            help="Decoder layers recomputed in backward (default: as many as memory needs; "
            "0 without gradient checkpointing)"
        ),
    ] = None,
    chunked_loss: Annotated[bool, typer.Option("--chunked-loss/--full-logits-loss")] = True,
    compile_layers: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile each layer (default: on CUDA)")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train; prints one JSON progress line per step and writes summary.json when done."""
    from pydantic import ValidationError

    from .data import DataError
    from .options import RunOptions, TrainingConfigError
    from .trainer import run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides: dict[str, Any] = {
        "method": method,
        "max_steps": max_steps,
        "global_batch_size": global_batch_size,
        "micro_batch_size": micro_batch_size,
        "max_seq_length": max_seq_length,
        "learning_rate": learning_rate,
        "checkpoint_interval": checkpoint_interval,
        "packing": packing,
        "shuffle": shuffle,
        "gradient_checkpointing": gradient_checkpointing,
        "precision": precision,
        "backend": backend,
        "merge_weights": merge_weights,
        "fp8_base_weights": fp8_base_weights,
        "seed": seed,
    }
    try:
        lora = {"rank": lora_rank, "alpha": lora_alpha, "dropout": lora_dropout}
        stage = build_config(config, overrides, model, data, output_dir, lora)
        options = RunOptions(
            device=device,  # type: ignore[arg-type]
            attention=attention,  # type: ignore[arg-type]
            recompute_layers=recompute_layers,
            chunked_loss=chunked_loss,
            compile=compile_layers,
            progress=progress,
        )
        if options.device not in ("auto", "cpu", "cuda"):
            raise TrainingConfigError(f"--device must be auto, cpu or cuda, not {device!r}")
        if options.attention not in ("auto", "varlen", "sdpa", "eager"):
            raise TrainingConfigError(f"--attention must be auto, varlen, sdpa or eager, not {attention!r}")
        run_training(stage, options)
    except (TrainingConfigError, DataError, ValidationError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
