"""Curation: the raw dataset -> training.jsonl (one pod, or a KubeRay cluster with spec.curation.cluster)."""

from ..results import CurationResult
from ..spec import CURATION_EXECUTION_FIELDS
from .base import StageDef, StageKind

CURATION = StageDef(
    name="curation",
    kind=StageKind.JOB,
    phase_name="Curating",
    condition_name="DataCurated",
    subcommand="curate",
    module="reasoning_jobs.curate.cli",
    help="Curation job: Llama-Nemotron data -> training.jsonl.",
    image=lambda spec: spec.images.curation,
    resources=lambda spec: spec.curation.resources,
    result=CurationResult,
    env_from_secret=lambda spec: spec.dataset.credentials_secret,  # object-store credentials, if any
    shm=True,  # Ray's object store lives in /dev/shm
    ray_cluster=lambda spec: spec.curation.cluster,
    key_sources=lambda spec: {"data": spec.dataset.source},
    volatile=frozenset(f"curation.{name}" for name in CURATION_EXECUTION_FIELDS),
)
