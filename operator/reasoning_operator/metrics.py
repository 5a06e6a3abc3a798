"""Prometheus metrics, recomputed from each run's status after every reconcile (state lives in the
cluster; the gauges are a view of it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from reasoning_operator.api import Phase, ReasoningRunStatus
from reasoning_operator.api.stage_defs import STAGES

REGISTRY = CollectorRegistry()
RUNS_BY_PHASE = Gauge(
    "reasoning_runs",
    "ReasoningRuns by phase (1 for the run's current phase).",
    ["namespace", "run", "phase"],
    registry=REGISTRY,
)
STAGE_SECONDS = Gauge(
    "reasoning_stage_duration_seconds",
    "Duration of each finished stage.",
    ["namespace", "run", "stage"],
    registry=REGISTRY,
)
TRAINING_STEP = Gauge(
    "reasoning_training_step", "Last reported training step.", ["namespace", "run"], registry=REGISTRY
)
TRAINING_MAX_STEPS = Gauge(
    "reasoning_training_max_steps", "Configured training steps.", ["namespace", "run"], registry=REGISTRY
)
TRAINING_LOSS = Gauge(
    "reasoning_training_loss", "Last reported training loss.", ["namespace", "run"], registry=REGISTRY
)
ACCURACY = Gauge(
    "reasoning_eval_accuracy",
    "Evaluation accuracy.",
    ["namespace", "run", "benchmark", "mode", "model"],
    registry=REGISTRY,
)
CURATED_SAMPLES = Gauge(
    "reasoning_curated_samples", "Samples written by curation.", ["namespace", "run"], registry=REGISTRY
)
CURATION_BLOCKS_DONE = Gauge(
    "reasoning_curation_blocks_done", "Input blocks curation has written.", ["namespace", "run"], registry=REGISTRY
)
CURATION_BLOCKS = Gauge(
    "reasoning_curation_blocks", "Input blocks curation planned.", ["namespace", "run"], registry=REGISTRY
)
CURATION_RAY_WORKERS = Gauge(
    "reasoning_curation_ray_workers_ready",
    "Ray workers KubeRay counts ready for the run's curation (spec.curation.cluster).",
    ["namespace", "run"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "reasoning_reconcile_errors", "Reconciles that raised.", ["namespace", "run", "error"], registry=REGISTRY
)
RECONCILES = Counter(
    "reasoning_reconciles",
    "Checks of a run: full (fetch, decide, apply), unchanged (same inputs as the last quiet one), error.",
    ["result"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("reasoning_queue_depth", "Runs waiting for a worker.", registry=REGISTRY)
RECONCILE_SECONDS = Histogram("reasoning_reconcile_duration_seconds", "Time spent in one reconcile.", registry=REGISTRY)


def observe_status(namespace: str, run: str, status: ReasoningRunStatus) -> None:
    for phase in Phase:
        RUNS_BY_PHASE.labels(namespace, run, phase.value).set(1 if status.phase == phase else 0)
    for stage in STAGES:
        record = getattr(status.stages, stage.stage.value)  # not .get(): that would give export a status
        if record is not None and record.duration_seconds is not None:
            STAGE_SECONDS.labels(namespace, run, stage.stage.value).set(record.duration_seconds)
    if status.training_progress is not None:
        TRAINING_STEP.labels(namespace, run).set(status.training_progress.step)
        TRAINING_MAX_STEPS.labels(namespace, run).set(status.training_progress.max_steps)
        if status.training_progress.loss is not None:
            TRAINING_LOSS.labels(namespace, run).set(status.training_progress.loss)
    if status.training is not None:
        TRAINING_STEP.labels(namespace, run).set(status.training.steps)
    if status.curation_progress is not None:
        CURATION_BLOCKS_DONE.labels(namespace, run).set(status.curation_progress.blocks_done)
        CURATION_BLOCKS.labels(namespace, run).set(status.curation_progress.blocks_total)
        if status.curation_progress.workers_ready is not None:
            CURATION_RAY_WORKERS.labels(namespace, run).set(status.curation_progress.workers_ready)
    if status.curation is not None:
        CURATED_SAMPLES.labels(namespace, run).set(status.curation.samples_written)
    if status.evaluation is not None:
        for acc in status.evaluation.accuracies:
            ACCURACY.labels(namespace, run, acc.benchmark, acc.mode, acc.model).set(acc.accuracy)


def forget(namespace: str, run: str) -> None:
    """Drop a deleted run's series so dashboards don't show ghosts."""
    for metric in (
        RUNS_BY_PHASE,
        STAGE_SECONDS,
        TRAINING_STEP,
        TRAINING_MAX_STEPS,
        TRAINING_LOSS,
        ACCURACY,
        CURATED_SAMPLES,
        CURATION_BLOCKS_DONE,
        CURATION_BLOCKS,
        CURATION_RAY_WORKERS,
    ):
        for labels in list(metric._metrics):
            if labels[0] == namespace and labels[1] == run:
                metric.remove(*labels)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
