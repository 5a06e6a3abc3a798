"""The batch stages (curation, training, evaluation, export) as Jobs. Jobs are created once and never updated
(their pod template is immutable); retries happen inside the Job within its backoff limit."""

from __future__ import annotations

from typing import Any

from reasoning_operator.api import QUEUE_NAME_LABEL, Stage
from reasoning_operator.api.contract import job_args

from ..observe import HELD_ANNOTATION
from ..run import Run
from .pod import container, gpu_placement, pod_security, resources, volumes

#: Room for one 8B step at the reference batch (tens of seconds) and a checkpoint of the adapter and optimizer.
TRAINING_GRACE_SECONDS = 300


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


def build_curation_job(run: Run) -> dict[str, Any]:
    spec = run.spec
    pod = {
        "containers": [
            container(
                run,
                Stage.CURATION,
                spec.images.curation,
                job_args(Stage.CURATION),
                resources(spec.curation.resources),
                shm=True,  # Ray's object store lives in /dev/shm
                env_from_secret=spec.dataset.credentials_secret,  # object-store credentials, if any
            )
        ],
        "volumes": volumes(run, shm=True),
    }
    return _job(run, Stage.CURATION, pod, backoff_limit=2)


def build_training_job(run: Run) -> dict[str, Any]:
    spec = run.spec
    pod = {
        "containers": [
            container(
                run,
                Stage.TRAINING,
                spec.images.training,
                job_args(Stage.TRAINING),
                resources(spec.training.resources, gpus=1),
                shm=True,
            )
        ],
        "volumes": volumes(run, shm=True),
        # On SIGTERM the trainer finishes the step in flight and saves it as a checkpoint before it exits.
        "terminationGracePeriodSeconds": TRAINING_GRACE_SECONDS,
        **gpu_placement(spec.training.accepted_gpu_products),
    }
    return _job(run, Stage.TRAINING, pod, backoff_limit=spec.training.backoff_limit)


def build_evaluation_job(run: Run) -> dict[str, Any]:
    spec = run.spec
    pod = {
        "containers": [
            container(
                run,
                Stage.EVALUATION,
                spec.images.evaluation,
                job_args(Stage.EVALUATION),
                resources(spec.evaluation.resources),
            )
        ],
        "volumes": volumes(run),
    }
    return _job(run, Stage.EVALUATION, pod, backoff_limit=2)


def build_export_job(run: Run) -> dict[str, Any]:
    """In the training image (it holds torch, transformers, peft and s3fs), on the CPU with training's requests:
    merging loads the same model. The destination's credentials come from spec.export.credentialsSecret."""
    spec = run.spec
    export = spec.export
    if export is None:
        raise ValueError("build_export_job: the run has no spec.export")
    box = container(
        run,
        Stage.EXPORT,
        spec.images.training,
        job_args(Stage.EXPORT),
        resources(spec.training.resources),
        env_from_secret=export.credentials_secret,
    )
    if export.destination is not None and export.destination.startswith("hf://"):
        # env wins over envFrom: the hub token for the upload is the export Secret's, not the model's.
        box["env"] = [e for e in box["env"] if e["name"] != "HF_TOKEN"]
    return _job(run, Stage.EXPORT, {"containers": [box], "volumes": volumes(run)}, backoff_limit=2)
