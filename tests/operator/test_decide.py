"""The pure core end to end: a run walks Pending -> ... -> Succeeded by feeding decide() the children it
asked for, in the states a cluster would report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from reasoning_operator.api import CurationProgress, Phase, Stage, TrainingProgress
from reasoning_operator.api.contract import progress_line
from reasoning_operator.core.decide import Plan, decide
from reasoning_operator.core.observe import observe, parse_progress
from reasoning_operator.core.run import Run

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
CURATION = {"samplesRead": 100, "samplesWritten": 80, "dropped": {"language": 20}}
TRAINING = {"steps": 10, "finalLoss": 1.5, "tokensSeen": 1000}
EVALUATION = {
    "accuracies": [
        {"benchmark": "gpqa_diamond", "mode": "on", "model": "trained", "accuracy": 0.41, "n": 198},
        {"benchmark": "gpqa_diamond", "mode": "on", "model": "base", "accuracy": 0.3, "n": 198},
    ]
}


def job(name: str, stage: str, state: str = "running", reason: str = "BackoffLimitExceeded") -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-11-27T11:00:00Z"}
    if state == "running":
        status["active"] = 1
    elif state == "complete":
        status |= {
            "succeeded": 1,
            "completionTime": "2026-11-27T11:30:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    elif state == "pending":  # created, its pod not (yet) created
        status = {}
    elif state == "failed":
        status |= {
            "failed": 3,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
    return {"metadata": {"name": name, "labels": {"reasoning-operator.dev/stage": stage}}, "status": status}


def pod(
    name: str,
    stage: str,
    phase: str,
    message: str | None = None,
    unschedulable: str | None = None,
    created: str = "2026-11-27T11:00:01Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if message is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": 0, "message": message}}}]
    if unschedulable:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        ]
    return {
        "metadata": {"name": name, "creationTimestamp": created, "labels": {"reasoning-operator.dev/stage": stage}},
        "status": status,
    }


def step(obj: dict[str, Any], **children: Any) -> tuple[Plan, dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "claim": None,
        "config_map": None,
        "jobs": [],
        "pods": [],
        "deployment": None,
        "service": None,
    }
    kwargs.update(children)
    plan = decide(Run.from_object(obj), observe(**kwargs), NOW)
    return plan, {**obj, "status": plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)}


def kinds(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def test_happy_path(make_run: Any) -> None:
    obj = make_run()
    plan, obj = step(obj)
    assert ("Job", "demo-curation") in kinds(plan.create)
    assert ("PersistentVolumeClaim", "demo-data") in kinds(plan.create)
    assert ("ConfigMap", "demo-config") in kinds(plan.apply)
    assert plan.status.phase == Phase.CURATING

    plan, obj = step(obj, jobs=[job("demo-curation", "curation")], pods=[pod("c-1", "curation", "Running")])
    assert plan.create == [kinds_only for kinds_only in plan.create if kinds_only["kind"] != "Job"]
    assert plan.status.phase == Phase.CURATING
    assert plan.status.stages.curation.phase == "Running"

    done = [job("demo-curation", "curation", "complete")]
    done_pods = [pod("c-1", "curation", "Succeeded", json.dumps(CURATION))]
    plan, obj = step(obj, jobs=done, pods=done_pods)
    assert plan.status.phase == Phase.TRAINING
    assert plan.status.curation is not None and plan.status.curation.samples_written == 80
    assert plan.status.stages.curation.duration_seconds == 1800
    assert ("Job", "demo-training") in kinds(plan.create)
    assert any(e.reason == "CurationSucceeded" for e in plan.events)

    done += [job("demo-training", "training", "complete")]
    done_pods += [pod("t-1", "training", "Succeeded", json.dumps(TRAINING))]
    plan, obj = step(obj, jobs=done, pods=done_pods)
    assert plan.status.phase == Phase.SERVING
    assert ("Deployment", "demo-serving") in kinds(plan.apply)
    assert ("Service", "demo-serving") in kinds(plan.apply)

    ready = {
        "metadata": {"name": "demo-serving"},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1, "availableReplicas": 1},
    }
    plan, obj = step(obj, jobs=done, pods=done_pods, deployment=ready, service={"metadata": {}})
    assert plan.status.phase == Phase.EVALUATING
    assert ("Job", "demo-evaluation") in kinds(plan.create)

    done += [job("demo-evaluation", "evaluation", "complete")]
    done_pods += [pod("e-1", "evaluation", "Succeeded", json.dumps(EVALUATION))]
    plan, obj = step(obj, jobs=done, pods=done_pods, deployment=ready, service={"metadata": {}})
    assert plan.status.phase == Phase.SUCCEEDED
    assert plan.status.headline_accuracy == "gpqa_diamond/on: 0.410"
    assert ("Deployment", "demo-serving") in plan.delete and ("Service", "demo-serving") in plan.delete
    conditions = {c.type: c.status for c in plan.status.conditions}
    assert conditions == {
        "DataCurated": "True",
        "ModelTrained": "True",
        "ServingReady": "False",
        "Evaluated": "True",
        "Succeeded": "True",
    }
    assert any(e.reason == "RunSucceeded" for e in plan.events)

    # Reconciling a finished run again changes nothing and creates nothing.
    again, _ = step(obj, jobs=done, pods=done_pods)
    assert again.status == plan.status and not [o for o in again.create if o["kind"] == "Job"]
    assert not again.events

    # decide copies the status it is given through pydantic-core, not copy.deepcopy: the same model, shared with
    # nothing (this status holds every stage's result, conditions and evaluation).
    full = plan.status
    copied = full.deep_copy()
    assert copied == full.model_copy(deep=True) and copied.evaluation is not None
    copied.stages.curation.message, copied.conditions[0].message = "changed", "changed"
    assert full.stages.curation.message != "changed" and full.conditions[0].message != "changed"


def test_restart_is_idempotent(make_run: Any) -> None:
    """Same cluster state, same answer: a restarted operator neither duplicates nor loses progress."""
    _, obj = step(make_run())
    children = {"jobs": [job("demo-curation", "curation")], "pods": [pod("c-1", "curation", "Running")]}
    first, obj1 = step(obj, **children)
    second, _ = step(obj1, **children)
    assert not [o for o in first.create + second.create if o["kind"] == "Job"]
    assert first.status == second.status and not second.events


def test_failed_curation_fails_the_run(make_run: Any) -> None:
    _, obj = step(make_run())
    plan, _ = step(
        obj,
        jobs=[job("demo-curation", "curation", "failed")],
        pods=[pod("c-1", "curation", "Failed", "malformed JSON at SFT/chat/chat.jsonl:3")],
    )
    assert plan.status.phase == Phase.FAILED
    assert plan.status.failure_reason is not None
    assert "demo-curation" in plan.status.failure_reason and "chat.jsonl:3" in plan.status.failure_reason
    conditions = {c.type: (c.status, c.reason) for c in plan.status.conditions}
    assert conditions["DataCurated"] == ("False", "BackoffLimitExceeded")
    assert conditions["Failed"] == ("True", "StageFailed")
    assert not [o for o in plan.create if o["kind"] == "Job"]


def test_an_oom_killed_stage_fails_the_run_with_reason_oomkilled_naming_pod_and_stage(make_run: Any) -> None:
    _, obj = step(make_run())
    killed = pod("c-2", "curation", "Failed")
    killed["status"]["containerStatuses"] = [
        {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "lastState": {}}
    ]
    errored = pod("c-1", "curation", "Failed", "ray.init failed")
    plan, _ = step(obj, jobs=[job("demo-curation", "curation", "failed")], pods=[errored, killed])
    assert plan.status.phase == Phase.FAILED
    conditions = {c.type: (c.status, c.reason) for c in plan.status.conditions}
    assert conditions["Failed"] == ("True", "OOMKilled") and conditions["DataCurated"] == ("False", "OOMKilled")
    message = plan.status.failure_reason or ""
    assert message.startswith("curation pod c-2 was OOMKilled") and "spec.curation.resources.memory" in message
    assert "demo-curation" in message  # the Job's own failure is still there


def test_a_pod_that_failed_otherwise_keeps_the_jobs_reason(make_run: Any) -> None:
    _, obj = step(make_run())
    errored = pod("c-1", "curation", "Failed", "bad input")
    errored["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "Error"
    plan, _ = step(obj, jobs=[job("demo-curation", "curation", "failed")], pods=[errored])
    conditions = {c.type: (c.status, c.reason) for c in plan.status.conditions}
    assert conditions["Failed"] == ("True", "StageFailed") and conditions["DataCurated"][1] == "BackoffLimitExceeded"


def test_missing_result_is_a_failure_not_a_silent_success(make_run: Any) -> None:
    _, obj = step(make_run())
    plan, _ = step(
        obj, jobs=[job("demo-curation", "curation", "complete")], pods=[pod("c-1", "curation", "Succeeded", "not json")]
    )
    assert plan.status.phase == Phase.FAILED
    assert plan.status.stages.curation.phase == "Failed"
    assert "invalid result" in (plan.status.failure_reason or "")


def test_unschedulable_training_says_why(make_run: Any) -> None:
    _, obj = step(make_run())
    jobs = [job("demo-curation", "curation", "complete"), job("demo-training", "training")]
    pods = [
        pod("c-1", "curation", "Succeeded", json.dumps(CURATION)),
        pod("t-1", "training", "Pending", unschedulable="0/3 nodes are available: 3 didn't match affinity"),
    ]
    plan, _ = step(obj, jobs=jobs, pods=pods)
    assert plan.status.phase == Phase.TRAINING
    assert plan.status.progress == "waiting for a node"
    trained = next(c for c in plan.status.conditions if c.type == "ModelTrained")
    assert trained.reason == "Unschedulable" and "didn't match" in trained.message


def test_keep_serving_keeps_the_deployment(make_run: Any) -> None:
    obj = make_run(spec={"serving": {"keepServing": True}})
    obj["status"] = {"phase": "Succeeded", "stages": {s.value: {"phase": "Succeeded"} for s in Stage}}
    plan, _ = step(
        obj,
        deployment={
            "metadata": {"name": "demo-serving"},
            "spec": {"replicas": 1},
            "status": {"readyReplicas": 1, "availableReplicas": 1},
        },
    )
    assert ("Deployment", "demo-serving") in kinds(plan.apply) and not plan.delete


def test_training_progress_is_the_last_progress_line_of_the_log() -> None:
    older = TrainingProgress(step=39, max_steps=2000, loss=1.3)
    newer = TrainingProgress(step=40, max_steps=2000, loss=1.25, learning_rate=0.0001, tokens_per_second=9000.0)
    tail = f"noise\n{progress_line(older)}\n{progress_line(newer)}\n{{broken\ntrain: 2%|\n"
    assert parse_progress(tail) == newer
    assert parse_progress("no json here\n{broken") is None


def test_a_single_pod_curation_shows_its_blocks_from_the_log(make_run: Any) -> None:
    _, obj = step(make_run())
    line = progress_line(CurationProgress(blocks_done=2, blocks_total=7))
    plan, obj = step(
        obj,
        jobs=[job("demo-curation", "curation")],
        pods=[pod("c-1", "curation", "Running")],
        curation_log_tail=f"noise\n{line}\n",
    )
    assert plan.status.curation_progress == CurationProgress(blocks_done=2, blocks_total=7)
    assert plan.status.progress == "blocks 2/7"
    assert plan.status.training_progress is None  # a curation line is never taken for training's
