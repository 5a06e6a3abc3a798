"""Training: SFT (LoRA or full) on the curated data, on one GPU."""

from ..results import TrainingResult
from .base import StageDef, StageKind

#: Room for one 8B step at the reference batch (tens of seconds) and a checkpoint of the adapter and optimizer.
TRAINING_GRACE_SECONDS = 300

TRAINING = StageDef(
    name="training",
    kind=StageKind.JOB,
    phase_name="Training",
    condition_name="ModelTrained",
    subcommand="train",
    module="reasoning_jobs.train.cli",
    help="Training job: LoRA SFT on the curated data.",
    image=lambda spec: spec.images.training,
    resources=lambda spec: spec.training.resources,
    result=TrainingResult,
    gpus=lambda spec: 1,
    backoff_limit=lambda spec: spec.training.backoff_limit,
    shm=True,
    key_sources=lambda spec: {"base": spec.model.name},
    tracked=True,
    # On SIGTERM the trainer finishes the step in flight and saves it as a checkpoint before it exits.
    grace_seconds=TRAINING_GRACE_SECONDS,
)
