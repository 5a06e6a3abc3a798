"""The RayJob the operator writes for spec.curation.cluster passes a strict server-side dry run against KubeRay's
own CRDs (v1.5.0, from the Go module proxy): every field is one KubeRay's schema knows, of the right type.

No KubeRay controller runs here: this checks the manifest's shape, not that KubeRay starts a cluster from it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.e2e.conftest import Runs
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import wait_until
from tests.support.kuberay import crd_paths

from reasoning_operator.core import builders
from reasoning_operator.core.run import Run

pytestmark = pytest.mark.controlplane

CLUSTER = {
    "workers": 2,
    "workerResources": {"cpu": "4", "memory": "8Gi"},
    "headResources": {"cpu": "1", "memory": "2Gi"},
}


@pytest.fixture(scope="module")
def kuberay_crds(control_plane: ControlPlane) -> list[str]:
    names = []
    with control_plane.api_client() as api:
        ext = k8s.ApiextensionsV1Api(api)
        for path in crd_paths():
            body = yaml.safe_load(path.read_text())
            try:
                ext.create_custom_resource_definition(body)
            except ApiException as err:
                if err.status != 409:
                    raise
            names.append(body["metadata"]["name"])

        def established() -> bool:
            for name in names:
                got = ext.read_custom_resource_definition(name)
                if not any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                    return False
            return True

        wait_until(established, timeout=60, what="KubeRay CRDs Established")
    return names


def _dry_run(api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    custom = k8s.CustomObjectsApi(api)
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayjobs", body, dry_run="All", field_validation="Strict"
    )
    return created


def test_the_operators_ray_job_passes_a_strict_server_side_dry_run(
    kuberay_crds: list[str], runs_no_operator: Runs, api: k8s.ApiClient, namespace: str
) -> None:
    created = runs_no_operator.create(
        {
            "apiVersion": "reasoning-operator.dev/v1alpha1",
            "kind": "ReasoningRun",
            "metadata": {"name": "ray"},
            "spec": {"curation": {"cluster": CLUSTER}},
        }
    )
    ray_job = builders.build_curation(Run.from_object(created))
    assert ray_job["kind"] == "RayJob"
    echoed = _dry_run(api, namespace, ray_job)
    # The apiserver kept what was sent (nothing pruned as unknown): the worker group and the submitter template.
    assert echoed["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert echoed["spec"]["submitterPodTemplate"] == ray_job["spec"]["submitterPodTemplate"]
    assert echoed["spec"]["shutdownAfterJobFinishes"] is True
    # A dry run persists nothing.
    listed = k8s.CustomObjectsApi(api).list_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs")
    assert listed["items"] == []


def test_the_strict_dry_run_does_refuse_a_field_kuberay_does_not_know(
    kuberay_crds: list[str], runs_no_operator: Runs, api: k8s.ApiClient, namespace: str
) -> None:
    """The check above can fail: the same manifest with one misspelt field is refused."""
    created = runs_no_operator.create(
        {
            "apiVersion": "reasoning-operator.dev/v1alpha1",
            "kind": "ReasoningRun",
            "metadata": {"name": "ray-bad"},
            "spec": {"curation": {"cluster": CLUSTER}},
        }
    )
    ray_job = builders.build_curation(Run.from_object(created))
    ray_job["spec"]["shutdownAfterJobFinish"] = ray_job["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(ApiException) as refused:
        _dry_run(api, namespace, ray_job)
    assert refused.value.status in (400, 422)
    assert "shutdownAfterJobFinish" in str(refused.value.body)


def test_the_operator_creates_the_ray_job_and_reads_its_failure(
    kuberay_crds: list[str], runs: Runs, api: k8s.ApiClient, namespace: str
) -> None:
    """The shell end to end: the operator creates the RayJob (no batch Job for curation) and lists it back. No
    KubeRay controller runs here, so the test writes the RayJob's status as KubeRay would on a failed job."""
    created = runs.create(
        {
            "apiVersion": "reasoning-operator.dev/v1alpha1",
            "kind": "ReasoningRun",
            "metadata": {"name": "ray-op"},
            "spec": {"curation": {"cluster": CLUSTER}},
        }
    )
    custom = k8s.CustomObjectsApi(api)

    def ray_job() -> dict[str, Any] | None:
        items: list[dict[str, Any]] = custom.list_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs")[
            "items"
        ]
        return items[0] if items else None

    found = wait_until(ray_job, timeout=60, what="the RayJob")
    assert found["metadata"]["name"] == "ray-op-curation"
    assert found["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert not [j for j in runs.jobs() if j.metadata.name == "ray-op-curation"]
    custom.patch_namespaced_custom_object_status(
        "ray.io",
        "v1",
        namespace,
        "rayjobs",
        "ray-op-curation",
        {"status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "message": "boom"}},
    )
    failed = runs.wait_phase("ray-op", "Failed", timeout=60)
    assert "AppFailed" in failed["status"]["failureReason"] and "boom" in failed["status"]["failureReason"]
