"""Run-time options of the training job that are not part of the run's spec (where it runs, which speed
levers it uses), and the checks that turn a bad config into a clear error before any compute."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reasoning_operator.api import TrainingStageConfig

log = logging.getLogger("reasoning.train")

DeviceChoice = Literal["auto", "cpu", "cuda"]
AttentionChoice = Literal["auto", "sdpa", "varlen", "eager"]

#: Test/chaos hook: hard-exit right after this optimizer step (simulates a preempted pod).
STOP_AFTER_STEP_ENV = "REASONING_TRAIN_STOP_AFTER_STEP"


class TrainingConfigError(ValueError):
    """The run cannot start; raised before the model is loaded."""


@dataclass(frozen=True)
class RunOptions:
    device: DeviceChoice = "auto"
    attention: AttentionChoice = "auto"
    recompute_layers: int | None = None  # None: as memory needs if spec.gradientCheckpointing, else none
    chunked_loss: bool = True
    compile: bool | None = None  # None: on for CUDA, off on the CPU
    keep_checkpoints: int = 2
    progress: bool = True


@dataclass(frozen=True)
class Resolved:
    device: str
    precision: Literal["bf16", "fp16", "fp32"]
    attention: str
    fp8: bool = False  # FP8 matmuls on the frozen base weights


def resolve_device(config: TrainingStageConfig, options: RunOptions) -> Resolved:
    """cuda when asked for or available; the CPU path (dev/tests) trains in fp32 and says so."""
    import torch

    training = config.training
    has_cuda = torch.cuda.is_available()
    if options.device == "cuda" and not has_cuda:
        raise TrainingConfigError("--device cuda was requested but no CUDA GPU is visible (check the pod's GPU)")
    device = "cuda" if options.device == "cuda" or (options.device == "auto" and has_cuda) else "cpu"
    precision = training.precision
    if device == "cpu" and precision != "fp32":
        log.warning("no GPU in use: training on the CPU in fp32 instead of %s (CPU dev path)", precision)
        precision = "fp32"
    if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise TrainingConfigError("precision bf16 needs a GPU with bf16 support (Ampere or newer)")
    attention = options.attention
    if attention == "auto":
        from .attention import varlen_available

        # The CPU varlen path (one causal SDPA per sample) beats SDPA with a block-diagonal mask there too.
        attention = "varlen" if training.packing and (device == "cpu" or varlen_available()) else "sdpa"
    if attention == "varlen" and not training.packing:
        raise TrainingConfigError("--attention varlen needs spec.training.packing true")
    fp8 = training.fp8_base_weights
    if fp8 and device == "cpu":
        log.warning("no GPU in use: spec.training.fp8BaseWeights is ignored on the CPU dev path")
        fp8 = False
    if fp8 and precision != "bf16":
        raise TrainingConfigError(f"spec.training.fp8BaseWeights needs precision bf16, not {precision}")
    if fp8:
        from .fp8 import fp8_supported

        if not fp8_supported(torch.device("cuda")):
            name = torch.cuda.get_device_name()
            raise TrainingConfigError(
                f"spec.training.fp8BaseWeights needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper); "
                f"this GPU is {name}. Set it to false, or pin the run to H100 nodes."
            )
    return Resolved(device=device, precision=precision, attention=attention, fp8=fp8)


def validate_config(config: TrainingStageConfig) -> None:
    """Everything that can be checked without reading the dataset's content or loading the model."""
    # the cross-field rules (batch divisibility, ...) held when the config was built: api/spec.py states them once
    data = Path(config.data_path)
    if not data.is_file():
        raise TrainingConfigError(f"dataPath {data} does not exist (expected the curated training.jsonl)")
    if data.stat().st_size == 0:
        raise TrainingConfigError(f"dataPath {data} is empty: no samples to train on")
    model = config.model.name
    if model.startswith(("/", "./", "../")) and not Path(model).is_dir():
        raise TrainingConfigError(f"spec.model.name {model} is a path but no such directory exists")


def stop_after_step() -> int | None:
    raw = os.environ.get(STOP_AFTER_STEP_ENV)
    return int(raw) if raw else None
