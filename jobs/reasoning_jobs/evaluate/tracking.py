"""What the evaluation report links to: the training's TensorBoard files and the MLflow run; and the
evaluation's own metrics logged into that run (the training's run, where it has one), `spec.tracking.mlflow`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_operator.api import EvaluationStageConfig
from reasoning_operator.api.contract import SUMMARY_FILE

from .statistics import CellScore


@dataclass(frozen=True)
class TrackingLinks:
    tensorboard_dir: str | None = None
    training_run_url: str | None = None
    mlflow_run_url: str | None = None

    def lines(self) -> list[tuple[str, str]]:
        """(label, target) pairs for the report, those that exist only."""
        pairs = [
            ("TensorBoard (training)", self.tensorboard_dir),
            ("MLflow run (training)", self.training_run_url),
            ("MLflow run (evaluation)", self.mlflow_run_url),
        ]
        seen: set[str] = set()
        kept = []
        for label, target in pairs:
            if target and target not in seen:
                seen.add(target)
                kept.append((label, target))
        return kept


def training_summary(config: EvaluationStageConfig) -> dict[str, Any]:
    if not config.trained_dir:
        return {}
    path = Path(config.trained_dir) / SUMMARY_FILE
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def metric_key(score: CellScore) -> str:
    """MLflow keys take letters, digits, _ - . / and spaces."""
    return re.sub(r"[^A-Za-z0-9_./ -]", "_", f"eval/{score.benchmark}/{score.model}/reasoning_{score.mode}")


def score_metrics(scores: Sequence[CellScore]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for score in scores:
        key = metric_key(score)
        metrics[f"{key}/accuracy"] = score.accuracy
        metrics[f"{key}/ci_low"] = score.ci_low
        metrics[f"{key}/ci_high"] = score.ci_high
        metrics[f"{key}/unanswered_rate"] = score.unanswered_rate
        metrics[f"{key}/compliance"] = score.compliance
    return metrics


def track(config: EvaluationStageConfig, scores: Sequence[CellScore]) -> TrackingLinks:
    """Log the scores to MLflow where configured (into the training's run when there is one) and gather links."""
    summary = training_summary(config)
    tensorboard = summary.get("tensorboardDir")
    if tensorboard is None and config.trained_dir and (Path(config.trained_dir) / "tensorboard").is_dir():
        tensorboard = str(Path(config.trained_dir) / "tensorboard")
    training_url = summary.get("mlflowRunUrl")
    spec = config.tracking.mlflow if config.tracking is not None else None
    if spec is None:
        return TrackingLinks(tensorboard_dir=tensorboard, training_run_url=training_url)
    from reasoning_jobs.common.mlflow_tracking import open_run, run_name

    previous = summary.get("mlflowRunId")
    name = run_name(config.output_dir)
    tracker = open_run(spec, name, previous) if previous else None
    if tracker is None:
        tracker = open_run(spec, name)
    if tracker is None:
        return TrackingLinks(tensorboard_dir=tensorboard, training_run_url=training_url)
    tracker.log_metrics(score_metrics(scores), step=0)
    tracker.finish()
    return TrackingLinks(tensorboard_dir=tensorboard, training_run_url=training_url, mlflow_run_url=tracker.url)
