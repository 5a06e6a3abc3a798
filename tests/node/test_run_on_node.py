"""A ReasoningRun's first stage on the real node, the way a user runs it: the chart's operator as a pod (its
ServiceAccount and RBAC, in a namespace enforcing the restricted Pod Security Standard), inputs seeded onto a
PVC by a Job from the curation image, and the curation Job running NeMo Curator in its real container.

Needs the project's images in podman (``make images``): ``ghcr.io/reasoning-operator/{operator,curation}``;
they are streamed into the node's containerd once (cached). Skipped, saying so, when they are not built.

Found here first: the curation image had mimalloc (cmeel-mimalloc) but not libatomic.so.1, so the preloaded
allocator stopped every process Ray starts and ray.init timed out waiting for the GCS port file. The job now
checks that the library preloads (``pipeline.preloadable``) and the base image lists libatomic1.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.chart.chart_tools import CHART, helm
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import wait_until
from tests.support.node import GPU_TAINT, NODE_NAME, RealNode

from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.core.builders.pod import RUN_AS_USER, SCRATCH_DIR, container_security, pod_security

pytestmark = pytest.mark.node

OPERATOR_IMAGE = "ghcr.io/reasoning-operator/operator:0.1.0"
CURATION_IMAGE = "ghcr.io/reasoning-operator/curation:0.1.0"
SEED = (
    "from pathlib import Path; from rich.console import Console; "
    "from reasoning_jobs.local.assets import prepare_quickstart; "
    "prepare_quickstart(Path('/workspace/datasets/quickstart'), Path('/workspace/models/tiny-llama'), "
    "Path('/workspace/benchmarks/quickstart'), Console())"
)


def _podman_has(image: str) -> bool:
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


@pytest.fixture(scope="module")
def images(node_plane: tuple[ControlPlane, RealNode]) -> dict[str, float]:
    missing = [i for i in (OPERATOR_IMAGE, CURATION_IMAGE) if not _podman_has(i)]
    if missing:
        pytest.skip(f"the project's images are not built here (make images): {missing}")
    node = node_plane[1]
    return {image: node.import_podman_image(image) for image in (OPERATOR_IMAGE, CURATION_IMAGE)}


@contextlib.contextmanager
def _untainted(core: Any) -> Iterator[None]:
    """The one real node is also the GPU node; CPU stages (and the operator) do not tolerate its GPU taint,
    so it is lifted while a run's CPU stages use the node and put back afterwards."""
    core.patch_node(NODE_NAME, {"spec": {"taints": []}})
    try:
        yield
    finally:
        core.patch_node(NODE_NAME, {"spec": {"taints": [GPU_TAINT]}})


def _volume(core: Any, node: RealNode, namespace: str) -> str:
    """A hostPath PV on the node bound to the claim ``inputs`` (no provisioner here). hostPath ignores fsGroup,
    so the directory is given to the images' user, as a provisioner's volume would be writable for it."""
    path = node.work_dir / "volumes" / namespace
    path.mkdir(parents=True)
    shutil.chown(path, RUN_AS_USER, RUN_AS_USER)
    path.chmod(0o770)
    core.create_persistent_volume(
        {
            "metadata": {"name": f"pv-{namespace}"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": "inputs"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "inputs"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": f"pv-{namespace}",
                "resources": {"requests": {"storage": "5Gi"}},
            },
        },
    )
    return str(path)


def _seed(batch: Any, core: Any, namespace: str) -> None:
    """Seed the claim the way a user could: a Job from the curation image writes the Llama-Nemotron-layout
    dataset, the tiny model (with its offline tokenizer) and the small eval set."""
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "seed-inputs"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": pod_security(),
                        "containers": [
                            {
                                "name": "seed",
                                "image": CURATION_IMAGE,
                                "imagePullPolicy": "Never",
                                "command": ["python", "-c", SEED],
                                "securityContext": container_security(),
                                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                                "volumeMounts": [
                                    {"name": "workspace", "mountPath": "/workspace"},
                                    {"name": "scratch", "mountPath": SCRATCH_DIR},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "workspace", "persistentVolumeClaim": {"claimName": "inputs"}},
                            {"name": "scratch", "emptyDir": {}},
                        ],
                    }
                },
            },
        },
    )

    def finished() -> bool:
        status = batch.read_namespaced_job_status("seed-inputs", namespace).status
        if status.failed:
            pods = core.list_namespaced_pod(namespace, label_selector="job-name=seed-inputs").items
            logs = [core.read_namespaced_pod_log(p.metadata.name, namespace) for p in pods]
            raise AssertionError(f"seeding failed: {logs}")
        return bool(status.succeeded)

    wait_until(finished, timeout=300, interval=1, what="the seeding Job")


