"""Fixtures for the real-node tier: one control plane whose apiserver listens on the node IP, one real node
(containerd, kubelet, kube-proxy, CoreDNS, the fake-GPU device plugin) for the whole session, and helpers to
run a pod there to completion. ``make e2e-node`` runs this tier alone."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.support.controlplane import ControlPlane, build_binaries
from tests.support.fake_kubelet import wait_until
from tests.support.node import BUSYBOX_IMAGE, GPU_TOLERATION, RealNode, build_node_binaries, node_cluster

from reasoning_operator.core.builders.pod import SCRATCH_DIR, container_security, pod_security

RESTRICTED = "restricted"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: needs a real kubelet node (root; scripts/node/build.sh)")


@pytest.fixture(scope="session")
def node_plane() -> Iterator[tuple[ControlPlane, RealNode]]:
    """The session's control plane and its real node (built on first use, cached outside the repo)."""
    plane_bins, node_bins = build_binaries(), build_node_binaries()
    with node_cluster(plane_bins, node_bins) as (plane, node):
        yield plane, node


@pytest.fixture
def core(node_plane: tuple[ControlPlane, RealNode]) -> Iterator[Any]:
    with node_plane[0].api_client() as api:
        yield k8s.CoreV1Api(api)


def _namespace(core: Any, request: pytest.FixtureRequest, labels: dict[str, str]) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"n-{base}-{os.urandom(3).hex()}"
    core.create_namespace({"metadata": {"name": name, "labels": {"reasoning.dev/test": "true", **labels}}})

    def default_sa() -> bool:
        return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items)

    wait_until(default_sa, timeout=30, what=f"ServiceAccount {name}/default")
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def namespace(core: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard (as the chart's namespace does)."""
    yield from _namespace(
        core,
        request,
        {f"pod-security.kubernetes.io/{mode}": RESTRICTED for mode in ("enforce", "warn", "audit")},
    )


def busybox_pod(
    name: str,
    script: str,
    *,
    labels: dict[str, str] | None = None,
    ports: list[int] | None = None,
    restart: str = "Never",
    extra_spec: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod running ``sh -c script`` in the tests' busybox image with the operator's own security contexts
    (restricted PSS, uid 65532, read-only root, an emptyDir on /tmp). It tolerates the real node's GPU taint:
    that node is the only one, and also the GPU node."""
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "securityContext": pod_security(),
        "tolerations": [GPU_TOLERATION],
        "terminationGracePeriodSeconds": 1,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "securityContext": container_security(),
                "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
                "ports": [{"containerPort": p} for p in ports or []],
                "resources": resources or {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "terminationMessagePath": "/dev/termination-log",
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    spec.update(extra_spec or {})
    return {"metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}


def wait_pod(core: Any, namespace: str, name: str, done: Callable[[Any], bool], timeout: float, what: str) -> Any:
    found: dict[str, Any] = {}

    def check() -> bool:
        found["pod"] = core.read_namespaced_pod(name, namespace)
        return done(found["pod"])

    try:
        wait_until(check, timeout=timeout, what=what)
    except Exception as exc:
        pod = found.get("pod")
        raise AssertionError(f"{exc}; pod status: {pod.status if pod else None}") from exc
    return found["pod"]


def run_to_completion(core: Any, namespace: str, pod: dict[str, Any], timeout: float = 60) -> tuple[Any, str]:
    """Create ``pod``, wait until it Succeeded or Failed; return (pod, its log)."""
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(namespace, pod)
    done = wait_pod(
        core, namespace, name, lambda p: p.status.phase in ("Succeeded", "Failed"), timeout, f"pod {name} to finish"
    )
    return done, str(core.read_namespaced_pod_log(name, namespace))


def termination_message(pod: Any) -> str:
    state = pod.status.container_statuses[0].state
    assert state.terminated is not None, state
    return str(state.terminated.message or "")
