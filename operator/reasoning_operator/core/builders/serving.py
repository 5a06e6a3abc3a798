"""Triton serving base model + adapter: a Deployment (GPU, probes on Triton's health endpoints) and a
Service the evaluation Job talks to."""

from __future__ import annotations

from typing import Any

from reasoning_operator.api import ServingStageConfig, Stage

from ..run import Run
from .config import config_file
from .pod import container, gpu_placement, pod_security, resources, volumes


def _ports() -> dict[str, int]:
    """Container/Service ports: the stage config's defaults, which the serving job binds."""
    fields = ServingStageConfig.model_fields
    return {name: int(fields[f"{name}_port"].default) for name in ("http", "grpc", "metrics", "openai")}


def serving_url(run: Run) -> str:
    """Where evaluation talks to the server. The vLLM backend takes raw prompts over KServe, so chat
    (system prompt, template) goes through Triton's OpenAI frontend; PyTriton serves chat on KServe."""
    host = f"{run.child_name(Stage.SERVING)}.{run.ref.namespace}.svc"
    if run.spec.serving.backend == "vllm":
        return f"http://{host}:{_ports()['openai']}/v1"
    return f"http://{host}:{_ports()['http']}"


def ready_path(run: Run) -> str:
    """A model's own readiness (server readiness turns true before PyTriton's models finish loading)."""
    fields = ServingStageConfig.model_fields
    name = fields["base_model_name" if run.spec.serving.backend == "vllm" else "adapter_model_name"].default
    return f"/v2/models/{name}/ready"


def build_serving_deployment(run: Run) -> dict[str, Any]:
    spec = run.spec
    ports = _ports()
    serving = container(
        run,
        Stage.SERVING,
        spec.images.serving,
        ["serve", "--config", config_file(Stage.SERVING)],
        resources(spec.serving.resources, gpus=spec.serving.gpus),
        shm=True,
    )
    serving["ports"] = [{"name": name, "containerPort": port} for name, port in ports.items()]
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
        "volumes": volumes(run, shm=True),
        "enableServiceLinks": False,
        "securityContext": pod_security(),
    }
    if spec.serving.gpus:
        pod.update(gpu_placement(spec.training.accepted_gpu_products))
    labels = run.labels(Stage.SERVING)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": run.metadata(run.child_name(Stage.SERVING), Stage.SERVING),
        "spec": {
            "replicas": spec.serving.replicas,
            "selector": {
                "matchLabels": {k: labels[k] for k in ("app.kubernetes.io/instance", "reasoning-operator.dev/stage")}
            },
            "strategy": {"type": "Recreate"},  # one GPU each: a rolling update would need a spare GPU
            "progressDeadlineSeconds": 1800,
            "template": {"metadata": {"labels": labels}, "spec": pod},
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
                {"name": name, "port": port, "targetPort": name, "protocol": "TCP"} for name, port in _ports().items()
            ],
        },
    }
