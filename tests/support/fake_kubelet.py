"""Test helpers that play the kubelet's part on kwok nodes (see the contract in ``controlplane.py``).

A pod on a kwok node is Running and Ready until a test finishes it: :func:`finish_pod` annotates it with
``fake.reasoning.dev/outcome`` (and ``fake.reasoning.dev/message``, the containers' termination message),
and kwok moves it to ``Succeeded`` or ``Failed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

OUTCOME_ANNOTATION = "fake.reasoning.dev/outcome"
MESSAGE_ANNOTATION = "fake.reasoning.dev/message"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

Outcome = Literal["Succeeded", "Failed"]
T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy; return that, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_for_pod(
    core_api: Any,
    namespace: str,
    label_selector: str,
    *,
    phase: str | None = "Running",
    ready: bool | None = None,
    timeout: float = 30.0,
) -> Any:
    """Wait for a pod matching ``label_selector`` in ``phase`` (any phase when None); return the V1Pod.

    ``ready=True`` also requires the pod's Ready condition to be True. Pods being deleted are ignored.
    """

    def probe() -> Any:
        pods = core_api.list_namespaced_pod(namespace, label_selector=label_selector).items
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None:
                continue
            if phase is not None and pod.status.phase != phase:
                continue
            if ready is not None and _is_ready(pod) != ready:
                continue
            return pod
        return None

    return wait_until(probe, timeout=timeout, what=f"pod {namespace}/{label_selector!r} in phase {phase}")


def finish_pod(
    core_api: Any,
    pod: Any,
    outcome: Outcome = "Succeeded",
    message: str | None = None,
    *,
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 30.0,
) -> Any:
    """Make a Running pod exit: ``outcome`` is its phase, ``message`` every container's termination message.

    ``pod`` is a V1Pod or a pod name (then ``namespace`` is required). With ``wait`` (default), return the
    pod once kwok has moved it to ``outcome``.
    """
    if outcome not in ("Succeeded", "Failed"):
        raise ValueError(f"outcome must be Succeeded or Failed, not {outcome!r}")
    if isinstance(pod, str):
        if namespace is None:
            raise ValueError("namespace is required when pod is given by name")
        name = pod
    else:
        name, namespace = pod.metadata.name, pod.metadata.namespace
    annotations: dict[str, str | None] = {OUTCOME_ANNOTATION: outcome, MESSAGE_ANNOTATION: message}
    patched = core_api.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}})
    if not wait:
        return patched

    def probe() -> Any:
        current = core_api.read_namespaced_pod(name, namespace)
        return current if current.status.phase == outcome else None

    return wait_until(probe, timeout=timeout, what=f"pod {namespace}/{name} to become {outcome}")


def finish_job_pods(
    core_api: Any,
    namespace: str,
    job_name: str,
    outcome: Outcome = "Succeeded",
    message: str | None = None,
    *,
    timeout: float = 30.0,
) -> list[Any]:
    """Finish the Job's currently Running pod(s), waiting first for at least one to be Running.

    Returns the finished pods (as kwok left them).
    """
    selector = f"{JOB_NAME_LABEL}={job_name}"
    wait_for_pod(core_api, namespace, selector, phase="Running", timeout=timeout)
    pods = core_api.list_namespaced_pod(namespace, label_selector=selector).items
    running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
    return [finish_pod(core_api, p, outcome, message, timeout=timeout) for p in running]


def termination_messages(pod: Any) -> list[str | None]:
    """Each container's ``state.terminated.message`` (None where not terminated or no message)."""
    messages: list[str | None] = []
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state else None
        messages.append(terminated.message if terminated else None)
    return messages


def _is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
