"""Evaluation: the benchmarks against the served models, reasoning on and off."""

from ..results import EvaluationResult
from .base import StageDef, StageKind

EVALUATION = StageDef(
    name="evaluation",
    kind=StageKind.JOB,
    phase_name="Evaluating",
    condition_name="Evaluated",
    subcommand="evaluate",
    module="reasoning_jobs.evaluate.cli",
    help="Evaluation job: GPQA/MMLU, reasoning on vs off.",
    image=lambda spec: spec.images.evaluation,
    resources=lambda spec: spec.evaluation.resources,
    result=EvaluationResult,
    tracked=True,
    uses_service=True,
    volatile=frozenset({"serverUrl"}),
)
