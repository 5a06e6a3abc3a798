"""Serving: the base model and the trained one behind Triton, a Deployment and its Service (long-running)."""

from ..status import ConditionType, Phase, Stage
from .base import StageDef, StageKind

SERVING = StageDef(
    stage=Stage.SERVING,
    kind=StageKind.SERVICE,
    phase=Phase.SERVING,
    condition=ConditionType.SERVING_READY,
    subcommand="serve",
    module="reasoning_jobs.serve.cli",
    help="Serving: Triton with base model + adapter.",
    image=lambda spec: spec.images.serving,
    resources=lambda spec: spec.serving.resources,
    gpus=lambda spec: spec.serving.gpus,
    shm=True,
)
