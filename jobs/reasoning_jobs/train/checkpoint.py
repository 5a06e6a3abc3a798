"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states and the data position.

A checkpoint is written into a temporary directory and renamed into place only once complete, so a pod
killed mid-write leaves at worst a `.tmp-*` directory that the next start deletes; resume always picks the
highest-numbered complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.json"
PREFIX = "step-"


@dataclass
class TrainState:
    """Where training stands; `step` optimizer steps are done, so the next batch is step `step`."""

    step: int = 0
    tokens_seen: int = 0
    samples_seen: int = 0
    elapsed_seconds: float = 0.0
    last_loss: float | None = None


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """Highest-step checkpoint that has its state file (written last, so it marks completeness)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return None
    complete = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return max(complete, key=lambda p: int(p.name[len(PREFIX) :]), default=None)


def remove_partial(output_dir: Path) -> None:
    root = checkpoints_dir(output_dir)
    if root.is_dir():
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    output_dir: Path,
    state: TrainState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    keep: int = 2,
) -> Path:
    root = checkpoints_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if hasattr(model, "peft_config"):
        model.save_pretrained(tmp / "adapter")  # type: ignore[operator]
    torch.save(trainable_state(model), tmp / "trainable.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.replace(final)
    older = sorted(
        (p for p in root.iterdir() if p.name.startswith(PREFIX) and p != final),
        key=lambda p: int(p.name[len(PREFIX) :]),
    )
    for stale in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainState:
    weights = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise ValueError(f"checkpoint {path} holds weights the model lacks: {missing[:3]} (different model/method?)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    raw = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    return TrainState(**raw)