def _run_manifest() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReasoningRun",
        "metadata": {"name": "on-node"},
        "spec": {
            "dataset": {"source": "/workspace/datasets/quickstart"},
            "curation": {
                "maxTokenCount": 1024,
                "maxCompletionTokenCount": 1024,
                "workers": 1,
                "resources": {"cpu": "1", "memory": "3Gi"},
            },
            "model": {"name": "/workspace/models/tiny-llama"},
            "training": {
                "method": "full",
                "maxSteps": 20,
                "checkpointInterval": 10,
                "resources": {"cpu": "1", "memory": "2Gi"},
            },
            # Full fine-tuning of the tiny model: served by the pytriton backend (admission refuses vllm for it).
            "serving": {"backend": "pytriton"},
            "storage": {"existingClaim": "inputs"},
            "images": {"pullPolicy": "Never"},
        },
    }


def test_curation_runs_in_its_real_container_on_the_node(
    node_plane: tuple[ControlPlane, RealNode], namespace: str, images: dict[str, float], core: Any
) -> None:
    plane, node = node_plane
    with plane.api_client() as api, _untainted(core):
        batch, custom = k8s.BatchV1Api(api), k8s.CustomObjectsApi(api)
        _volume(core, node, namespace)
        started = time.monotonic()
        _seed(batch, core, namespace)
        seeded = time.monotonic() - started

        kube = ["--kubeconfig", str(plane.kubeconfig), "--namespace", namespace]
        values = ["--set", "image.pullPolicy=Never", "--set", "watch.allNamespaces=false"]
        helm("install", "ro", str(CHART), *kube, *values, "--wait", "--timeout", "120s", timeout=180)
        try:
            pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=reasoning-operator")
            (op_pod,) = pods.items
            assert op_pod.spec.node_name == NODE_NAME and op_pod.status.phase == "Running"

            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _run_manifest())
            last: dict[str, Any] = {}

            def curated() -> bool:
                nonlocal last
                last = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "on-node")
                status = last.get("status") or {}
                if status.get("phase") == "Failed":
                    logs = {
                        p.metadata.name: core.read_namespaced_pod_log(p.metadata.name, namespace, tail_lines=30)
                        for p in core.list_namespaced_pod(namespace).items
                        if "curation" in p.metadata.name
                    }
                    raise AssertionError(f"run failed: {status.get('conditions')}\ncuration pods' logs: {logs}")
                return bool(status.get("curation"))

            try:
                wait_until(curated, timeout=600, interval=2, what="curation results in the run's status")
            except Exception as exc:
                op_log = core.read_namespaced_pod_log(op_pod.metadata.name, namespace, tail_lines=40)
                raise AssertionError(f"{exc}; status {last.get('status')}\noperator log:\n{op_log}") from exc
            status = last["status"]
            result = status["curation"]
            assert result["samplesRead"] > 0 and 0 < result["samplesWritten"] <= result["samplesRead"], result
            assert status["phase"] in ("Training", "Serving", "Evaluating", "Succeeded"), status
            jobs = batch.list_namespaced_job(namespace, label_selector=None).items
            curation_jobs = [j for j in jobs if j.metadata.name != "seed-inputs" and "curation" in j.metadata.name]
            assert len(curation_jobs) == 1 and curation_jobs[0].status.succeeded == 1
            (cur_pod,) = core.list_namespaced_pod(
                namespace, label_selector=f"job-name={curation_jobs[0].metadata.name}"
            ).items
            assert cur_pod.spec.node_name == NODE_NAME
            assert cur_pod.spec.containers[0].image == CURATION_IMAGE  # the reference the operator writes
            print(f"\nimport {images} s; seeding {seeded:.0f} s; curation {result}")
        finally:
            helm("uninstall", "ro", *kube, "--wait", "--timeout", "60s", check=False, timeout=90)
            with contextlib.suppress(k8s.ApiException):
                core.delete_persistent_volume(f"pv-{namespace}")
