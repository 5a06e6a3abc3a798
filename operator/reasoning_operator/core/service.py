"""The long-running stage kind (StageKind.SERVICE: serving), apart from the one-shot Job loop.

A Job stage is done once its Job completed and it stays done. A service stage is a Deployment and its
Service: applied on every pass while a later stage needs it, done once ready (Ready once is enough to go on;
a later blip shows in its condition only), and taken down after evaluation unless spec.serving.keepServing.
`step` is its part of the pipeline pass, `after_evaluation` its part once the pass is over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasoning_operator.api import ConditionType, Phase, ReasoningRunStatus, Stage, StagePhase, set_condition
from reasoning_operator.api.stage_defs import pipeline
from reasoning_operator.api.transitions import CREATING, serving_stopped

from . import builders, suspension
from .observe import Observed
from .plan import APPLY, Plan, StageOutcome
from .run import Run


@dataclass(frozen=True)
class ServiceStep:
    #: The children to apply (the Deployment, then the Service) on this pass.
    ops: list[tuple[str, dict[str, Any]]]
    outcome: StageOutcome
    #: Ready before and not failed now: the stage stays Succeeded and the outcome is written to its condition.
    keep_phase: bool


def _children(run: Run) -> list[tuple[str, dict[str, Any]]]:
    return [(APPLY, builders.build_serving_deployment(run)), (APPLY, builders.build_serving_service(run))]


def outcome(run: Run, observed: Observed) -> StageOutcome:
    """What the Deployment says: creating, failed, ready, or waiting (for a node, for readiness, at 0 replicas)."""
    dep = observed.deployment
    if dep is None:
        return StageOutcome(StagePhase.PENDING, CREATING, "creating the Triton Deployment")
    if dep.failed_message:
        return StageOutcome(StagePhase.FAILED, "ServingFailed", f"Deployment {dep.name}: {dep.failed_message}")
    if dep.available >= 1 and dep.ready >= 1:
        return StageOutcome(StagePhase.SUCCEEDED, "Ready", f"Deployment {dep.name}: {dep.ready}/{dep.replicas} ready")
    pods = observed.pods.get(Stage.SERVING, [])
    blocked = next((p for p in pods if p.unschedulable), None)
    if blocked is not None:
        return StageOutcome(
            StagePhase.RUNNING,
            "Unschedulable",
            f"pod {blocked.name} cannot be scheduled: {blocked.unschedulable}",
            waiting_since=blocked.created,
        )
    if run.spec.serving.replicas == 0:
        return StageOutcome(StagePhase.RUNNING, "ScaledToZero", "spec.serving.replicas is 0: nothing will serve")
    return StageOutcome(
        StagePhase.RUNNING,
        "NotReady",
        f"Deployment {dep.name}: {dep.ready}/{dep.replicas} ready",
        waiting_since=run.status.stages.serving.start_time or dep.created,
    )


def served(run: Run, status: ReasoningRunStatus) -> bool:
    """Whether every stage that uses the service (evaluation) has succeeded: nothing needs the server now."""
    users = [d.stage for d in pipeline(run.spec) if d.uses_service]
    return all(status.stages.get(stage).phase == StagePhase.SUCCEEDED for stage in users)


def step(run: Run, status: ReasoningRunStatus, observed: Observed) -> ServiceStep | None:
    """The service stage's part of a pipeline pass; None once its users (evaluation) succeeded
    (after_evaluation then decides whether the server stays)."""
    if served(run, status):
        return None
    seen = suspension.serving_held(run, outcome(run, observed))
    was_ready = status.stages.get(Stage.SERVING).phase == StagePhase.SUCCEEDED
    return ServiceStep(_children(run), seen, keep_phase=was_ready and seen.phase != StagePhase.FAILED)


def after_evaluation(
    run: Run, status: ReasoningRunStatus, observed: Observed, plan: Plan, stamp: str, generation: int
) -> None:
    """Once evaluation is over (or the run failed), serving stays only if spec.serving.keepServing."""
    # Evaluation over: the export stage (where set) needs no server.
    done = status.phase in (Phase.SUCCEEDED, Phase.FAILED) or served(run, status)
    if not done:
        return
    keep = run.spec.serving.keep_serving and status.phase != Phase.FAILED
    if keep:
        plan.ops += _children(run)
        dep = observed.deployment
        ready = dep is not None and dep.ready >= 1
        message = f"kept serving: {dep.ready if dep else 0}/{run.spec.serving.replicas} ready"
        status.conditions = set_condition(
            status.conditions,
            ConditionType.SERVING_READY,
            ready,
            "KeptServing" if ready else "Starting",
            message,
            stamp,
            generation,
        )
        return
    name = run.child_name(Stage.SERVING)
    if observed.deployment is not None:
        plan.delete.append(("Deployment", name))
    if observed.service_exists:
        plan.delete.append(("Service", name))
    if status.stages.serving.phase == StagePhase.SUCCEEDED:
        serving_stopped(
            status, "evaluation finished; set spec.serving.keepServing to keep the server", stamp, generation
        )
