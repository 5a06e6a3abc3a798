"""Progress reporting: one line per logged step on stdout (the contract's `progress_line`, which the
operator reads back from the pod log), a richer line in `metrics.jsonl`, TensorBoard event files in `tensorboard/`
(and the same scalars to MLflow where configured), a tqdm bar on stderr and a PNG curve."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reasoning_operator.api import TrainingProgress
from reasoning_operator.api.contract import progress_line

if TYPE_CHECKING:
    from reasoning_jobs.common.mlflow_tracking import MlflowRun

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"
TENSORBOARD_DIR = "tensorboard"
#: StepRecord field -> scalar tag, in TensorBoard and MLflow alike.
SCALARS = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "tokens_per_second": "train/tokens_per_second",
    "grad_norm": "train/grad_norm",
}


@dataclass(frozen=True)
class StepRecord:
    step: int
    max_steps: int
    loss: float
    learning_rate: float
    tokens: int
    target_tokens: int
    samples: int
    step_seconds: float
    tokens_per_second: float
    eta_seconds: float
    grad_norm: float
    elapsed_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(output_dir: Path, last_step: int) -> None:
    """On resume, drop lines logged after the checkpoint being resumed (they will be logged again)."""
    kept = [row for row in read_metrics(output_dir) if row["step"] <= last_step]
    path = output_dir / METRICS_FILE
    if path.exists():
        path.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")


class ProgressReporter:
    def __init__(
        self,
        output_dir: Path,
        max_steps: int,
        start_step: int,
        bar: bool = True,
        stream: TextIO | None = None,
        mlflow: MlflowRun | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.output_dir = output_dir
        self.stream = stream or sys.stdout
        self.mlflow = mlflow
        # purge_step: on resume, TensorBoard hides the events logged after the checkpoint (they come again).
        self.writer = SummaryWriter(
            log_dir=str(output_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None
        )
        self.bar = tqdm(
            total=max_steps, initial=start_step, desc="train", unit="step", file=sys.stderr, disable=not bar
        )

    def log(self, record: StepRecord) -> None:
        with (self.output_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record.as_dict()) + "\n")
        progress = TrainingProgress(
            step=record.step,
            max_steps=record.max_steps,
            loss=round(record.loss, 6),
            learning_rate=record.learning_rate,
            tokens_per_second=round(record.tokens_per_second, 1),
            eta_seconds=round(record.eta_seconds, 1),
        )
        print(progress_line(progress), file=self.stream, flush=True)
        scalars = {tag: float(getattr(record, field)) for field, tag in SCALARS.items()}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, record.step)
        if self.mlflow is not None:
            self.mlflow.log_metrics(scalars, record.step)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record.loss:.4f}", tok_s=f"{record.tokens_per_second:.0f}")

    def close(self) -> None:
        self.writer.close()
        self.bar.close()


def plot_curve(output_dir: Path) -> Path | None:
    """Loss and learning rate against step; None when nothing was logged."""
    rows = read_metrics(output_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, loss_axis = plt.subplots(figsize=(8, 4.5))
    loss_axis.plot(steps, [r["loss"] for r in rows], color="tab:blue", label="loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss (completion tokens)")
    lr_axis = loss_axis.twinx()
    lr_axis.plot(steps, [r["learning_rate"] for r in rows], color="tab:orange", alpha=0.6, label="learning rate")
    lr_axis.set_ylabel("learning rate")
    fig.legend(loc="upper right")
    fig.tight_layout()
    target = output_dir / CURVE_FILE
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
