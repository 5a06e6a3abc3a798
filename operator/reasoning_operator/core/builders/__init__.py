"""One pure function per child object: `build_x(run) -> manifest dict`."""

from .config import build_config_map
from .jobs import (
    build_curation_job,
    build_evaluation_job,
    build_export_job,
    build_stage_job,
    build_training_job,
    job_suspension,
    workload_activation,
)
from .ray import build_curation, build_curation_rayjob, build_stage_child
from .serving import build_serving_deployment, build_serving_service, serving_url
from .storage import build_claim

__all__ = [
    "build_claim",
    "build_config_map",
    "build_curation",
    "build_curation_job",
    "build_curation_rayjob",
    "build_evaluation_job",
    "build_export_job",
    "build_serving_deployment",
    "build_serving_service",
    "build_stage_child",
    "build_stage_job",
    "build_training_job",
    "job_suspension",
    "serving_url",
    "workload_activation",
]
