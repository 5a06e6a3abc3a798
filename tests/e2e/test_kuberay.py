"""spec.curation.cluster against KubeRay v1.6.0 (from the Go module proxy): the RayJob the operator writes passes
a strict server-side dry run against KubeRay's own CRDs, the operator creates it and reads its status, and (when
KubeRay's operator binary is cached: ``tests.support.kuberay.operator_binary``) KubeRay's real controller
accepts it and creates its RayCluster and token Secret, whose pods pass the restricted Pod Security admission
and all read that Secret's token. kwok plays the
kubelet, so no Ray process starts: what Ray does in those pods is not checked here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.e2e.conftest import Runs
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import wait_until
from tests.support.kuberay import install_crds, operator_binary, running_operator

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
    with control_plane.api_client() as api:
        return install_crds(api)


#: The dry runs' RayJob name: the session's operator (other e2e tests start one for all namespaces) may create
#: the run's own RayJob meanwhile, under the builder's name.
DRY_RUN_NAME = "dry-run-only"


def _dry_run(api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    custom = k8s.CustomObjectsApi(api)
    renamed = {**body, "metadata": {**body["metadata"], "name": DRY_RUN_NAME}}
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayjobs", renamed, dry_run="All", field_validation="Strict"
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
    assert echoed["metadata"]["name"] == DRY_RUN_NAME
    assert DRY_RUN_NAME not in [item["metadata"]["name"] for item in listed["items"]]


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


def _cluster_run(name: str) -> dict[str, Any]:
    """A ReasoningRun whose curation runs on a Ray cluster."""
    return {
        "apiVersion": "reasoning-operator.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": name},
        "spec": {"curation": {"cluster": CLUSTER}},
    }


def _first(api: k8s.ApiClient, namespace: str, plural: str) -> dict[str, Any] | None:
    """The first ray.io/v1 object of that kind in the namespace, if any."""
    listed = k8s.CustomObjectsApi(api).list_namespaced_custom_object("ray.io", "v1", namespace, plural)
    items: list[dict[str, Any]] = listed["items"]
    return items[0] if items else None


def test_the_operator_creates_the_ray_job_and_reads_its_failure(
    kuberay_crds: list[str], runs: Runs, api: k8s.ApiClient, namespace: str
) -> None:
    """The shell end to end: the operator creates the RayJob (no batch Job for curation) and lists it back. No
    KubeRay controller runs here, so the test writes the RayJob's status as KubeRay would on a failed job."""
    created = runs.create(_cluster_run("ray-op"))
    found = wait_until(lambda: _first(api, namespace, "rayjobs"), timeout=60, what="the RayJob")
    assert found["metadata"]["name"] == "ray-op-curation"
    assert found["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert not [j for j in runs.jobs() if j.metadata.name == "ray-op-curation"]
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        "ray.io",
        "v1",
        namespace,
        "rayjobs",
        "ray-op-curation",
        {"status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "message": "boom"}},
    )
    failed = runs.wait_phase("ray-op", "Failed", timeout=60)
    assert "AppFailed" in failed["status"]["failureReason"] and "boom" in failed["status"]["failureReason"]


@pytest.fixture(scope="module")
def kuberay_operator(
    control_plane: ControlPlane, kuberay_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """KubeRay's own operator, as a process against the control plane. Building it cold takes minutes (see the
    README): the gate builds it in the background (`kuberay`, after Kueue; the test waits for it), and outside
    the gate the test builds it only with REASONING_BUILD_KUBERAY=1, otherwise it needs the cached binary."""
    in_gate = bool(os.environ.get("REASONING_GATE_DIR"))
    binary = operator_binary(build=in_gate or os.environ.get("REASONING_BUILD_KUBERAY") == "1")
    if binary is None:
        pytest.skip("KubeRay's operator is not built: REASONING_BUILD_KUBERAY=1 builds it (cached afterwards)")
    log = tmp_path_factory.mktemp("kuberay") / "ray-operator.log"
    with running_operator(binary, control_plane.kubeconfig, log):
        yield log


@pytest.mark.needs_build("kuberay")
def test_kuberay_accepts_the_ray_job_and_its_cluster_pods_pass_restricted_pod_security(
    kuberay_operator: Path, runs: Runs, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    created = runs.create(_cluster_run("ray-real"))
    try:
        cluster = wait_until(
            lambda: _first(api, namespace, "rayclusters"), timeout=90, what="KubeRay's RayCluster for the run's RayJob"
        )
        owner = cluster["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("RayJob", "ray-real-curation")

        def pods() -> list[Any] | None:
            found = core.list_namespaced_pod(namespace, label_selector="ray.io/node-type").items
            kinds = {p.metadata.labels.get("ray.io/node-type") for p in found}
            return found if {"head", "worker"} <= kinds and len(found) >= 1 + CLUSTER["workers"] else None

        # Created through the apiserver's restricted Pod Security admission, KubeRay's injected parts included.
        found = wait_until(pods, timeout=90, what="the head and worker pods")
        # Ray's token auth is KubeRay's (authOptions mode token): it made the cluster's Secret, owned by the
        # RayCluster (deleted with it), and points every container that talks to Ray at it, its injected
        # wait-gcs-ready included.
        secret_ref = {"name": cluster["metadata"]["name"], "key": "auth_token"}
        secret = core.read_namespaced_secret(secret_ref["name"], namespace)
        assert secret.metadata.owner_references[0].kind == "RayCluster" and secret.data["auth_token"]

        def auth_env(c: Any) -> dict[str, Any]:
            return {
                e.name: e.value or {"name": e.value_from.secret_key_ref.name, "key": e.value_from.secret_key_ref.key}
                for e in c.env or []
                if e.name.startswith("RAY_AUTH")
            }

        for pod in found:
            assert pod.metadata.labels["reasoning-operator.dev/run"] == "ray-real"
            assert pod.spec.containers[0].image == Run.from_object(created).spec.images.curation
            for c in [*(pod.spec.init_containers or []), pod.spec.containers[0]]:
                assert auth_env(c) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secret_ref}, (
                    pod.metadata.name,
                    c.name,
                )
        inits = {p.metadata.labels["ray.io/node-type"]: [c.name for c in p.spec.init_containers or []] for p in found}
        assert inits["head"] == [] and "wait-gcs-ready" in inits["worker"]

        def submitter() -> list[Any] | None:
            selector = "batch.kubernetes.io/job-name=ray-real-curation"
            return core.list_namespaced_pod(namespace, label_selector=selector).items or None

        # Once the (kwok-Ready) cluster is Ready, KubeRay creates the submitter Job from our template: its pod
        # passes the same admission and keeps our command (KubeRay's own is used only when none is set).
        (sub,) = wait_until(submitter, timeout=90, what="the submitter pod")
        assert sub.spec.containers[0].command[:2] == ["bash", "-c"]
        assert "/dev/termination-log" in sub.spec.containers[0].command[2]
        env = {e.name: e.value for e in sub.spec.containers[0].env}
        assert {"RAY_DASHBOARD_ADDRESS", "RAY_JOB_SUBMISSION_ID"} <= set(env)
        assert auth_env(sub.spec.containers[0]) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secret_ref}
    except TimeoutError:
        raise AssertionError(f"KubeRay's log:\n{kuberay_operator.read_text(errors='replace')[-4000:]}") from None
