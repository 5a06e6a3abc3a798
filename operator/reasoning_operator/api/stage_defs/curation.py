"""Curation: the raw dataset -> training.jsonl (one pod, or a KubeRay cluster with spec.curation.cluster)."""

from ..results import CurationResult
from ..status import ConditionType, Phase, Stage
from .base import StageDef, StageKind

CURATION = StageDef(
    stage=Stage.CURATION,
    kind=StageKind.JOB,
    phase=Phase.CURATING,
    condition=ConditionType.DATA_CURATED,
    subcommand="curate",
    module="reasoning_jobs.curate.cli",
    help="Curation job: Llama-Nemotron data -> training.jsonl.",
    image=lambda spec: spec.images.curation,
    resources=lambda spec: spec.curation.resources,
    result=CurationResult,
    env_from_secret=lambda spec: spec.dataset.credentials_secret,  # object-store credentials, if any
    shm=True,  # Ray's object store lives in /dev/shm
    ray_cluster=lambda spec: spec.curation.cluster,
)
