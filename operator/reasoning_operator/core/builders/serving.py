"""Triton serving base model + adapter: a Deployment (GPU, probes on Triton's health endpoints) and a
Service the evaluation Job talks to."""

from __future__ import annotations

from typing import Any

from reasoning_operator.api import Stage
from reasoning_operator.api.contract import ADAPTER_MODEL_NAME, HTTP_PORT, OPENAI_PORT, SERVING_PORTS, job_args
from reasoning_operator.api.stage_defs import definition

from ..run import Run
from .pod import container, gpu_placement, pod_security, resources, volumes

#: Seconds Kubernetes waits after SIGTERM: the server drains in-flight requests for 25 s (`reasoning serve
#: --grace`), then stops Triton and the engine (~20 s on a CPU).
TERMINATION_GRACE_SECONDS = 60


def serving_url(run: Run) -> str:
    """Where evaluation talks to the server: Triton's KServe v2 HTTP port. Both backends serve the chat
    contract there (system prompt, chat template applied on the server)."""
    host = f"{run.child_name(Stage.SERVING)}.{run.ref.namespace}.svc"
    return f"http://{host}:{HTTP_PORT}"


def ready_path(run: Run) -> str:
    """The adapter model's own readiness (server readiness turns true before PyTriton's models finish loading;
    the vllm backend binds its models only once the engine has loaded)."""
    return f"/v2/models/{ADAPTER_MODEL_NAME}/ready"


def scrape_annotations() -> dict[str, str]:
    """Where Prometheus finds the serving metrics by model and mode (the OpenAI port's /metrics); Triton's own
    per-model metrics stay on the metrics port."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(OPENAI_PORT),
        "prometheus.io/path": "/metrics",
    }


def build_serving_deployment(run: Run) -> dict[str, Any]:
    spec = run.spec
    stage_def = definition(Stage.SERVING)
    gpus = stage_def.gpus(spec)
    serving = container(
        run,
        Stage.SERVING,
        stage_def.image(spec),
        job_args(Stage.SERVING),
        resources(stage_def.resources(spec), gpus=gpus),
        shm=stage_def.shm,
    )
    serving["ports"] = [{"name": name, "containerPort": port} for name, port in SERVING_PORTS.items()]
    probe_port = "http"
    serving["readinessProbe"] = {
        "httpGet": {"path": ready_path(run), "port": probe_port},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    serving["livenessProbe"] = {
        "httpGet": {"path": "/v2/health/live", "port": probe_port},
        "periodSeconds": 10,
        "failureThreshold": 6,
    }
    # Loading an 8B model (and compiling CUDA graphs) can take minutes: don't let liveness kill it.
    serving["startupProbe"] = {
        "httpGet": {"path": "/v2/health/live", "port": probe_port},
        "periodSeconds": 10,
        "failureThreshold": 90,
    }
    pod: dict[str, Any] = {
        "containers": [serving],
        "volumes": volumes(run, shm=stage_def.shm),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security(),
    }
    if gpus:
        pod.update(gpu_placement(spec.training.accepted_gpu_products))
    labels = run.labels(Stage.SERVING)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": run.metadata(run.child_name(Stage.SERVING), Stage.SERVING),
        "spec": {
            "replicas": 0 if spec.suspend else spec.serving.replicas,  # spec.suspend frees the GPU
            "selector": {
                "matchLabels": {k: labels[k] for k in ("app.kubernetes.io/instance", "reasoning-operator.dev/stage")}
            },
            "strategy": {"type": "Recreate"},  # one GPU each: a rolling update would need a spare GPU
            # Past it the Deployment reports ProgressDeadlineExceeded and the run fails (ServingFailed).
            "progressDeadlineSeconds": spec.serving.ready_timeout_seconds,
            "template": {"metadata": {"labels": labels, "annotations": scrape_annotations()}, "spec": pod},
        },
    }


def build_serving_service(run: Run) -> dict[str, Any]:
    labels = run.labels(Stage.SERVING)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": run.metadata(run.child_name(Stage.SERVING), Stage.SERVING),
        "spec": {
            "type": "ClusterIP",
            "selector": {k: labels[k] for k in ("app.kubernetes.io/instance", "reasoning-operator.dev/stage")},
            "ports": [
                {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                for name, port in SERVING_PORTS.items()
            ],
        },
    }
