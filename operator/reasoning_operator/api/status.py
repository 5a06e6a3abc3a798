"""`ReasoningRun.status`: written only by the operator (or the local runner), derived from child objects.

`set_condition` keeps metav1.Condition semantics: lastTransitionTime moves only when the status changes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .base import ApiModel
from .cache import CacheStatus
from .results import CurationResult, EvaluationResult, ExportResult, TrainingProgress, TrainingResult


class Phase(StrEnum):
    PENDING = "Pending"
    CURATING = "Curating"
    TRAINING = "Training"
    SERVING = "Serving"
    EVALUATING = "Evaluating"
    EXPORTING = "Exporting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Stage(StrEnum):
    CURATION = "curation"
    TRAINING = "training"
    SERVING = "serving"
    EVALUATION = "evaluation"
    #: only where spec.export is set
    EXPORT = "export"


class StagePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ConditionType(StrEnum):
    DATA_CURATED = "DataCurated"
    MODEL_TRAINED = "ModelTrained"
    SERVING_READY = "ServingReady"
    EVALUATED = "Evaluated"
    EXPORTED = "Exported"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    #: True while the run cannot make progress (no node fits, serving never ready, the apiserver keeps
    #: failing), with the reason; the run keeps waiting. Set after spec.progressDeadlineSeconds.
    STALLED = "Stalled"
    #: True while spec.suspend holds the run (current Job suspended, serving at 0 replicas).
    SUSPENDED = "Suspended"
    #: With spec.queueName: whether Kueue has admitted the current stage Job (False: waiting, with why).
    ADMITTED = "Admitted"


class Condition(ApiModel):
    """The metav1.Condition shape, so `kubectl wait --for=condition=Succeeded` works."""

    type: str
    status: str = Field(pattern=r"^(True|False|Unknown)$")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class StageStatus(ApiModel):
    phase: StagePhase = StagePhase.PENDING
    child: str | None = Field(default=None, description="Name of the Job or Deployment running the stage.")
    start_time: str | None = None
    completion_time: str | None = None
    duration_seconds: float | None = None
    message: str | None = None
    reused_from: str | None = Field(
        default=None, description="spec.cache: the run whose output of this stage was reused (no Job ran)."
    )


class StagesStatus(ApiModel):
    curation: StageStatus = Field(default_factory=StageStatus)
    training: StageStatus = Field(default_factory=StageStatus)
    serving: StageStatus = Field(default_factory=StageStatus)
    evaluation: StageStatus = Field(default_factory=StageStatus)
    export: StageStatus | None = Field(default=None, description="Only where spec.export is set.")

    def get(self, stage: Stage) -> StageStatus:
        """The stage's status; an optional stage's (export) is created on first use (runs without it never
        have one)."""
        status: StageStatus | None = getattr(self, stage.value)
        if status is None:
            status = StageStatus()
            setattr(self, stage.value, status)
        return status

    def present(self) -> list[Stage]:
        """The stages this run has: the four, and an optional one (export) where it has a status."""
        return [stage for stage in Stage if getattr(self, stage.value) is not None]


class ReasoningRunStatus(ApiModel):
    phase: Phase = Phase.PENDING
    current_stage: Stage | None = None
    progress: str | None = Field(default=None, description="Human summary for kubectl get, e.g. 'step 40/2000'.")
    headline_accuracy: str | None = Field(default=None, description="e.g. 'gpqa_diamond/on: 0.412'.")
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    stages: StagesStatus = Field(default_factory=StagesStatus)
    curation: CurationResult | None = None
    training: TrainingResult | None = None
    training_progress: TrainingProgress | None = None
    evaluation: EvaluationResult | None = None
    export: ExportResult | None = None
    storage_claim: str | None = None
    cache: CacheStatus | None = Field(default=None, description="Where spec.cache is enabled: the stage keys.")
    failure_reason: str | None = None


def set_condition(
    conditions: list[Condition],
    kind: ConditionType,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> list[Condition]:
    value = "Unknown" if status is None else ("True" if status else "False")
    existing = next((c for c in conditions if c.type == kind.value), None)
    transition = existing.last_transition_time if existing is not None and existing.status == value else now
    updated = Condition(
        type=kind.value,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    if existing is None:
        return [*conditions, updated]
    return [updated if c.type == kind.value else c for c in conditions]


def get_condition(conditions: list[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind.value), None)


#: metav1.Time on the wire (second precision, UTC).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one wire timestamp to another; None when either is missing or not a metav1.Time."""
    if not start or not end:
        return None
    try:
        return (datetime.strptime(end, TIME_FORMAT) - datetime.strptime(start, TIME_FORMAT)).total_seconds()
    except ValueError:
        return None
