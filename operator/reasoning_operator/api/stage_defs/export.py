"""Export (only where spec.export is set): the merged model and/or adapter, with a model card.

In the training image (it holds torch, transformers, peft and s3fs), on the CPU with training's requests:
merging loads the same model. The destination's credentials come from spec.export.credentialsSecret."""

from ..results import ExportResult
from .base import StageDef, StageKind

EXPORT = StageDef(
    name="export",
    kind=StageKind.JOB,
    phase_name="Exporting",
    condition_name="Exported",
    subcommand="export",
    module="reasoning_jobs.export.cli",
    help="Export job: merged model and/or adapter, with a model card.",
    image=lambda spec: spec.images.training,
    resources=lambda spec: spec.training.resources,
    result=ExportResult,
    enabled=lambda spec: spec.export is not None,
    optional_note="Only where spec.export is set.",
    env_from_secret=lambda spec: spec.export.credentials_secret if spec.export is not None else None,
    # env wins over envFrom: the hub token for an upload is the export Secret's, not the model's.
    hub_token=lambda spec: (
        not (
            spec.export is not None
            and spec.export.destination is not None
            and spec.export.destination.startswith("hf://")
        )
    ),
)
