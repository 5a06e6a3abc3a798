"""Pieces shared by every stage's pod: volumes, the hub token, GPU placement, resources."""

from __future__ import annotations

from typing import Any

from reasoning_operator.api import MLFLOW_CREDENTIAL_VARIABLES, Resources, Stage
from reasoning_operator.api.contract import CONFIG_DIR, PROGRAM, TERMINATION_MESSAGE_PATH
from reasoning_operator.api.stage_defs import definition

from ..run import WORKSPACE, Run
from ..stage_cache import CACHE_MOUNT

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# The numeric non-root user every image is built with (images/README.md); the pod asks for it explicitly, so
# the restricted Pod Security Standard's runAsNonRoot can be checked by the kubelet without reading the image.
RUN_AS_USER = 65532
# The root filesystem is read-only: scratch space (HOME, Ray's temp dir, compiler caches) is this emptyDir.
SCRATCH_DIR = "/tmp"


def resources(res: Resources, gpus: int = 0) -> dict[str, Any]:
    """Requests equal limits: predictable placement and Guaranteed QoS for long GPU jobs."""
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def gpu_placement(products: list[str]) -> dict[str, Any]:
    """Required node affinity on the GPU product label plus the usual GPU-node taint toleration."""
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": list(products)}]}
                    ]
                }
            }
        },
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }


def env(run: Run) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HF_HOME", "value": f"{WORKSPACE}/cache/huggingface"},
        {"name": "REASONING_RUN", "value": run.ref.name},
    ]
    secret = run.spec.model.hub_token_secret
    if secret is not None:
        variables.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}})
    return variables


def tracking_env(run: Run, stage: Stage) -> list[dict[str, Any]]:
    """The MLflow credentials for the stages that log metrics, by reference to the Secret's same-named keys
    (optional: a token alone, or a username and password); their values never pass through the operator."""
    tracking = run.spec.tracking
    if not definition(stage).tracked or tracking is None or tracking.mlflow is None:
        return []
    secret = tracking.mlflow.credentials_secret
    if secret is None:
        return []
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name, "optional": True}}}
        for name in MLFLOW_CREDENTIAL_VARIABLES
    ]


def volumes(run: Run, shm: bool = False) -> list[dict[str, Any]]:
    vols: list[dict[str, Any]] = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": run.claim_name}},
        {"name": "config", "configMap": {"name": run.config_map_name}},
        {"name": "scratch", "emptyDir": {}},
    ]
    if shm:
        vols.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}})
    cache = run.spec.cache
    if cache.enabled and cache.claim_name is not None and cache.claim_name != run.claim_name:
        # The user's claim, by reference only: no object the operator owns, so no garbage collection reaches it.
        vols.append({"name": "stage-cache", "persistentVolumeClaim": {"claimName": cache.claim_name}})
    return vols


def cache_mounts(run: Run) -> list[dict[str, Any]]:
    """spec.cache's claim at /cache (the run's own volume again where the two are one claim)."""
    cache = run.spec.cache
    if not cache.enabled or cache.claim_name is None:
        return []
    volume = "workspace" if cache.claim_name == run.claim_name else "stage-cache"
    return [{"name": volume, "mountPath": CACHE_MOUNT, **({"subPath": "cache"} if volume == "workspace" else {})}]


def volume_mounts(shm: bool = False) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]
    if shm:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return mounts


def pod_security() -> dict[str, Any]:
    """The pod half of the restricted Pod Security Standard; fsGroup makes the PVC writable for that user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    """The container half of the restricted Pod Security Standard, plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(
    run: Run,
    stage: Stage,
    image: str,
    args: list[str],
    res: dict[str, Any],
    shm: bool = False,
    env_from_secret: str | None = None,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if env_from_secret is not None:
        extra["envFrom"] = [{"secretRef": {"name": env_from_secret}}]
    return {
        "name": stage.value,
        "image": image,
        "imagePullPolicy": run.spec.images.pull_policy,
        "command": [PROGRAM],
        "args": args,
        "env": env(run) + tracking_env(run, stage),
        **extra,
        "resources": res,
        "volumeMounts": volume_mounts(shm) + cache_mounts(run),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security(),
    }
