"""The one-shot stages (StageKind.JOB: curation, training, evaluation, export) as Jobs, one builder for all,
parameterised by the stage's definition. Jobs are created once and never updated (their pod template is
immutable); retries happen inside the Job within its backoff limit."""

from __future__ import annotations

from typing import Any

from reasoning_operator.api import QUEUE_NAME_LABEL, Stage
from reasoning_operator.api.contract import job_args
from reasoning_operator.api.stage_defs import StageKind, definition

from ..observe import HELD_ANNOTATION
from ..run import Run
from .pod import container, gpu_placement, pod_security, resources, volumes


def _job(run: Run, stage: Stage, pod_spec: dict[str, Any], backoff_limit: int) -> dict[str, Any]:
    name = run.child_name(stage)
    metadata = run.metadata(name, stage)
    queued: dict[str, Any] = {}
    if run.queue_name is not None:
        # Kueue admits the Job against its queue's quota and unsuspends it; until then no pod exists.
        metadata["labels"][QUEUE_NAME_LABEL] = run.queue_name
        queued["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            **queued,
            "backoffLimit": backoff_limit,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "metadata": {"labels": run.labels(stage)},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    **pod_spec,
                },
            },
        },
    }


def job_suspension(run: Run, stage: Stage, suspend: bool) -> dict[str, Any]:
    """The server-side apply that (un)suspends an existing stage Job: only spec.suspend, nothing immutable."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": run.child_name(stage), "namespace": run.ref.namespace},
        "spec": {"suspend": suspend},
    }


def workload_activation(run: Run, workload: str, active: bool) -> dict[str, Any]:
    """The server-side apply that (de)activates a Kueue Workload for spec.suspend: Kueue evicts an inactive
    Workload (suspends its Job, frees its quota) and would unsuspend a Job merely suspended while admitted.
    The annotation marks the Workloads the operator deactivated, the only ones it reactivates."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": workload,
            "namespace": run.ref.namespace,
            "annotations": {HELD_ANNOTATION: "false" if active else "true"},
        },
        "spec": {"active": active},
    }


def build_stage_job(run: Run, stage: Stage) -> dict[str, Any]:
    """A one-shot stage's Job, from its definition: the stage's image, resources, GPUs (pinned to
    spec.training.acceptedGpuProducts), /dev/shm, Secret environment, grace period and backoff limit."""
    spec = run.spec
    stage_def = definition(stage)
    if stage_def.kind != StageKind.JOB:
        raise ValueError(f"build_stage_job: {stage.value} is a {stage_def.kind.value} stage, not a Job")
    if not stage_def.enabled(spec):
        raise ValueError(f"build_{stage.value}_job: the run has no spec.{stage.value}")
    gpus = stage_def.gpus(spec)
    box = container(
        run,
        stage,
        stage_def.image(spec),
        job_args(stage),
        resources(stage_def.resources(spec), gpus=gpus),
        shm=stage_def.shm,
        env_from_secret=stage_def.env_from_secret(spec),
    )
    if not stage_def.hub_token(spec):
        box["env"] = [e for e in box["env"] if e["name"] != "HF_TOKEN"]
    pod: dict[str, Any] = {"containers": [box], "volumes": volumes(run, shm=stage_def.shm)}
    if stage_def.grace_seconds is not None:
        pod["terminationGracePeriodSeconds"] = stage_def.grace_seconds
    if gpus:
        pod.update(gpu_placement(spec.training.accepted_gpu_products))
    return _job(run, stage, pod, backoff_limit=stage_def.backoff_limit(spec))


def build_curation_job(run: Run) -> dict[str, Any]:
    return build_stage_job(run, Stage.CURATION)


def build_training_job(run: Run) -> dict[str, Any]:
    return build_stage_job(run, Stage.TRAINING)


def build_evaluation_job(run: Run) -> dict[str, Any]:
    return build_stage_job(run, Stage.EVALUATION)


def build_export_job(run: Run) -> dict[str, Any]:
    return build_stage_job(run, Stage.EXPORT)
