"""A child the apiserver refuses, a pod the Job controller cannot create, a stage that never progresses:
each ends in a condition with a reason, never a silent loop (pure core, with the Status bodies and events
an apiserver sends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.operator.test_decide import NOW, job, pod, step

from reasoning_operator.api import ConditionType, Phase, ReasoningRunStatus, Stage, get_condition
from reasoning_operator.core.decide import APPLY, CREATE, decide
from reasoning_operator.core.observe import observe
from reasoning_operator.core.rejection import (
    CHILD_REJECTED,
    ChildRejection,
    parse_failure,
    pod_creation_refused,
    rejected_status,
    transient_status,
)
from reasoning_operator.core.run import Run

INVALID_CONFIG_MAP = json.dumps(
    {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'ConfigMap "demo-config" is invalid: []: Too long: may not be more than 1048576 bytes',
        "reason": "Invalid",
        "details": {
            "name": "demo-config",
            "kind": "ConfigMap",
            "causes": [{"reason": "FieldValueTooLong", "field": "[]"}],
        },
        "code": 422,
    }
)
POD_SECURITY = (
    'Error creating: pods "demo-curation-x7k2p" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "curation" must set securityContext.allowPrivilegeEscalation=false)'
)


def test_a_status_body_names_the_field_and_keeps_the_apiservers_message() -> None:
    failure = parse_failure(422, INVALID_CONFIG_MAP)
    assert failure.refused and failure.reason == "Invalid" and failure.fields == ("[]",)
    assert "Too long" in failure.describe() and "422 Invalid" in failure.describe()
    assert parse_failure(403, '{"reason": "Forbidden", "message": "no"}').refused


def test_transient_errors_are_not_refusals() -> None:
    for status in (500, 503, 504, 429, 409, None):
        assert not parse_failure(status, "oops").refused, status
    assert parse_failure(None, None, "ReadTimeoutError: timed out").message == "ReadTimeoutError: timed out"


def test_pod_creation_refusals_are_told_from_hiccups() -> None:
    assert pod_creation_refused(POD_SECURITY)
    assert pod_creation_refused('Error creating: pods "p" is forbidden: exceeded quota: gpus, requested: ...')
    assert pod_creation_refused('Error creating: Pod "p" is invalid: spec.containers[0].image: Required value')
    assert not pod_creation_refused("Error creating: Timeout: request did not complete within 60s")
    assert not pod_creation_refused('Error creating: pods "p" is forbidden: status unknown for quota: small')


def test_a_refused_child_fails_the_run_once_naming_child_field_and_message(make_run: Any) -> None:
    plan, _ = step(make_run())
    rejection = ChildRejection("ConfigMap", "demo-config", None, parse_failure(422, INVALID_CONFIG_MAP))
    status = rejected_status(plan.status, rejection, NOW, 1)
    assert status.phase == Phase.FAILED
    failed = get_condition(status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == CHILD_REJECTED and failed.status == "True"
    assert "ConfigMap demo-config" in failed.message and "field []" in failed.message and "Too long" in failed.message
    curated = get_condition(status.conditions, ConditionType.DATA_CURATED)
    assert curated is not None and curated.reason == CHILD_REJECTED  # the stage it happened in
    # The next reconcile plans no child at all: no loop of refused applies, no Jobs left pointing at it.
    again = decide(Run.from_object(make_run(status=status.to_wire())), observe(**_empty()), NOW)
    assert again.ops == []
    assert get_condition(again.status.conditions, ConditionType.FAILED).reason == CHILD_REJECTED  # type: ignore[union-attr]


def test_children_are_planned_in_dependency_order(make_run: Any) -> None:
    plan, obj = step(make_run())
    order = [(op, o["kind"]) for op, o in plan.ops]
    assert order == [(APPLY, "ConfigMap"), (CREATE, "PersistentVolumeClaim"), (CREATE, "Job")]
    done = [job("demo-curation", "curation", "complete"), job("demo-training", "training", "complete")]
    pods = [
        pod("c", "curation", "Succeeded", json.dumps({"samplesRead": 1, "samplesWritten": 1, "dropped": {}})),
        pod("t", "training", "Succeeded", json.dumps({"steps": 1, "finalLoss": 1.0, "tokensSeen": 1})),
    ]
    step(obj, jobs=done[:1], pods=pods[:1])
    ready = {
        "metadata": {"name": "demo-serving"},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1, "availableReplicas": 1},
    }
    obj["status"] = {
        "phase": "Serving",
        "stages": {"curation": {"phase": "Succeeded"}, "training": {"phase": "Succeeded"}},
    }
    plan, _ = step(obj, jobs=done, pods=pods, deployment=ready, service={"metadata": {}})
    kinds = [o["kind"] for _, o in plan.ops]
    # The Service the evaluation Job calls comes before it; the ConfigMap and claim before every pod.
    assert kinds == ["ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "Job"], kinds


def test_a_pod_the_apiserver_refuses_fails_the_stage_as_child_rejected(make_run: Any) -> None:
    _, obj = step(make_run())
    created = job("demo-curation", "curation", state="pending")
    created["metadata"]["uid"] = "job-uid"
    event = {
        "reason": "FailedCreate",
        "message": POD_SECURITY,
        "involvedObject": {"kind": "Job", "name": "demo-curation", "uid": "job-uid"},
        "lastTimestamp": "2026-11-27T11:59:00Z",
    }
    stale = event | {"involvedObject": {"kind": "Job", "name": "demo-curation", "uid": "a-deleted-namesake"}}
    plan, _ = step(obj, jobs=[created], job_events=[stale])
    assert plan.status.phase == Phase.CURATING  # a namesake's event is not this Job's
    plan, _ = step(obj, jobs=[created], job_events=[event])
    assert plan.status.phase == Phase.FAILED
    failed = get_condition(plan.status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == CHILD_REJECTED
    assert "Job demo-curation cannot create its pod" in failed.message and "violates PodSecurity" in failed.message
    assert any(e.type == "Warning" and "PodSecurity" in e.message for e in plan.events)


def test_a_stage_waiting_past_the_deadline_is_stalled_with_its_reason(make_run: Any) -> None:
    _, obj = step(make_run(spec={"progressDeadlineSeconds": 600}))
    training = [job("demo-curation", "curation", "complete"), job("demo-training", "training", state="pending")]
    curated = pod("c", "curation", "Succeeded", json.dumps({"samplesRead": 1, "samplesWritten": 1, "dropped": {}}))
    created = (NOW - timedelta(seconds=599)).strftime("%Y-%m-%dT%H:%M:%SZ")
    waiting = pod("t", "training", "Pending", unschedulable="0/3 nodes match", created=created)
    plan, obj = step(obj, jobs=training, pods=[curated, waiting])
    assert get_condition(plan.status.conditions, ConditionType.STALLED) is None  # not yet, and never written
    later = decide(
        Run.from_object(obj), observe(**_empty(jobs=training, pods=[curated, waiting])), NOW + timedelta(seconds=2)
    )
    stalled = get_condition(later.status.conditions, ConditionType.STALLED)
    assert stalled is not None and stalled.status == "True" and stalled.reason == "Unschedulable"
    assert "spec.progressDeadlineSeconds: 600" in stalled.message and "0/3 nodes match" in stalled.message
    assert later.status.phase == Phase.TRAINING  # it keeps waiting: capacity may still come
    # Stable while it stays stalled: no status rewrite on every pass.
    obj_later = {**obj, "status": later.status.to_wire()}
    much_later = decide(
        Run.from_object(obj_later),
        observe(**_empty(jobs=training, pods=[curated, waiting])),
        NOW + timedelta(seconds=300),
    )
    assert much_later.status == later.status
    # Once the pod runs, Stalled goes back to False.
    obj["status"] = later.status.to_wire()
    running = pod("t", "training", "Running", created=created)
    moving = decide(
        Run.from_object(obj),
        observe(**_empty(jobs=[training[0], job("demo-training", "training")], pods=[curated, running])),
        NOW,
    )
    assert get_condition(moving.status.conditions, ConditionType.STALLED).status == "False"  # type: ignore[union-attr]


def test_serving_never_ready_is_stalled(make_run: Any) -> None:
    start = (NOW - timedelta(seconds=1900)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "phase": "Serving",
        "stages": {
            "curation": {"phase": "Succeeded"},
            "training": {"phase": "Succeeded"},
            "serving": {"phase": "Running", "startTime": start},
        },
    }
    dep = {"metadata": {"name": "demo-serving"}, "spec": {"replicas": 1}, "status": {}}
    plan = decide(
        Run.from_object(make_run(status=status)), observe(**_empty(deployment=dep, service={"metadata": {}})), NOW
    )
    stalled = get_condition(plan.status.conditions, ConditionType.STALLED)
    assert stalled is not None and stalled.reason == "NotReady" and "1800" in stalled.message


def test_transient_failures_raise_stalled_after_a_few_attempts() -> None:
    failure = parse_failure(503, '{"reason": "ServiceUnavailable", "message": "etcd leader changed"}')
    running = ReasoningRunStatus(phase=Phase.TRAINING, current_stage=Stage.TRAINING)
    assert transient_status(running, failure, 2, datetime.now(UTC), 1) is None
    status = transient_status(running, failure, 3, datetime.now(UTC), 1)
    assert status is not None
    stalled = get_condition(status.conditions, ConditionType.STALLED)
    assert stalled is not None and stalled.reason == "TransientApiError" and "etcd leader changed" in stalled.message
    assert transient_status(ReasoningRunStatus(phase=Phase.SUCCEEDED), failure, 9, datetime.now(UTC), 1) is None


def _empty(**over: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "claim": None,
        "config_map": None,
        "jobs": [],
        "pods": [],
        "deployment": None,
        "service": None,
    }
    return kwargs | over


def test_writes_retry_transient_errors_with_backoff_and_give_up_on_refusals_at_once() -> None:
    from kubernetes.client.exceptions import ApiException

    from reasoning_operator.kube import TransientApiError, with_retries

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ApiException(status=503, reason="Service Unavailable")
        return "ok"

    assert with_retries("apply x", flaky, delays=(0.0, 0.0, 0.0)) == "ok" and len(calls) == 3

    def down() -> None:
        raise ApiException(status=500, reason="Internal Server Error")

    try:
        with_retries("apply x", down, delays=(0.0, 0.0))
    except TransientApiError as err:
        assert err.failure.status == 500
    else:
        raise AssertionError("a write failing every time must raise")

    refusals: list[int] = []

    def refused() -> None:
        refusals.append(1)
        raise ApiException(status=422, reason="Unprocessable Entity")

    try:
        with_retries("apply x", refused, delays=(0.0, 0.0))
    except ApiException as err:
        assert err.status == 422 and len(refusals) == 1  # never retried
    else:
        raise AssertionError("a refusal must raise")


def test_kopf_api_retries_never_run_out() -> None:
    """kopf escalates (and the operator exits) when its retry delays run out: ours never do."""
    import itertools

    from reasoning_operator.handlers import ForeverBackoffs

    backoffs = ForeverBackoffs()
    first = list(itertools.islice(iter(backoffs), 1000))
    assert len(first) == 1000 and first[:3] == [1.0, 1.0, 2.0] and max(first) == 30.0
    assert list(itertools.islice(iter(backoffs), 3)) == [1.0, 1.0, 2.0]  # each request starts its own schedule
