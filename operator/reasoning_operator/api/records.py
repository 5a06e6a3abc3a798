"""The stage-independent parts of the status: a stage's record, the run-level phases and conditions.

The per-stage parts (the Stage, Phase and ConditionType members, one record and one result field per stage) are
generated from the stage definitions into stage_members.py; this module is what they are built on."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import Field

from .base import ApiModel

if TYPE_CHECKING:
    from .stage_members import Stage


class StagePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


#: The run's phases that belong to no stage: (member, value, why), before and after the stages' own.
RUN_PHASES_BEFORE = [("PENDING", "Pending", None)]
RUN_PHASES_AFTER = [("SUCCEEDED", "Succeeded", None), ("FAILED", "Failed", None)]
#: The run's conditions that belong to no stage, after the stages' own.
RUN_CONDITIONS = [
    ("SUCCEEDED", "Succeeded", None),
    ("FAILED", "Failed", None),
    (
        "STALLED",
        "Stalled",
        "True while the run cannot make progress (no node fits, serving never ready, the apiserver keeps failing), "
        "with the reason; the run keeps waiting. Set after spec.progressDeadlineSeconds.",
    ),
    ("SUSPENDED", "Suspended", "True while spec.suspend holds the run (current Job suspended, serving at 0 replicas)."),
    (
        "ADMITTED",
        "Admitted",
        "With spec.queueName: whether Kueue has admitted the current stage Job (False: waiting, with why).",
    ),
]


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


class StagesStatusBase(ApiModel):
    """One StageStatus per stage, a field each (generated: stage_members.StagesStatus)."""

    def get(self, stage: Stage) -> StageStatus:
        """The stage's status; an optional stage's (export) is created on first use (runs without it never
        have one)."""
        status: StageStatus | None = getattr(self, stage.value)
        if status is None:
            status = StageStatus()
            setattr(self, stage.value, status)
        return status

    def present(self) -> list[Stage]:
        """The stages this run has: every stage that is always there, and an optional one where it has a status."""
        from .stage_members import Stage

        return [stage for stage in Stage if getattr(self, stage.value) is not None]
