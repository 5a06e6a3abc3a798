"""Evaluation: the benchmarks against the served models, reasoning on and off."""

from ..results import EvaluationResult
from ..status import ConditionType, Phase, Stage
from .base import StageDef, StageKind

EVALUATION = StageDef(
    stage=Stage.EVALUATION,
    kind=StageKind.JOB,
    phase=Phase.EVALUATING,
    condition=ConditionType.EVALUATED,
    subcommand="evaluate",
    module="reasoning_jobs.evaluate.cli",
    help="Evaluation job: GPQA/MMLU, reasoning on vs off.",
    image=lambda spec: spec.images.evaluation,
    resources=lambda spec: spec.evaluation.resources,
    result=EvaluationResult,
    tracked=True,
    uses_service=True,
)
