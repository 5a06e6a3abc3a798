"""The status state machine, once: how a stage's record and condition, and the run's phase and conditions,
move. Pure functions on a ReasoningRunStatus; the operator's decision (core/decide.py) and the local runner
(reasoning_jobs/local/runner.py) both call them, so `kubectl get rr -o yaml` and a local run's status.yaml
read alike. What differs stays with the caller: the operator's Events, durations and results; the local
runner's wall-clock durations."""

from __future__ import annotations

from .stage_defs import definition
from .status import ConditionType, Phase, ReasoningRunStatus, Stage, StagePhase, get_condition, set_condition

#: The reason of a run (and stage) whose child the apiserver refused: the run's Succeeded condition says it too.
CHILD_REJECTED = "ChildRejected"
#: The reason a stage reports while its child is being created (its name is recorded already).
CREATING = "Creating"


def mark_stage(
    status: ReasoningRunStatus,
    stage: Stage,
    phase: StagePhase,
    reason: str,
    message: str,
    stamp: str,
    generation: int,
    child: str,
    keep_phase: bool = False,
) -> StagePhase:
    """The stage's record and condition for an outcome (`phase`, `reason`, `message`); returns the phase the
    record had before. `keep_phase` writes the condition alone (serving, once ready: a later blip shows in
    ServingReady only). The child is named once the stage left Pending, or while it is being created; the
    start and completion times are set once each."""
    record = status.stages.get(stage)
    before = record.phase
    if not keep_phase:
        record.phase = phase
        record.message = message
    if record.phase != StagePhase.PENDING or reason == CREATING:
        record.child = child
    if record.phase != StagePhase.PENDING and record.start_time is None:
        record.start_time = stamp
    if record.phase in (StagePhase.SUCCEEDED, StagePhase.FAILED) and record.completion_time is None:
        record.completion_time = stamp
    ok = {StagePhase.SUCCEEDED: True, StagePhase.FAILED: False}.get(phase, False)
    status.conditions = set_condition(
        status.conditions, definition(stage).condition, ok, reason, message, stamp, generation
    )
    return before


def enter_stage(status: ReasoningRunStatus, stage: Stage, progress: str | None) -> None:
    """The run is at `stage`: its phase is the stage's, with a progress line."""
    status.phase = definition(stage).phase
    status.current_stage = stage
    status.progress = progress


def end_run(status: ReasoningRunStatus, phase: Phase) -> None:
    """The run is over: Succeeded or Failed, at no stage."""
    status.phase = phase
    status.current_stage = None
    status.progress = "done" if phase == Phase.SUCCEEDED else "failed"


def run_conditions(
    status: ReasoningRunStatus, stamp: str, generation: int, failed_reason: str | None, summary: str
) -> None:
    """Succeeded (and Failed, for a failed run) from the run's phase: True with `summary` once it succeeded;
    False with status.failureReason once it failed (Failed True with `failed_reason`, else the reason it
    already had); Unknown with the phase and progress line while it runs."""
    if status.phase == Phase.SUCCEEDED:
        status.conditions = set_condition(
            status.conditions, ConditionType.SUCCEEDED, True, "Succeeded", summary, stamp, generation
        )
    elif status.phase == Phase.FAILED:
        existing = get_condition(status.conditions, ConditionType.FAILED)
        reason = failed_reason or (existing.reason if existing is not None else "StageFailed")
        message = status.failure_reason or ""
        status.conditions = set_condition(
            status.conditions,
            ConditionType.SUCCEEDED,
            False,
            reason if reason == CHILD_REJECTED else "Failed",
            message,
            stamp,
            generation,
        )
        status.conditions = set_condition(
            status.conditions, ConditionType.FAILED, True, reason, message, stamp, generation
        )
    else:
        status.conditions = set_condition(
            status.conditions,
            ConditionType.SUCCEEDED,
            None,
            status.phase.value,
            status.progress or "",
            stamp,
            generation,
        )


def serving_stopped(status: ReasoningRunStatus, message: str, stamp: str, generation: int) -> None:
    """The server is gone after evaluation: ServingReady False (the serving stage itself stays Succeeded)."""
    status.conditions = set_condition(
        status.conditions, ConditionType.SERVING_READY, False, "ServingStopped", message, stamp, generation
    )
