"""A ReasoningRun driven by the real operator process through a real control plane: kube-scheduler
places the pods on kwok's fake GPU nodes, the Job controller and garbage collector do their part, and the
test plays each job process by finishing its pod with a result (tests/support/fake_kubelet.py)."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import Operator, Runs
from tests.support.fake_kubelet import finish_job_pods, wait_for_pod, wait_until

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
NAME = EXAMPLE["metadata"]["name"]
CURATION = {
    "samplesRead": 1000,
    "samplesWritten": 800,
    "dropped": {"language": 150, "boxed": 50},
    "reasoningOn": 400,
    "reasoningOff": 400,
}
TRAINING = {"steps": 2000, "finalLoss": 0.61, "tokensSeen": 123456789, "wallSeconds": 3600.0}
EVALUATION = {
    "accuracies": [
        {
            "benchmark": "gpqa_diamond",
            "mode": "on",
            "model": "trained",
            "accuracy": 0.42,
            "ciLow": 0.35,
            "ciHigh": 0.49,
            "n": 198,
        },
        {
            "benchmark": "gpqa_diamond",
            "mode": "on",
            "model": "base",
            "accuracy": 0.30,
            "ciLow": 0.24,
            "ciHigh": 0.37,
            "n": 198,
        },
    ]
}


def _manifest(**spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    for section, values in spec.items():
        manifest["spec"].setdefault(section, {}).update(values)
    return manifest


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def _pod_node(runs: Runs, job: str) -> str:
    pod = wait_for_pod(runs.core, runs.namespace, f"job-name={job}", phase="Running", timeout=60)
    node: str = pod.spec.node_name
    return node


def _drive_to_serving(runs: Runs) -> None:
    runs.wait_phase(NAME, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)


def test_sample_manifest_runs_to_succeeded(runs: Runs, operator: Operator) -> None:
    runs.create(EXAMPLE)
    obj = runs.wait_phase(NAME, "Curating")
    assert obj["status"]["stages"]["curation"]["child"] == f"{NAME}-curation"
    assert _pod_node(runs, f"{NAME}-curation") == "cpu-0"  # the GPU nodes' taint keeps CPU stages off them
    claim = runs.core.read_namespaced_persistent_volume_claim(f"{NAME}-data", runs.namespace)
    assert claim.spec.resources.requests["storage"] == "500Gi"
    config = runs.core.read_namespaced_config_map(f"{NAME}-config", runs.namespace)
    assert set(config.data) == {"curation.yaml", "training.yaml", "serving.yaml", "evaluation.yaml"}

    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    obj = runs.wait_phase(NAME, "Training")
    assert obj["status"]["curation"]["samplesWritten"] == 800
    assert _condition(obj, "DataCurated")["status"] == "True"
    assert _pod_node(runs, f"{NAME}-training") in {"gpu-h100-0", "gpu-a100-0"}

    finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    # kwok makes the Triton pod Ready at once, so Serving may pass quickly: wait for evaluation.
    obj = runs.wait_phase(NAME, "Evaluating")
    assert obj["status"]["training"]["steps"] == 2000
    assert _condition(obj, "ServingReady")["status"] == "True"
    deployment = runs.apps.read_namespaced_deployment(f"{NAME}-serving", runs.namespace)
    assert deployment.status.ready_replicas == 1
    runs.core.read_namespaced_service(f"{NAME}-serving", runs.namespace)

    finish_job_pods(runs.core, runs.namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    obj = runs.wait_phase(NAME, "Succeeded")
    assert obj["status"]["headlineAccuracy"] == "gpqa_diamond/on: 0.420"
    assert _condition(obj, "Succeeded")["status"] == "True"
    assert _condition(obj, "Evaluated")["status"] == "True"
    for stage in ("curation", "training", "serving", "evaluation"):
        assert obj["status"]["stages"][stage]["phase"] == "Succeeded"
        assert obj["status"]["stages"][stage]["startTime"]
    # Serving is torn down after evaluation unless keepServing.
    wait_until(
        lambda: not runs.apps.list_namespaced_deployment(runs.namespace).items,
        timeout=30,
        what="serving Deployment deleted",
    )
    assert sorted(j.metadata.name for j in runs.jobs()) == [
        f"{NAME}-{s}" for s in ("curation", "evaluation", "training")
    ]
    events = runs.core.list_namespaced_event(runs.namespace, field_selector=f"involvedObject.name={NAME}").items
    reasons = {e.reason for e in events}
    assert {"CurationSucceeded", "TrainingSucceeded", "EvaluationSucceeded", "RunSucceeded"} <= reasons

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).read().decode()
    assert f'reasoning_runs{{namespace="{runs.namespace}",phase="Succeeded",run="{NAME}"}} 1.0' in metrics
    labels = f'benchmark="gpqa_diamond",mode="on",model="trained",namespace="{runs.namespace}",run="{NAME}"'
    assert f"reasoning_eval_accuracy{{{labels}}} 0.42" in metrics


def test_training_lands_only_on_an_accepted_gpu(runs: Runs) -> None:
    runs.create(_manifest(training={"acceptedGpuProducts": ["NVIDIA-A100-SXM4-80GB"]}))
    runs.wait_phase(NAME, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    assert _pod_node(runs, f"{NAME}-training") == "gpu-a100-0"


def test_training_waits_with_a_clear_status_when_no_gpu_fits(runs: Runs) -> None:
    runs.create(_manifest(training={"acceptedGpuProducts": ["NVIDIA-B200"]}))
    runs.wait_phase(NAME, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    obj = runs.wait(
        NAME, lambda o: (o.get("status") or {}).get("progress") == "waiting for a node", "training waits for a node"
    )
    assert obj["status"]["phase"] == "Training"
    trained = _condition(obj, "ModelTrained")
    assert trained["status"] == "False" and trained["reason"] == "Unschedulable"
    assert "node" in trained["message"]


def test_failing_curation_fails_the_run_with_the_reason(runs: Runs) -> None:
    runs.create(_manifest())
    runs.wait_phase(NAME, "Curating")
    job = runs.batch.read_namespaced_job(f"{NAME}-curation", runs.namespace)
    for _ in range(job.spec.backoff_limit + 1):  # every retry fails
        finish_job_pods(
            runs.core,
            runs.namespace,
            f"{NAME}-curation",
            "Failed",
            "malformed JSON at SFT/chat/chat.jsonl:17",
            timeout=60,
        )
        if runs.get(NAME).get("status", {}).get("phase") == "Failed":
            break
    obj = runs.wait_phase(NAME, "Failed")
    assert f"{NAME}-curation" in obj["status"]["failureReason"]
    assert "chat.jsonl:17" in obj["status"]["failureReason"]
    assert _condition(obj, "Failed")["status"] == "True"
    assert _condition(obj, "DataCurated")["reason"] == "BackoffLimitExceeded"
    assert [j.metadata.name for j in runs.jobs()] == [f"{NAME}-curation"]  # nothing downstream started


def test_deleting_a_run_collects_its_children(runs: Runs) -> None:
    runs.create(_manifest(storage={"reclaimPolicy": "Delete"}))
    runs.wait_phase(NAME, "Curating")
    wait_until(lambda: runs.jobs() or None, timeout=30, what="curation job")
    runs.custom.delete_namespaced_custom_object(
        "reasoning-operator.dev", "v1alpha1", runs.namespace, "reasoningruns", NAME
    )

    def gone() -> bool:
        left = (
            runs.jobs(),
            runs.core.list_namespaced_config_map(
                runs.namespace, label_selector=f"reasoning-operator.dev/run={NAME}"
            ).items,
            runs.core.list_namespaced_persistent_volume_claim(runs.namespace).items,
        )
        return not any(left)

    def leftovers() -> str:
        return str(
            [(j.metadata.name, j.metadata.finalizers) for j in runs.jobs()]
            + [
                (c.metadata.name, c.metadata.finalizers, c.status.phase)
                for c in runs.core.list_namespaced_persistent_volume_claim(runs.namespace).items
            ]
        )

    try:
        wait_until(gone, timeout=60, what="children garbage-collected")
    except TimeoutError as err:
        raise AssertionError(f"left over: {leftovers()}") from err


def test_operator_restart_mid_run_resumes_without_duplicates(runs: Runs, operator: Operator) -> None:
    runs.create(_manifest())
    runs.wait_phase(NAME, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    operator.kill()  # SIGKILL mid-run: no chance to clean up or flush anything
    try:
        # While it is down, training finishes.
        finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
        assert runs.get(NAME)["status"]["phase"] == "Training"
    finally:
        operator.start()
    runs.wait_phase(NAME, "Evaluating", timeout=90)
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    obj = runs.wait_phase(NAME, "Succeeded")
    names = [j.metadata.name for j in runs.jobs()]
    assert sorted(names) == sorted(set(names)) and len(names) == 3
    pods = runs.core.list_namespaced_pod(runs.namespace, label_selector=f"reasoning-operator.dev/run={NAME}").items
    per_stage: dict[str, int] = {}
    for pod in pods:
        stage = pod.metadata.labels["reasoning-operator.dev/stage"]
        per_stage[stage] = per_stage.get(stage, 0) + 1
    assert per_stage.get("curation") == 1 and per_stage.get("training") == 1 and per_stage.get("evaluation") == 1
    assert obj["status"]["curation"]["samplesWritten"] == 800  # progress from before the restart kept


def test_a_run_can_be_deleted_while_the_operator_is_down(runs: Runs, operator: Operator) -> None:
    """No finalizers: the operator being down never blocks deleting a run (or its namespace, or the CRD)."""
    runs.create(_manifest())
    runs.wait_phase(NAME, "Curating")
    assert not runs.get(NAME)["metadata"].get("finalizers")
    operator.kill()
    try:
        runs.custom.delete_namespaced_custom_object(
            "reasoning-operator.dev", "v1alpha1", runs.namespace, "reasoningruns", NAME
        )
        wait_until(
            lambda: (
                not runs.custom.list_namespaced_custom_object(
                    "reasoning-operator.dev", "v1alpha1", runs.namespace, "reasoningruns"
                )["items"]
            ),
            timeout=30,
            what="run deleted with the operator down",
        )
    finally:
        operator.start()
