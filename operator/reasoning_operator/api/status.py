"""`ReasoningRun.status`: written only by the operator (or the local runner), derived from child objects.

The per-stage members and fields are generated from the stage definitions (stage_members.py); the rest is here.

`set_condition` keeps metav1.Condition semantics: lastTransitionTime moves only when the status changes."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .base import ApiModel
from .cache import CacheStatus
from .records import StagePhase, StagesStatusBase, StageStatus
from .results import CurationProgress, TrainingProgress
from .stage_members import ConditionType, Phase, Stage, StageResults, StagesStatus


class Condition(ApiModel):
    """The metav1.Condition shape, so `kubectl wait --for=condition=Succeeded` works."""

    type: str
    status: str = Field(pattern=r"^(True|False|Unknown)$")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class ReasoningRunStatus(StageResults):
    """Observed state of the run, written by the operator from its children."""

    phase: Phase = Phase.PENDING
    current_stage: Stage | None = None
    progress: str | None = Field(default=None, description="Human summary for kubectl get, e.g. 'step 40/2000'.")
    headline_accuracy: str | None = Field(default=None, description="e.g. 'gpqa_diamond/on: 0.412'.")
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    stages: StagesStatus = Field(default_factory=StagesStatus)
    curation_progress: CurationProgress | None = None
    training_progress: TrainingProgress | None = None
    storage_claim: str | None = None
    cache: CacheStatus | None = Field(default=None, description="Where spec.cache is enabled: the stage keys.")
    failure_reason: str | None = None

    def deep_copy(self) -> ReasoningRunStatus:
        """A deep copy through pydantic-core (dump, validate): the same model, in a seventh of the time of
        model_copy(deep=True)'s copy.deepcopy, which was the largest share of a reconcile's own CPU. Exact
        because no status model has a validator that changes what it is given (tests/operator/test_api_models)."""
        return ReasoningRunStatus.model_validate(self.model_dump(round_trip=True))


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


__all__ = [
    "TIME_FORMAT",
    "Condition",
    "ConditionType",
    "Phase",
    "ReasoningRunStatus",
    "Stage",
    "StagePhase",
    "StageResults",
    "StageStatus",
    "StagesStatus",
    "StagesStatusBase",
    "get_condition",
    "seconds_between",
    "set_condition",
    "timestamp",
]
