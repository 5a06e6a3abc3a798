"""The decision: (run, observed children, now) -> what to create/apply/delete, the new status, and events.

Level-triggered and idempotent: it derives everything from the cluster, so calling it twice, or after an
operator restart, gives the same answer and never asks for a second copy of a child."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from pydantic import ValidationError

from reasoning_operator.api import (
    ApiModel,
    ConditionType,
    CurationProgress,
    CurationResult,
    Phase,
    ReasoningRunStatus,
    Stage,
    StagePhase,
    StageStatus,
    get_condition,
    seconds_between,
    set_condition,
    timestamp,
    transitions,
)
from reasoning_operator.api.stage_defs import StageKind, definition, pipeline

from . import builders, service, stage_cache, suspension
from .observe import JobObs, Observed, PodObs
from .plan import APPLY, CREATE, Event, Plan, StageOutcome
from .rejection import CHILD_REJECTED, OOM_KILLED, TRANSIENT, pod_creation_refused
from .run import Run

TERMINAL = (Phase.SUCCEEDED, Phase.FAILED)
__all__ = ["APPLY", "CREATE", "TERMINAL", "Event", "Plan", "StageOutcome", "decide", "stage_order"]


def stage_order(run: Run) -> list[Stage]:
    """The four stages, then export where spec.export is set (the registry's order)."""
    return [d.stage for d in pipeline(run.spec)]


def _result(stage: Stage, pods: list[PodObs]) -> ApiModel | str:
    """The stage result from the newest succeeded pod's termination message, or why it is unusable."""
    succeeded = [p for p in pods if p.phase == "Succeeded"]
    if not succeeded:
        return "no succeeded pod left to read the result from"
    message = succeeded[-1].termination_message
    if not message:
        return f"pod {succeeded[-1].name} reported no result (empty termination message)"
    model = definition(stage).result
    if model is None:
        raise ValueError(f"stage {stage.value} reports no result")
    try:
        return model.model_validate(json.loads(message))
    except (json.JSONDecodeError, ValidationError) as err:
        return f"pod {succeeded[-1].name} reported an invalid result: {str(err).splitlines()[0]}"


def _job_outcome(stage: Stage, job: JobObs | None, pods: list[PodObs]) -> StageOutcome:
    if job is None:
        return StageOutcome(StagePhase.PENDING, transitions.CREATING, f"creating Job for {stage.value}")
    if job.failed_final:
        detail = next((p.termination_message for p in reversed(pods) if p.termination_message), None)
        message = f"Job {job.name} failed: {job.failure_reason or 'Failed'}: {job.failure_message or ''}".strip()
        if detail:
            message += f"; last pod said: {detail[-500:]}"
        oom = next((p for p in reversed(pods) if p.terminated_reason == OOM_KILLED), None)
        if oom is not None:
            message = (
                f"{stage.value} pod {oom.name} was OOMKilled: its container exceeded the memory limit "
                f"(spec.{stage.value}.resources.memory); {message}"
            )
            return StageOutcome(StagePhase.FAILED, OOM_KILLED, message[:2000])
        return StageOutcome(StagePhase.FAILED, job.failure_reason or "JobFailed", message)
    if job.complete:
        result = _result(stage, pods)
        if isinstance(result, str):
            return StageOutcome(StagePhase.FAILED, "ResultMissing", f"Job {job.name} succeeded but {result}")
        return StageOutcome(StagePhase.SUCCEEDED, "Completed", f"Job {job.name} completed", result)
    current = pods[-1] if pods else None
    live = [p for p in pods if p.phase in ("Pending", "Running")]
    if not live and job.create_failure and pod_creation_refused(job.create_failure):
        # Pod Security, quota, an invalid field: the Job controller will be refused on every retry.
        return StageOutcome(
            StagePhase.FAILED,
            CHILD_REJECTED,
            f"Job {job.name} cannot create its pod: the apiserver refused it: {job.create_failure}"[:2000],
        )
    if current is not None and current.unschedulable:
        return StageOutcome(
            StagePhase.RUNNING,
            "Unschedulable",
            f"pod {current.name} cannot be scheduled: {current.unschedulable}",
            waiting_since=current.created,
        )
    if current is not None and current.waiting_reason:
        return StageOutcome(
            StagePhase.RUNNING,
            current.waiting_reason,
            f"pod {current.name}: {current.waiting_reason}",
            waiting_since=current.created,
        )
    retries = f" (retry {job.failed} of the backoff limit)" if job.failed else ""
    if job.active or (current is not None and current.phase == "Running"):
        return StageOutcome(StagePhase.RUNNING, "Running", f"Job {job.name} running{retries}")
    return StageOutcome(
        StagePhase.RUNNING,
        "Starting",
        f"Job {job.name} created, waiting for its pod{retries}",
        waiting_since=(current.created if current else None) or job.created or job.start_time,
    )


def _job_step(
    run: Run, stage: Stage, status: ReasoningRunStatus, observed: Observed, plan: Plan
) -> StageOutcome | None:
    """A one-shot stage's part of the pipeline pass: None once it succeeded (it stays done); else the output
    of another run (spec.cache) taken instead of a Job, or its Job (created here, (un)suspended) and what it
    says."""
    stage_status = status.stages.get(stage)
    if stage_status.phase == StagePhase.SUCCEEDED:
        return None
    # spec.cache: a finished run's output of this stage, taken instead of a Job (never once a Job exists).
    source = stage_cache.reusable(run, stage, observed.cache_sources) if stage not in observed.jobs else None
    if source is not None and source.result is None:
        message = f"run {source.run} is making this {stage.value} output (cache key {source.key}): waiting for it"
        return StageOutcome(StagePhase.PENDING, "WaitingForCache", message)
    if source is not None:
        message = f"reused the {stage.value} output of run {source.run} (cache key {source.key})"
        stage_status.reused_from = source.run
        return StageOutcome(StagePhase.SUCCEEDED, "Reused", message, source.result)
    job = observed.jobs.get(stage)
    if job is None and not run.spec.suspend:
        plan.ops.append((CREATE, builders.build_stage_child(run, stage)))
    flip = suspension.suspension_op(run, stage, job, observed) if job is not None else None
    if flip is not None:
        plan.ops.append((APPLY, flip))
    outcome = suspension.held_outcome(run, stage, job, _job_outcome(stage, job, observed.pods.get(stage, [])))
    if stage == Stage.TRAINING and observed.training_progress is not None:
        status.training_progress = observed.training_progress
    if stage == Stage.CURATION:
        status.curation_progress = _curation_progress(status.curation_progress, observed.curation_progress, outcome)
    if job is not None:
        stage_status.start_time = stage_status.start_time or job.start_time
        stage_status.completion_time = job.completion_time or stage_status.completion_time
    return outcome


def _curation_progress(
    last: CurationProgress | None, seen: CurationProgress | None, outcome: StageOutcome
) -> CurationProgress | None:
    """The newest progress seen; once the stage succeeded, all of its blocks (the result counts them), with the
    workers last seen (a finished RayJob's cluster is gone). A pod's log that has no progress line yet does not
    undo blocks already seen."""
    if seen is not None and last is not None and seen.blocks_total == 0 and last.blocks_total:
        seen = seen.model_copy(update={"blocks_done": last.blocks_done, "blocks_total": last.blocks_total})
    current = seen or last
    if isinstance(outcome.result, CurationResult) and outcome.result.blocks:
        blocks = outcome.result.blocks
        workers = (
            {}
            if current is None
            else {"workers_ready": current.workers_ready, "workers_desired": current.workers_desired}
        )
        return CurationProgress(blocks_done=blocks, blocks_total=blocks, **workers)
    return current


def _progress(stage: Stage | None, status: ReasoningRunStatus, outcome: StageOutcome | None) -> str | None:
    if stage is None:
        return None
    if outcome is not None and outcome.reason == "Unschedulable":
        return "waiting for a node"
    if stage == Stage.TRAINING and status.training_progress is not None:
        p = status.training_progress
        return f"step {p.step}/{p.max_steps} ({100 * p.step // max(p.max_steps, 1)}%)"
    if stage == Stage.CURATION and status.curation_progress is not None:
        c = status.curation_progress
        parts = [f"blocks {c.blocks_done}/{c.blocks_total}"] if c.blocks_total else []
        if c.workers_desired:
            parts.append(f"{c.workers_ready}/{c.workers_desired} Ray workers ready")
        if parts:
            return ", ".join(parts)
    long_running = definition(stage).kind == StageKind.SERVICE
    return outcome.message if outcome is not None and long_running else stage.value


def decide(run: Run, observed: Observed, now: datetime) -> Plan:
    stamp = timestamp(now)
    status = run.status.deep_copy()
    status.observed_generation = run.ref.generation
    generation = run.ref.generation
    plan = Plan()
    server_url = builders.serving_url(run)

    terminal = status.phase in (Phase.SUCCEEDED, Phase.FAILED)
    if status.phase != Phase.FAILED:  # a failed run (perhaps on a refused ConfigMap) asks for nothing more
        plan.ops.append((APPLY, builders.build_config_map(run, server_url)))
        claim = builders.build_claim(run)
        if claim is not None:
            plan.ops.append((CREATE, claim))
    status.storage_claim = run.claim_name
    status.cache = stage_cache.cache_status(run)

    current: Stage | None = None
    current_outcome: StageOutcome | None = None
    failed_reason: str | None = None

    # Each stage by its kind: a one-shot Job stage (_job_step) or the long-running service (service.step).
    for stage_def in [] if terminal else pipeline(run.spec):
        stage = stage_def.stage
        stage_status = status.stages.get(stage)
        if stage_def.kind == StageKind.SERVICE:
            served = service.step(run, status, observed)
            if served is None:
                continue
            plan.ops += served.ops
            outcome = served.outcome
            if served.keep_phase:
                _record(plan, status, stage, outcome, stamp, generation, run.child_name(stage), keep_phase=True)
                continue
        else:
            job_outcome = _job_step(run, stage, status, observed, plan)
            if job_outcome is None:
                continue
            outcome = job_outcome
        _record(plan, status, stage, outcome, stamp, generation, run.child_name(stage))
        if stage_status.reused_from is not None:
            stage_status.child = None  # no Job of its own
        if outcome.phase == StagePhase.FAILED:
            failed_reason = outcome.reason if outcome.reason in (CHILD_REJECTED, OOM_KILLED) else "StageFailed"
            status.failure_reason = outcome.message
        if outcome.phase != StagePhase.SUCCEEDED:
            current, current_outcome = stage, outcome
            break

    if not terminal:
        if failed_reason is not None:
            transitions.end_run(status, Phase.FAILED)
            plan.events.append(Event("Warning", "RunFailed", status.failure_reason or "failed"))
        elif current is None:
            transitions.end_run(status, Phase.SUCCEEDED)
            plan.events.append(Event("Normal", "RunSucceeded", _summary(status)))
        else:
            transitions.enter_stage(status, current, _progress(current, status, current_outcome))

    suspension.hold_conditions(
        run, status, current, observed, terminal, stamp, generation, succeeded=status.phase == Phase.SUCCEEDED
    )
    transitions.run_conditions(status, stamp, generation, failed_reason, _summary(status))
    plan.recheck_at = _stalled(run, status, current_outcome if not terminal else None, now, stamp, generation)
    service.after_evaluation(run, status, observed, plan, stamp, generation)
    status.headline_accuracy = status.evaluation.headline() if status.evaluation else None
    plan.status = status
    return plan


def _record(
    plan: Plan,
    status: ReasoningRunStatus,
    stage: Stage,
    outcome: StageOutcome,
    stamp: str,
    generation: int,
    child: str,
    keep_phase: bool = False,
) -> None:
    """The shared transition (api/transitions.py), plus what only the operator keeps: the duration, the
    result, and an Event for each phase change."""
    before = transitions.mark_stage(
        status, stage, outcome.phase, outcome.reason, outcome.message, stamp, generation, child, keep_phase
    )
    stage_status: StageStatus = status.stages.get(stage)
    stage_status.duration_seconds = seconds_between(stage_status.start_time, stage_status.completion_time)
    if outcome.result is not None:
        setattr(status, stage.value, outcome.result)
    after = stage_status.phase
    if after != before:
        name = stage.value.capitalize()
        if after == StagePhase.RUNNING or (after == StagePhase.SUCCEEDED and before == StagePhase.PENDING):
            plan.events.append(Event("Normal", f"{name}Started", outcome.message))
        if after == StagePhase.SUCCEEDED:
            plan.events.append(Event("Normal", f"{name}Succeeded", outcome.message))
        if after == StagePhase.FAILED:
            plan.events.append(Event("Warning", f"{name}Failed", outcome.message))
            if outcome.reason == CHILD_REJECTED:
                plan.events.append(Event("Warning", CHILD_REJECTED, outcome.message))


def _stalled(
    run: Run, status: ReasoningRunStatus, outcome: StageOutcome | None, now: datetime, stamp: str, generation: int
) -> datetime | None:
    """Stalled=True once the current stage has waited longer than spec.progressDeadlineSeconds, with the
    stage's own reason (Unschedulable, NotReady, ImagePullBackOff, …); False again once it moves. Only
    written once it has been True, so a run that never stalls carries no such condition. Returns when the
    deadline of a stage still waiting runs out (the plan changes then without any event)."""
    deadline = run.spec.progress_deadline_seconds
    since = outcome.waiting_since if outcome is not None and status.phase not in TERMINAL else None
    waited = seconds_between(since, timestamp(now)) if since else None
    existing = get_condition(status.conditions, ConditionType.STALLED)
    if outcome is not None and waited is not None and waited >= deadline:
        # No running count of seconds in it: the message stays the same, so status is not rewritten each pass.
        message = (
            f"{status.current_stage.value if status.current_stage else 'run'} has made no progress since {since}, "
            f"longer than spec.progressDeadlineSeconds: {deadline}: {outcome.message}"
        )
        status.conditions = set_condition(
            status.conditions, ConditionType.STALLED, True, outcome.reason, message[:2000], stamp, generation
        )
        return None
    recheck = now + timedelta(seconds=deadline - waited) if waited is not None else None
    if existing is not None and existing.status == "True" and existing.reason != TRANSIENT:
        status.conditions = set_condition(
            status.conditions,
            ConditionType.STALLED,
            False,
            "Progressing",
            "the run is making progress",
            stamp,
            generation,
        )
    elif existing is not None and existing.reason == TRANSIENT:
        # Written by the shell after transient apiserver errors; this reconcile got through.
        status.conditions = set_condition(
            status.conditions,
            ConditionType.STALLED,
            False,
            "Progressing",
            "the apiserver answers again",
            stamp,
            generation,
        )
    return recheck


def _summary(status: ReasoningRunStatus) -> str:
    parts = []
    if status.curation is not None:
        parts.append(f"{status.curation.samples_written} samples curated")
    if status.training is not None:
        parts.append(f"{status.training.steps} training steps")
    if status.headline_accuracy or status.evaluation is not None:
        parts.append(f"headline {(status.evaluation.headline() if status.evaluation else None)}")
    if status.export is not None:
        parts.append(f"exported to {status.export.destination}")
    return ", ".join(parts) or "all stages finished"
