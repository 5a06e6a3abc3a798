"""spec.suspend and Kueue, purely: whether a stage Job is to be (un)suspended, what a held stage reports, and
the Suspended / Admitted conditions.

The one rule against fighting Kueue: with a queue name, the operator sets a Job's suspend only to enforce
spec.suspend=true; unsuspending a queued Job is Kueue's alone (on admission). Without one, the operator
suspends and unsuspends itself. A held stage never counts as waiting without progress, so Stalled and the
progress deadline stay quiet while a run is suspended or waits for admission."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reasoning_operator.api import (
    ConditionType,
    ReasoningRunStatus,
    Stage,
    StagePhase,
    get_condition,
    set_condition,
)
from reasoning_operator.api.stage_defs import StageKind, definition

from . import builders
from .observe import JobObs, Observed
from .run import Run

if TYPE_CHECKING:
    from .plan import StageOutcome

SUSPENDED = "Suspended"
WAITING_FOR_ADMISSION = "WaitingForAdmission"
RESUMING = "Resuming"


def _finished(job: JobObs) -> bool:
    return job.complete or job.failed_final


def _serving_ready(observed: Observed) -> bool:
    dep = observed.deployment
    return dep is not None and dep.ready >= 1 and dep.replicas >= 1


def suspension_op(run: Run, stage: Stage, job: JobObs, observed: Observed) -> dict[str, Any] | None:
    """The apply that flips the Job's spec.suspend (or, for a queued Job whose Workload is known, the
    Workload's spec.active), or None when it already is as it should be. Evaluation is resumed only once
    serving is ready again (it would otherwise burn its retries on a scaled-down server)."""
    if _finished(job):
        return None
    if run.queue_name is not None and job.workload is not None:
        # Kueue's way: an inactive Workload is evicted (Job suspended, quota freed) and stays out of the
        # queue; suspending an admitted Job directly, Kueue would unsuspend it.
        if run.spec.suspend and job.workload_active:
            return builders.workload_activation(run, job.workload, False)
        if not run.spec.suspend and not job.workload_active and job.workload_held:
            return builders.workload_activation(run, job.workload, True)  # back in the queue; Kueue admits
        return None
    if run.spec.suspend:
        return None if job.suspended else builders.job_suspension(run, stage, True)
    if job.suspended and run.queue_name is None and (not definition(stage).uses_service or _serving_ready(observed)):
        return builders.job_suspension(run, stage, False)
    return None


def _held(outcome: StageOutcome, phase: StagePhase, reason: str, message: str) -> StageOutcome:
    """A held stage: no result, and no waiting_since (it never counts as stalled)."""
    return replace(outcome, phase=phase, reason=reason, message=message, result=None, waiting_since=None)


def held_outcome(run: Run, stage: Stage, job: JobObs | None, outcome: StageOutcome) -> StageOutcome:
    """The outcome of a stage the suspension or the queue holds, or the observed outcome with its waiting
    counted from the Job's resumption, not its creation."""
    if job is None:
        if run.spec.suspend:
            return _held(outcome, StagePhase.PENDING, SUSPENDED, f"spec.suspend is true: {stage.value} not started")
        return outcome
    if _finished(job):
        return outcome
    if run.spec.suspend:
        return _held(outcome, StagePhase.RUNNING, SUSPENDED, f"spec.suspend is true: Job {job.name} suspended")
    if job.suspended and run.queue_name is not None:
        why = job.admission_message or f"Job {job.name} is suspended until Kueue admits it"
        return _held(
            outcome,
            StagePhase.RUNNING,
            WAITING_FOR_ADMISSION,
            f"waiting for admission to queue {run.queue_name}: {why}",
        )
    if job.suspended:
        return _held(outcome, StagePhase.RUNNING, RESUMING, f"resuming Job {job.name}")
    since, resumed = outcome.waiting_since, job.resumed_at
    if since is not None and resumed is not None and resumed > since:
        return replace(outcome, waiting_since=resumed)
    return outcome


def serving_held(run: Run, outcome: StageOutcome) -> StageOutcome:
    if run.spec.suspend and outcome.phase != StagePhase.FAILED:
        return _held(outcome, StagePhase.RUNNING, SUSPENDED, "spec.suspend is true: serving scaled to 0 replicas")
    return outcome


def hold_conditions(
    run: Run,
    status: ReasoningRunStatus,
    current: Stage | None,
    observed: Observed,
    terminal: bool,
    stamp: str,
    generation: int,
    succeeded: bool = False,
) -> None:
    """Suspended (only once spec.suspend has been true) and, with a queue name, Admitted for the current
    stage Job; the progress line says `suspended` while held."""
    existing = get_condition(status.conditions, ConditionType.SUSPENDED)
    if run.spec.suspend and not terminal:
        held = run.child_name(current) if current is not None else "the run"
        status.conditions = set_condition(
            status.conditions,
            ConditionType.SUSPENDED,
            True,
            "SuspendedBySpec",
            f"spec.suspend is true: {held} is held (Job suspended, serving at 0 replicas, no new stage)",
            stamp,
            generation,
        )
        status.progress = "suspended"
    elif existing is not None and existing.status == "True":
        status.conditions = set_condition(
            status.conditions, ConditionType.SUSPENDED, False, "Resumed", "spec.suspend is false", stamp, generation
        )
    admitted = get_condition(status.conditions, ConditionType.ADMITTED)
    if run.queue_name is not None and succeeded and admitted is not None and admitted.status == "False":
        # The last Job can be admitted and finish between two reconciles: having run, it was admitted.
        status.conditions = set_condition(
            status.conditions,
            ConditionType.ADMITTED,
            True,
            "Admitted",
            f"every stage Job was admitted by queue {run.queue_name} and ran",
            stamp,
            generation,
        )
    if run.queue_name is None or terminal or current is None or definition(current).kind != StageKind.JOB:
        return
    job = observed.jobs.get(current)
    if job is None:
        return
    if job.suspended and not run.spec.suspend:
        why = job.admission_message or "the Job is suspended until Kueue admits it"
        status.conditions = set_condition(
            status.conditions,
            ConditionType.ADMITTED,
            False,
            WAITING_FOR_ADMISSION,
            f"Job {job.name} waits in queue {run.queue_name}: {why}"[:2000],
            stamp,
            generation,
        )
    elif not job.suspended:
        status.conditions = set_condition(
            status.conditions,
            ConditionType.ADMITTED,
            True,
            "Admitted",
            f"Job {job.name} admitted by queue {run.queue_name}",
            stamp,
            generation,
        )
