"""The real Kueue controller (built from the Go module proxy, tests/support/kueue.py) admitting the runs'
Jobs against a ClusterQueue with an `nvidia.com/gpu` quota of 1: two runs take the GPU one after the other,
status says the second waits for admission and why, a re-suspension by Kueue mid-training (the Workload
deactivated, as a preemption evicts it) continues the same Job after re-admission, and the user's
spec.suspend on a queued run holds it against Kueue.

That the trainer's new pod resumes from the latest checkpoint on the volume is the trainer's part, tested
with a real training process in tests/jobs/train/test_train_job.py
(test_killed_job_resumes_with_the_same_batches_and_losses); here kwok plays the pods, and the test checks
what makes it resume there: the same Job (same uid, so the same run directory on the same claim) and no
retry of the backoff limit spent."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.e2e.conftest import Operator, Runs, wait_seconds
from tests.e2e.test_run_lifecycle import CURATION, EVALUATION, EXAMPLE, TRAINING
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import finish_job_pods, wait_for_pod, wait_until
from tests.support.kueue import Kueue, build_kueue

pytestmark = pytest.mark.controlplane
KUEUE = ("kueue.x-k8s.io", "v1beta2")
FLAVOR = "default-flavor"
QUEUE = "gpu"


@pytest.fixture(scope="module")
def kueue(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    with Kueue(control_plane, build_kueue(), tmp_path_factory.mktemp("kueue")) as controller:
        yield controller


@pytest.fixture
def queue(api: k8s.ApiClient, namespace: str, kueue: Kueue) -> Iterator[str]:
    """A ResourceFlavor, a ClusterQueue for this namespace with 1 GPU (CPU and memory plenty) and a LocalQueue."""
    custom = k8s.CustomObjectsApi(api)
    try:
        custom.create_cluster_custom_object(
            *KUEUE,
            "resourceflavors",
            {"apiVersion": "/".join(KUEUE), "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        )
    except k8s.ApiException as err:
        if err.status != 409:
            raise
    cq = f"cq-{namespace}"[:63]
    quotas = [("cpu", "100"), ("memory", "1000Gi"), ("nvidia.com/gpu", "1")]
    custom.create_cluster_custom_object(
        *KUEUE,
        "clusterqueues",
        {
            "apiVersion": "/".join(KUEUE),
            "kind": "ClusterQueue",
            "metadata": {"name": cq},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "resourceGroups": [
                    {
                        "coveredResources": [name for name, _ in quotas],
                        "flavors": [
                            {
                                "name": FLAVOR,
                                "resources": [{"name": name, "nominalQuota": value} for name, value in quotas],
                            }
                        ],
                    }
                ],
            },
        },
    )
    custom.create_namespaced_custom_object(
        *KUEUE,
        namespace,
        "localqueues",
        {
            "apiVersion": "/".join(KUEUE),
            "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": namespace},
            "spec": {"clusterQueue": cq},
        },
    )
    try:
        yield QUEUE
    finally:
        # While Kueue runs, so that it drops its finalizers: the runs (their Jobs, then the Workloads go with
        # them; the operator would recreate a Job deleted alone) and the queue.
        custom.delete_collection_namespaced_custom_object(
            "reasoning-operator.dev", "v1alpha1", namespace, "reasoningruns"
        )
        batch = k8s.BatchV1Api(api)
        batch.delete_collection_namespaced_job(namespace, propagation_policy="Background")

        def no_workloads() -> bool:
            return not custom.list_namespaced_custom_object(*KUEUE, namespace, "workloads")["items"]

        wait_until(no_workloads, timeout=60, what=f"the Workloads in {namespace} deleted")
        custom.delete_cluster_custom_object(*KUEUE, "clusterqueues", cq)


def _run(name: str) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"]["name"] = name
    manifest["spec"]["queueName"] = QUEUE
    small = {"cpu": "1", "memory": "1Gi"}
    for stage in ("curation", "training", "evaluation"):
        manifest["spec"].setdefault(stage, {})["resources"] = small
    manifest["spec"]["serving"] = {"resources": small}
    return manifest


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _job(runs: Runs, name: str) -> Any:
    return runs.batch.read_namespaced_job(name, runs.namespace)


def _unsuspended(runs: Runs, name: str) -> bool:
    try:
        return _job(runs, name).spec.suspend is False
    except k8s.ApiException:
        return False


def _workload(runs: Runs, job_uid: str) -> dict[str, Any]:
    listed = runs.custom.list_namespaced_custom_object(
        *KUEUE, runs.namespace, "workloads", label_selector=f"kueue.x-k8s.io/job-uid={job_uid}"
    )
    (item,) = listed["items"]
    return dict(item)


def _finish(runs: Runs, job: str, result: dict[str, Any]) -> None:
    finish_job_pods(runs.core, runs.namespace, job, "Succeeded", json.dumps(result), timeout=90)


def test_two_runs_take_the_one_gpu_in_turn_and_a_re_suspension_continues(
    runs: Runs, operator: Operator, kueue: Kueue, queue: str
) -> None:
    names = ["run-a", "run-b"]
    for name in names:
        runs.create(_run(name))
    # Curation asks for no GPU: Kueue admits both (the operator created them suspended).
    for name in names:
        wait_until(lambda n=name: _unsuspended(runs, f"{n}-curation"), timeout=60, what=f"{name} curation admitted")
        _finish(runs, f"{name}-curation", CURATION)
    for name in names:
        runs.wait_phase(name, "Training", timeout=60)

    # One GPU: Kueue admits one training Job; the other waits, and status says so, with Kueue's reason.
    first = wait_until(
        lambda: next((n for n in names if _unsuspended(runs, f"{n}-training")), None),
        timeout=60,
        what="a training admitted",
    )
    second = next(n for n in names if n != first)

    def waiting(o: dict[str, Any]) -> bool:
        cond = _condition(o, "Admitted")
        return cond.get("reason") == "WaitingForAdmission" and "nvidia.com/gpu" in cond.get("message", "")

    try:
        obj = runs.wait(second, waiting, f"{second} waits for admission naming the GPU quota")
    except AssertionError as err:
        raise AssertionError(f"{err}\nkueue log:\n{kueue.log_tail()}") from err
    assert _condition(obj, "Admitted")["status"] == "False"
    assert obj["status"]["phase"] == "Training"
    assert _job(runs, f"{second}-training").spec.suspend is True
    # Each run's status follows its own Job's events, so the first's may be written after the second's.
    runs.wait(first, lambda o: _condition(o, "Admitted").get("status") == "True", f"{first} shows Admitted")

    # Re-suspension by Kueue mid-training: deactivating the Workload evicts it (as a preemption does).
    wait_for_pod(runs.core, runs.namespace, f"job-name={first}-training", phase="Running", timeout=60)
    job = _job(runs, f"{first}-training")
    uid = job.metadata.uid
    workload = _workload(runs, uid)
    runs.custom.patch_namespaced_custom_object(
        *KUEUE, runs.namespace, "workloads", workload["metadata"]["name"], {"spec": {"active": False}}
    )
    wait_until(lambda: _job(runs, f"{first}-training").spec.suspend is True, timeout=60, what="evicted: Job suspended")
    runs.wait(first, lambda o: _condition(o, "Admitted").get("reason") == "WaitingForAdmission", "evicted run waits")
    assert runs.get(first)["status"]["phase"] == "Training"
    # The freed GPU goes to the other run meanwhile; finishing it frees the quota again.
    wait_until(
        lambda: _unsuspended(runs, f"{second}-training"), timeout=60, what=f"{second} admitted after the eviction"
    )
    runs.custom.patch_namespaced_custom_object(
        *KUEUE, runs.namespace, "workloads", workload["metadata"]["name"], {"spec": {"active": True}}
    )
    _finish(runs, f"{second}-training", TRAINING)
    wait_until(lambda: _unsuspended(runs, f"{first}-training"), timeout=90, what=f"{first} re-admitted")
    resumed = _job(runs, f"{first}-training")
    assert resumed.metadata.uid == uid  # the same Job: same run directory, so the trainer resumes its checkpoint
    assert not (resumed.status.failed or 0)  # the eviction spent no retry
    _finish(runs, f"{first}-training", TRAINING)

    for name in names:
        runs.wait_phase(name, "Evaluating", timeout=90)
        wait_until(lambda n=name: _unsuspended(runs, f"{n}-evaluation"), timeout=60, what=f"{name} evaluation admitted")
        _finish(runs, f"{name}-evaluation", EVALUATION)
        obj = runs.wait_phase(name, "Succeeded", timeout=60)
        assert _condition(obj, "Admitted")["status"] == "True"


def test_the_users_suspend_wins_over_kueue_and_resuming_requeues(
    runs: Runs, operator: Operator, kueue: Kueue, queue: str
) -> None:
    """Kueue unsuspends an admitted Job that is merely suspended; the operator holds a queued run through its
    Workload (spec.active false), so it stays suspended, and gives it back to the queue on resume."""
    runs.create(_run("run-s"))
    wait_until(lambda: _unsuspended(runs, "run-s-curation"), timeout=60, what="curation admitted")
    wait_for_pod(runs.core, runs.namespace, "job-name=run-s-curation", phase="Running", timeout=60)
    uid = _job(runs, "run-s-curation").metadata.uid
    _patch_run(runs, "run-s", {"spec": {"suspend": True}})
    wait_until(lambda: _job(runs, "run-s-curation").spec.suspend is True, timeout=60, what="curation suspended")
    # Were only the Job suspended, Kueue would unsuspend it within a second (seen with the Workload path off).
    for _ in range(10):
        assert _job(runs, "run-s-curation").spec.suspend is True, kueue.log_tail()
        wait_seconds(0.5)
    workload = _workload(runs, uid)
    assert workload["spec"]["active"] is False
    assert workload["metadata"]["annotations"]["reasoning-operator.dev/held-by-suspend"] == "true"
    obj = runs.get("run-s")
    assert obj["status"]["phase"] == "Curating" and _condition(obj, "Suspended")["status"] == "True"

    _patch_run(runs, "run-s", {"spec": {"suspend": False}})
    wait_until(lambda: _unsuspended(runs, "run-s-curation"), timeout=60, what="curation re-admitted by Kueue")
    assert _workload(runs, uid)["spec"]["active"] is True
    _finish(runs, "run-s-curation", CURATION)
    runs.wait_phase("run-s", "Training", timeout=60)


def _patch_run(runs: Runs, name: str, patch: dict[str, Any]) -> None:
    runs.custom.patch_namespaced_custom_object(
        "reasoning-operator.dev", "v1alpha1", runs.namespace, "reasoningruns", name, patch
    )
