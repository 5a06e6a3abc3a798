"""Smoke tests of the test control plane itself: real scheduler, controllers, GC, RBAC and the fake kubelet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from tests.support.controlplane import A100_PRODUCT, GPU_PRODUCT_LABEL, GPU_RESOURCE, H100_PRODUCT, ControlPlane
from tests.support.fake_kubelet import finish_job_pods, termination_messages, wait_for_pod, wait_until

pytestmark = pytest.mark.controlplane


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[Any]:
    with control_plane.api_client() as client:
        yield client


def gpu_pod_spec(product: str, *, gpus: int = 1) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [product]}]}
                    ]
                }
            }
        },
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "main",
                "image": "registry.invalid/reasoning/train:test",
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {"cpu": "1", "memory": "1Gi"}},
            }
        ],
    }


def job(name: str, pod_spec: dict[str, Any], *, backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}},
    }


def job_condition(batch: Any, namespace: str, name: str, cond_type: str) -> Any:
    job_obj = batch.read_namespaced_job_status(name, namespace)
    for cond in job_obj.status.conditions or []:
        if cond.type == cond_type and cond.status == "True":
            return job_obj
    return None


def test_fake_nodes_are_ready_with_labels_capacity_and_taints(api: Any) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"gpu-h100-0", "gpu-a100-0", "cpu-0"}
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
    for name, product in (("gpu-h100-0", H100_PRODUCT), ("gpu-a100-0", A100_PRODUCT)):
        node = nodes[name]
        assert node.metadata.labels[GPU_PRODUCT_LABEL] == product
        assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
        for resources in (node.status.capacity, node.status.allocatable):
            assert resources[GPU_RESOURCE] == "8"
            assert resources["cpu"] == "64"
            assert resources["memory"] == "512Gi"
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [(GPU_RESOURCE, "present", "NoSchedule")]
    cpu = nodes["cpu-0"]
    assert GPU_PRODUCT_LABEL not in cpu.metadata.labels
    assert GPU_RESOURCE not in cpu.status.allocatable
    assert (cpu.status.allocatable["cpu"], cpu.status.allocatable["memory"]) == ("32", "128Gi")
    assert not cpu.spec.taints


def test_gpu_job_lands_on_h100_runs_and_completes_with_termination_message(api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    batch: Any = k8s_client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, job("train", gpu_pod_spec(H100_PRODUCT)))

    pod = wait_for_pod(core, namespace, "batch.kubernetes.io/job-name=train", phase="Running", ready=True)
    assert pod.spec.node_name == "gpu-h100-0"
    assert pod.status.container_statuses[0].state.running is not None
    assert job_condition(batch, namespace, "train", "Complete") is None

    finished = finish_job_pods(core, namespace, "train", "Succeeded", '{"x":1}')
    assert [p.metadata.name for p in finished] == [pod.metadata.name]
    wait_until(lambda: job_condition(batch, namespace, "train", "Complete"), what="Job train Complete")

    pod = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert pod.status.phase == "Succeeded"
    assert termination_messages(pod) == ['{"x":1}']
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert pod.status.container_statuses[0].state.running is None
    assert batch.read_namespaced_job_status("train", namespace).status.succeeded == 1


def test_failed_outcome_with_backoff_limit_zero_fails_the_job(api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    batch: Any = k8s_client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, job("boom", gpu_pod_spec(A100_PRODUCT), backoff_limit=0))

    (pod,) = finish_job_pods(core, namespace, "boom", "Failed", "CUDA error: out of memory")
    assert pod.spec.node_name == "gpu-a100-0"
    failed = wait_until(lambda: job_condition(batch, namespace, "boom", "Failed"), what="Job boom Failed")
    assert failed.status.failed == 1
    assert [c.reason for c in failed.status.conditions if c.type == "Failed"] == ["BackoffLimitExceeded"]
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (1, "Error", "CUDA error: out of memory")


def test_unknown_gpu_product_stays_pending_unschedulable(api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    pod_manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "b200", "labels": {"app": "b200"}},
        "spec": gpu_pod_spec("NVIDIA-B200"),
    }
    core.create_namespaced_pod(namespace, pod_manifest)

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod("b200", namespace)
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return pod
        return None

    pod = wait_until(unschedulable, what="pod b200 Unschedulable")
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=b200").items
    assert any(e.reason == "FailedScheduling" for e in events), [e.reason for e in events]
    time.sleep(2)
    pod = core.read_namespaced_pod("b200", namespace)
    assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)


def test_deployment_becomes_available_on_the_cpu_node(api: Any, namespace: str) -> None:
    apps: Any = k8s_client.AppsV1Api(api)
    core: Any = k8s_client.CoreV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
                },
            },
        },
    )

    def available() -> Any:
        dep = apps.read_namespaced_deployment_status("web", namespace)
        conds = {c.type: c.status for c in dep.status.conditions or []}
        return dep if conds.get("Available") == "True" and dep.status.ready_replicas == 2 else None

    wait_until(available, what="Deployment web Available with 2 ready replicas")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert {p.spec.node_name for p in pods} == {"cpu-0"}  # GPU nodes are tainted


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "1"}})
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "child", "ownerReferences": [owner_ref]}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_until(child_gone, what="child ConfigMap garbage-collected")
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_server_side_dry_run_rejects_invalid_objects_and_persists_nothing(api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    batch: Any = k8s_client.BatchV1Api(api)
    with pytest.raises(ApiException) as invalid_job:
        batch.create_namespaced_job(namespace, job("bad", gpu_pod_spec(H100_PRODUCT), backoff_limit=-1), dry_run="All")
    assert invalid_job.value.status == 422
    assert "backoffLimit" in str(invalid_job.value.body)

    with pytest.raises(ApiException) as invalid_name:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "Not_A_DNS_Name"}}, dry_run="All")
    assert invalid_name.value.status == 422

    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("dry", namespace)
    assert missing.value.status == 404


def test_service_account_kubeconfig_is_subject_to_rbac(control_plane: ControlPlane, api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(api)
    rbac: Any = k8s_client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    kubeconfig = control_plane.kubeconfig_for_service_account(namespace, "reader")

    with control_plane.api_client(kubeconfig) as sa_api:
        sa_core: Any = k8s_client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as forbidden:
            sa_core.list_namespaced_pod(namespace)
        assert forbidden.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in str(forbidden.value.body)

        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )

        def can_list() -> bool:
            try:
                sa_core.list_namespaced_pod(namespace)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False
            return True

        wait_until(can_list, what="RoleBinding to take effect")
        with pytest.raises(ApiException) as still_forbidden:
            sa_core.list_namespaced_secret(namespace)
        assert still_forbidden.value.status == 403
