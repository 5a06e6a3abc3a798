"""Serving: the base model and the trained one behind Triton, a Deployment and its Service (long-running)."""

from .base import StageDef, StageKind

SERVING = StageDef(
    name="serving",
    kind=StageKind.SERVICE,
    phase_name="Serving",
    condition_name="ServingReady",
    subcommand="serve",
    module="reasoning_jobs.serve.cli",
    help="Serving: Triton with base model + adapter.",
    image=lambda spec: spec.images.serving,
    resources=lambda spec: spec.serving.resources,
    gpus=lambda spec: spec.serving.gpus,
    shm=True,
    volatile=frozenset({"httpPort", "grpcPort", "metricsPort", "openaiPort"}),
)
