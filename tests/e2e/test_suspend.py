"""spec.suspend and spec.queueName on the real control plane: the Job controller deletes a suspended Job's
pod and starts a new one on resume, the Deployment controller scales serving down and up, and the run ends
Succeeded. kwok plays the kubelet; the test plays each job process (tests/support/fake_kubelet.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.e2e.conftest import Operator, Runs, wait_seconds
from tests.e2e.test_run_lifecycle import CURATION, EVALUATION, NAME, TRAINING, _manifest
from tests.support.fake_kubelet import finish_job_pods, wait_for_pod, wait_until

pytestmark = pytest.mark.controlplane


def _run(**top: Any) -> dict[str, Any]:
    """The sample manifest with top-level spec fields set."""
    manifest = _manifest()
    manifest["spec"].update(top)
    return manifest


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def _set_suspend(runs: Runs, value: bool) -> None:
    runs.custom.patch_namespaced_custom_object(
        "reasoning-operator.dev", "v1alpha1", runs.namespace, "reasoningruns", NAME, {"spec": {"suspend": value}}
    )


def _job(runs: Runs, name: str) -> Any:
    return runs.batch.read_namespaced_job(name, runs.namespace)


def _live_pods(runs: Runs, job: str) -> list[Any]:
    pods = runs.core.list_namespaced_pod(runs.namespace, label_selector=f"job-name={job}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase in ("Pending", "Running")]


def _suspended_and_held(runs: Runs, job: str, phase: str) -> dict[str, Any]:
    """Wait until the Job is suspended with no live pod and status says Suspended, in the same phase."""
    wait_until(lambda: _job(runs, job).spec.suspend is True, timeout=30, what=f"Job {job} suspended")
    wait_until(lambda: not _live_pods(runs, job), timeout=30, what=f"Job {job}'s pod deleted")

    def held(o: dict[str, Any]) -> bool:
        cond = _condition(o, "Suspended")
        return cond is not None and cond["status"] == "True" and (o.get("status") or {}).get("progress") == "suspended"

    obj = runs.wait(NAME, held, "Suspended condition True")
    assert obj["status"]["phase"] == phase
    assert _condition(obj, "Suspended")["reason"] == "SuspendedBySpec"  # type: ignore[index]
    return obj


def test_suspend_mid_curation_and_mid_training_then_resume_to_succeeded(runs: Runs, operator: Operator) -> None:
    runs.create(_run(progressDeadlineSeconds=10))
    runs.wait_phase(NAME, "Curating")
    first = wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-curation", phase="Running", timeout=60)

    _set_suspend(runs, True)
    _suspended_and_held(runs, f"{NAME}-curation", "Curating")
    # Held past spec.progressDeadlineSeconds: a suspended run is not Stalled.
    wait_seconds(12)  # past spec.progressDeadlineSeconds (10)
    obj = runs.get(NAME)
    stalled = _condition(obj, "Stalled")
    assert stalled is None or stalled["status"] == "False", stalled
    assert obj["status"]["phase"] == "Curating"

    _set_suspend(runs, False)
    wait_until(lambda: _job(runs, f"{NAME}-curation").spec.suspend is False, timeout=30, what="curation resumed")
    again = wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-curation", phase="Running", timeout=60)
    assert again.metadata.name != first.metadata.name  # a new pod: the suspended one was deleted
    obj = runs.wait(NAME, lambda o: (_condition(o, "Suspended") or {}).get("status") == "False", "Suspended False")
    assert _condition(obj, "Suspended")["reason"] == "Resumed"  # type: ignore[index]
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)

    runs.wait_phase(NAME, "Training")
    wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-training", phase="Running", timeout=60)
    _set_suspend(runs, True)
    _suspended_and_held(runs, f"{NAME}-training", "Training")
    training = _job(runs, f"{NAME}-training")
    assert not (training.status.failed or 0)  # a suspension is no retry of the backoff limit
    _set_suspend(runs, False)
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)

    runs.wait_phase(NAME, "Evaluating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    obj = runs.wait_phase(NAME, "Succeeded")
    assert obj["status"]["training"]["steps"] == TRAINING["steps"]


def test_suspend_scales_serving_to_zero_and_back(runs: Runs, operator: Operator) -> None:
    runs.create(_manifest())
    runs.wait_phase(NAME, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    runs.wait_phase(NAME, "Evaluating")  # serving is up (kwok makes its pod Ready at once)
    wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-evaluation", phase="Running", timeout=60)

    _set_suspend(runs, True)
    serving = f"{NAME}-serving"

    def scaled_to(n: int) -> bool:
        dep = runs.apps.read_namespaced_deployment(serving, runs.namespace)
        return bool(dep.spec.replicas == n and (dep.status.replicas or 0) == n)

    wait_until(lambda: scaled_to(0), timeout=30, what="serving scaled to 0")
    _suspended_and_held(runs, f"{NAME}-evaluation", "Evaluating")

    _set_suspend(runs, False)
    wait_until(lambda: scaled_to(1), timeout=30, what="serving scaled back to 1")
    wait_until(lambda: _job(runs, f"{NAME}-evaluation").spec.suspend is False, timeout=30, what="evaluation resumed")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    runs.wait_phase(NAME, "Succeeded")


def test_a_queued_runs_jobs_carry_the_label_and_start_suspended(runs: Runs, operator: Operator) -> None:
    """Without Kueue in this cluster nothing admits the Job: it stays suspended, podless, and status says it
    waits for admission; the operator never unsuspends it. Admitting it (as Kueue would: spec.suspend
    false) lets the run go on, and the next stage's Job is queued the same way."""
    manifest = _run(progressDeadlineSeconds=10)
    manifest["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "from-label"}
    manifest["spec"]["queueName"] = "team-gpu"  # the spec field wins over the label
    runs.create(manifest)

    def waits(o: dict[str, Any]) -> bool:
        return (_condition(o, "Admitted") or {}).get("reason") == "WaitingForAdmission"

    obj = runs.wait(NAME, waits, "Admitted False WaitingForAdmission")
    assert _condition(obj, "Admitted")["status"] == "False"  # type: ignore[index]
    assert "team-gpu" in _condition(obj, "Admitted")["message"]  # type: ignore[index]
    job = _job(runs, f"{NAME}-curation")
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-gpu"
    assert job.spec.suspend is True
    wait_seconds(12)  # past spec.progressDeadlineSeconds (10)
    assert _job(runs, f"{NAME}-curation").spec.suspend is True  # never unsuspended by the operator
    assert not _live_pods(runs, f"{NAME}-curation")
    obj = runs.get(NAME)
    assert obj["status"]["phase"] == "Curating"
    assert (_condition(obj, "Stalled") or {}).get("status") != "True"

    # Admission, played by the test: Kueue would unsuspend the Job.
    runs.batch.patch_namespaced_job(f"{NAME}-curation", runs.namespace, {"spec": {"suspend": False}})
    runs.wait(NAME, lambda o: (_condition(o, "Admitted") or {}).get("status") == "True", "Admitted True")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    training = wait_until(
        lambda: next((j for j in runs.jobs() if j.metadata.name == f"{NAME}-training"), None),
        timeout=30,
        what="training Job",
    )
    assert training.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-gpu"
    assert training.spec.suspend is True
    (container,) = training.spec.template.spec.containers
    assert container.resources.requests["nvidia.com/gpu"] == "1"
