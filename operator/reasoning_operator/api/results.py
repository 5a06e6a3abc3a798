"""What each finished stage reports back: written by the job as its pod's termination message (compact
JSON, < 4 KiB) and as `summary.json` beside its output, read by the operator into `status`."""

from __future__ import annotations

from pydantic import Field

from .base import ApiModel


class KeyedResult(ApiModel):
    """What every stage's artifacts were made from, and what it found of other inputs in its directory."""

    inputs_key: str | None = Field(
        default=None, description="Key of the inputs (config, upstream data, base model) the artifacts carry."
    )
    stale_artifacts: str | None = Field(
        default=None,
        description="Where artifacts of other inputs found in the output directory were moved (never deleted).",
    )


class CurationResult(KeyedResult):
    samples_read: int = Field(ge=0)
    samples_written: int = Field(ge=0)
    dropped: dict[str, int] = Field(default_factory=dict, description="Samples dropped, by rule name.")
    malformed_lines: int = Field(default=0, ge=0)
    reasoning_on: int = Field(default=0, ge=0)
    reasoning_off: int = Field(default=0, ge=0)
    output_path: str | None = None
    token_percentiles: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Written samples' prompt/completion token counts: p50, p90, p99, max, mean."
    )
    errors: list[str] = Field(
        default_factory=list, max_length=10, description="The first malformed lines, as 'file:line: what is wrong'."
    )
    token_counter: str | None = Field(
        default=None,
        description="Library that counted tokens: fastokens, tokenizers, or both where a spot check fell back.",
    )
    blocks: int = Field(default=0, ge=0, description="Input blocks the pipeline ran (one task each).")


class TrainingResult(KeyedResult):
    steps: int = Field(ge=0)
    final_loss: float | None = None
    tokens_seen: int = Field(default=0, ge=0)
    wall_seconds: float = Field(default=0.0, ge=0)
    tokens_per_second: float = Field(default=0.0, ge=0)
    adapter_path: str | None = None
    backend: str | None = None
    tensorboard_dir: str | None = Field(default=None, description="TensorBoard event files of this training.")
    mlflow_run_url: str | None = Field(default=None, description="The MLflow run, where spec.tracking.mlflow is set.")
    mlflow_run_id: str | None = Field(default=None, description="Evaluation logs its metrics into the same run.")


class Accuracy(ApiModel):
    benchmark: str
    mode: str
    model: str
    accuracy: float = Field(ge=0.0, le=1.0)
    ci_low: float = Field(default=0.0, ge=0.0, le=1.0)
    ci_high: float = Field(default=1.0, ge=0.0, le=1.0)
    n: int = Field(default=0, ge=0)
    unanswered_rate: float | None = None
    compliance: float | None = Field(default=None, description="Reasoning-toggle compliance.")


class EvaluationResult(KeyedResult):
    accuracies: list[Accuracy] = Field(default_factory=list)
    report_path: str | None = None
    mlflow_run_url: str | None = Field(default=None, description="The MLflow run the metrics were logged to.")

    def headline(self) -> str | None:
        """The trained model with reasoning on, first benchmark: what `kubectl get rr` shows."""
        if not self.accuracies:
            return None
        best = sorted(self.accuracies, key=lambda a: (a.model != "trained", a.mode != "on", a.benchmark))[0]
        return f"{best.benchmark}/{best.mode}: {best.accuracy:.3f}"


class ExportResult(KeyedResult):
    destination: str = Field(description="Where the export went: a path on the volume, s3://… or hf://….")
    merged_path: str | None = Field(default=None, description="The merged Hugging Face directory, if exported.")
    adapter_path: str | None = Field(default=None, description="The PEFT adapter, if exported.")
    files: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)


class CurationProgress(ApiModel):
    """How far a curation is: blocks written (the job's progress line, read from its pod's log: the single-pod
    Job's, or the RayJob's submitter, which follows the driver) and, on a KubeRay cluster, its Ray workers (the
    RayJob's status)."""

    blocks_done: int = Field(ge=0)
    blocks_total: int = Field(ge=0)
    workers_ready: int | None = Field(default=None, ge=0)
    workers_desired: int | None = Field(default=None, ge=0)


class TrainingProgress(ApiModel):
    """The last progress line a training job logged (read from the pod's log)."""

    step: int = Field(ge=0)
    max_steps: int = Field(ge=1)
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
