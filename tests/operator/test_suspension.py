"""spec.suspend and Kueue in the pure core: which Job is (un)suspended, what status says, and that the
operator never unsuspends a queued Job (Kueue's job) nor reports a held run as stalled."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tests.operator.test_decide import CURATION, EVALUATION, NOW, TRAINING, job, kinds, pod, step

from reasoning_operator.api import QUEUE_NAME_LABEL, Phase, ReasoningRunSpec, TrainingProgress
from reasoning_operator.api.contract import progress_line
from reasoning_operator.core.decide import Plan, decide
from reasoning_operator.core.observe import admission_message, observe
from reasoning_operator.core.run import Run


def suspended(obj: dict[str, Any], value: bool = True) -> dict[str, Any]:
    """`obj` with spec.suspend set (the way a user edits a run)."""
    return {**obj, "spec": {**obj["spec"], "suspend": value}}


def with_spec_suspend(j: dict[str, Any], value: bool) -> dict[str, Any]:
    return {**j, "spec": {**j.get("spec", {}), "suspend": value}}


def condition(plan: Plan, kind: str) -> Any:
    return next((c for c in plan.status.conditions if c.type == kind), None)


def suspend_ops(plan: Plan) -> list[tuple[str, bool]]:
    return [(o["metadata"]["name"], o["spec"]["suspend"]) for o in plan.apply if o["kind"] == "Job"]


def test_the_spec_fields_default_off_and_the_queue_label_is_the_fallback(make_run: Any) -> None:
    assert ReasoningRunSpec().suspend is False and ReasoningRunSpec().queue_name is None
    obj = make_run(spec={})
    obj["metadata"]["labels"] = {QUEUE_NAME_LABEL: "from-label"}
    assert Run.from_object(obj).queue_name == "from-label"
    obj["spec"] = {"queueName": "from-spec"}
    assert Run.from_object(obj).queue_name == "from-spec"  # the spec field wins
    assert Run.from_object(make_run()).queue_name is None


def test_suspend_mid_curation_suspends_the_job_and_keeps_the_phase(make_run: Any) -> None:
    obj = make_run()
    _, obj = step(obj, jobs=[job("demo-curation", "curation")], pods=[pod("c-1", "curation", "Running")])
    plan, obj = step(suspended(obj), jobs=[job("demo-curation", "curation")], pods=[pod("c-1", "curation", "Running")])
    assert suspend_ops(plan) == [("demo-curation", True)]
    assert plan.status.phase == Phase.CURATING
    assert plan.status.progress == "suspended"
    cond = condition(plan, "Suspended")
    assert cond.status == "True" and cond.reason == "SuspendedBySpec"
    assert "demo-curation" in cond.message

    # The Job is suspended (its pod deleted): nothing more to flip, still held, not a failure.
    held = with_spec_suspend(job("demo-curation", "curation", "pending"), True)
    plan, obj = step(obj, jobs=[held])
    assert suspend_ops(plan) == []
    assert plan.status.phase == Phase.CURATING and plan.status.stages.curation.phase == "Running"
    assert plan.status.stages.curation.message == "spec.suspend is true: Job demo-curation suspended"

    # Back to false: the operator unsuspends it (no queue), and Suspended turns False.
    plan, obj = step(suspended(obj, False), jobs=[held])
    assert suspend_ops(plan) == [("demo-curation", False)]
    cond = condition(plan, "Suspended")
    assert cond.status == "False" and cond.reason == "Resumed"
    assert plan.status.phase == Phase.CURATING and plan.status.progress != "suspended"


def test_no_new_stage_starts_while_suspended(make_run: Any) -> None:
    done = [job("demo-curation", "curation", "complete")]
    done_pods = [pod("c-1", "curation", "Succeeded", json.dumps(CURATION))]
    plan, obj = step(suspended(make_run()), jobs=done, pods=done_pods)
    assert ("Job", "demo-training") not in kinds(plan.create)
    assert plan.status.stages.curation.phase == "Succeeded"  # a finished stage still records its result
    assert plan.status.stages.training.phase == "Pending"
    assert condition(plan, "Suspended").status == "True"
    plan, _ = step(suspended(obj, False), jobs=done, pods=done_pods)
    assert ("Job", "demo-training") in kinds(plan.create)


def test_a_suspended_run_never_stalls_however_long_it_is_held(make_run: Any) -> None:
    obj = make_run(spec={"progressDeadlineSeconds": 60})
    # Created three hours ago, no pod since: without the suspension this is Stalled.
    held = with_spec_suspend(job("demo-curation", "curation", "pending"), True)
    held["metadata"]["creationTimestamp"] = "2026-11-27T09:00:00Z"
    plan, obj = step(suspended(obj), jobs=[held])
    assert condition(plan, "Stalled") is None
    assert plan.recheck_at is None
    # Resumed now (the Job controller's Suspended=False transition): the wait counts from then, not creation.
    resumed = with_spec_suspend(job("demo-curation", "curation", "pending"), False)
    resumed["metadata"]["creationTimestamp"] = "2026-11-27T09:00:00Z"
    resumed["status"] = {
        "conditions": [{"type": "Suspended", "status": "False", "lastTransitionTime": "2026-11-27T11:59:30Z"}]
    }
    plan, _ = step(suspended(obj, False), jobs=[resumed])
    assert condition(plan, "Stalled") is None
    assert plan.recheck_at == NOW + timedelta(seconds=30)


def test_the_unsuspended_stale_job_would_stall(make_run: Any) -> None:
    """The control for the test above: the same old podless Job, not held, is reported Stalled."""
    obj = make_run(spec={"progressDeadlineSeconds": 60})
    stale = job("demo-curation", "curation", "pending")
    stale["metadata"]["creationTimestamp"] = "2026-11-27T09:00:00Z"
    plan, _ = step(obj, jobs=[stale])
    assert condition(plan, "Stalled").status == "True"


def _at_serving(make_run: Any, spec: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any], list[Any]]:
    done = [job("demo-curation", "curation", "complete"), job("demo-training", "training", "complete")]
    done_pods = [
        pod("c-1", "curation", "Succeeded", json.dumps(CURATION)),
        pod("t-1", "training", "Succeeded", json.dumps(TRAINING)),
    ]
    _, obj = step(make_run(spec=spec or {}), jobs=done, pods=done_pods)
    return obj, done, done_pods


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-serving", "creationTimestamp": "2026-11-27T11:40:00Z"},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, "availableReplicas": ready},
    }


def test_suspend_scales_serving_to_zero_and_back(make_run: Any) -> None:
    obj, done, done_pods = _at_serving(make_run, {"serving": {"replicas": 2}})
    plan, obj = step(suspended(obj), jobs=done, pods=done_pods, deployment=deployment(2, 2))
    (dep,) = [o for o in plan.apply if o["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 0
    assert plan.status.phase == Phase.SERVING
    assert plan.status.stages.serving.message == "spec.suspend is true: serving scaled to 0 replicas"
    assert condition(plan, "Suspended").status == "True"
    plan, _ = step(suspended(obj, False), jobs=done, pods=done_pods, deployment=deployment(0, 0))
    (dep,) = [o for o in plan.apply if o["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 2


def test_evaluation_resumes_only_once_serving_is_ready_again(make_run: Any) -> None:
    obj, done, done_pods = _at_serving(make_run)
    _, obj = step(obj, jobs=done, pods=done_pods, deployment=deployment(1, 1))
    held = [*done, with_spec_suspend(job("demo-evaluation", "evaluation", "pending"), True)]
    plan, _ = step(suspended(obj, False), jobs=held, pods=done_pods, deployment=deployment(1, 0))
    assert suspend_ops(plan) == []
    assert plan.status.stages.evaluation.message == "resuming Job demo-evaluation"
    plan, _ = step(suspended(obj, False), jobs=held, pods=done_pods, deployment=deployment(1, 1))
    assert suspend_ops(plan) == [("demo-evaluation", False)]


def test_a_queued_run_creates_labelled_suspended_jobs(make_run: Any) -> None:
    plan, _ = step(make_run(spec={"queueName": "gpu"}))
    (created,) = [o for o in plan.create if o["kind"] == "Job"]
    assert created["metadata"]["labels"][QUEUE_NAME_LABEL] == "gpu"
    assert created["spec"]["suspend"] is True
    unqueued, _ = step(make_run())
    (plain,) = [o for o in unqueued.create if o["kind"] == "Job"]
    assert QUEUE_NAME_LABEL not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]


def test_the_training_job_asks_for_exactly_one_gpu_and_its_resources(make_run: Any) -> None:
    done = [job("demo-curation", "curation", "complete")]
    done_pods = [pod("c-1", "curation", "Succeeded", json.dumps(CURATION))]
    spec = {"queueName": "gpu", "training": {"resources": {"cpu": "4", "memory": "16Gi"}}}
    plan, _ = step(make_run(spec=spec), jobs=done, pods=done_pods)
    (training,) = [o for o in plan.create if o["metadata"]["name"] == "demo-training"]
    (container,) = training["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == "4" and container["resources"]["requests"]["memory"] == "16Gi"


def workload(job_uid: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "job-demo-training-abcde", "labels": {"kueue.x-k8s.io/job-uid": job_uid}},
        "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "message": message}]},
    }


def test_a_queued_job_waits_for_admission_with_kueues_reason_and_the_operator_never_unsuspends_it(
    make_run: Any,
) -> None:
    obj = make_run(spec={"queueName": "gpu", "progressDeadlineSeconds": 60})
    waiting = with_spec_suspend(job("demo-curation", "curation", "pending"), True)
    waiting["metadata"] |= {"uid": "job-uid-1", "creationTimestamp": "2026-11-27T09:00:00Z"}
    why = "couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in flavor gpu, 1 more needed"
    plan, obj = step(obj, jobs=[waiting], workloads=[workload("job-uid-1", why)])
    assert suspend_ops(plan) == []  # unsuspending is Kueue's
    admitted = condition(plan, "Admitted")
    assert admitted.status == "False" and admitted.reason == "WaitingForAdmission"
    assert why in admitted.message and "queue gpu" in admitted.message
    assert plan.status.stages.curation.message.startswith("waiting for admission to queue gpu: ")
    assert condition(plan, "Stalled") is None  # queueing is no stall
    # Kueue admitted it (unsuspended): Admitted turns True.
    running = {**waiting, "spec": {"suspend": False}, "status": {"active": 1}}
    plan, obj = step(obj, jobs=[running], pods=[pod("c-1", "curation", "Running")])
    assert condition(plan, "Admitted").status == "True"
    # The user's suspend wins, even on a queued Job; lifting it leaves the unsuspension to Kueue.
    plan, obj = step(suspended(obj), jobs=[running])
    assert suspend_ops(plan) == [("demo-curation", True)]
    plan, _ = step(suspended(obj, False), jobs=[waiting])
    assert suspend_ops(plan) == []
    assert condition(plan, "Admitted").reason == "WaitingForAdmission"


def test_a_preempted_training_job_waits_again_and_keeps_its_progress(make_run: Any) -> None:
    done = [job("demo-curation", "curation", "complete")]
    done_pods = [pod("c-1", "curation", "Succeeded", json.dumps(CURATION))]
    obj = make_run(spec={"queueName": "gpu"})
    log = progress_line(TrainingProgress(step=40, max_steps=100))
    running = {**job("demo-training", "training"), "spec": {"suspend": False}}
    plan = decide(
        Run.from_object(obj),
        observe(
            claim=None,
            config_map=None,
            jobs=[*done, running],
            pods=[*done_pods, pod("t-1", "training", "Running")],
            deployment=None,
            service=None,
            training_log_tail=log,
        ),
        NOW,
    )
    obj = {**obj, "status": plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    evicted = with_spec_suspend(job("demo-training", "training", "pending"), True)
    plan, _ = step(obj, jobs=[*done, evicted], pods=done_pods)
    assert plan.status.phase == Phase.TRAINING
    assert condition(plan, "Admitted").reason == "WaitingForAdmission"
    assert plan.status.training_progress is not None and plan.status.training_progress.step == 40
    assert suspend_ops(plan) == []


def test_admission_message_finds_the_workload_by_owner_or_label() -> None:
    j = {"metadata": {"name": "demo-training", "uid": "u1"}}
    by_owner = {
        "metadata": {"ownerReferences": [{"uid": "u1"}]},
        "status": {
            "conditions": [
                {"type": "QuotaReserved", "status": "True"},
                {"type": "Admitted", "status": "False", "message": "checks"},
            ]
        },
    }
    assert admission_message(j, [by_owner]) == "checks"
    assert admission_message(j, [workload("u1", "no quota")]) == "no quota"
    assert admission_message(j, [workload("other", "no quota")]) is None


def test_the_child_cache_keeps_a_jobs_suspend_and_drops_the_rest_of_its_spec() -> None:
    from reasoning_operator.cache import trim

    job_obj = {"kind": "Job", "metadata": {"name": "j"}, "spec": {"suspend": True, "template": {"spec": {}}}}
    assert trim(job_obj, keep_spec=False)["spec"] == {"suspend": True}
    assert "spec" not in trim({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}, keep_spec=False)


def test_a_queued_run_is_held_through_its_workload_and_released_back_to_the_queue(make_run: Any) -> None:
    """Kueue would unsuspend an admitted Job the operator merely suspended: with the Workload known, the
    operator deactivates it instead (Kueue then evicts), and reactivates only a Workload it deactivated."""
    obj = make_run(spec={"queueName": "gpu"})
    running = {**job("demo-curation", "curation"), "spec": {"suspend": False}}
    running["metadata"]["uid"] = "job-uid-1"
    wl = {
        "metadata": {"name": "job-demo-curation-1", "labels": {"kueue.x-k8s.io/job-uid": "job-uid-1"}},
        "spec": {"active": True},
    }
    plan, obj = step(suspended(obj), jobs=[running], workloads=[wl])
    (op,) = [o for o in plan.apply if o["kind"] in ("Job", "Workload")]
    assert op["kind"] == "Workload" and op["metadata"]["name"] == "job-demo-curation-1"
    assert op["spec"] == {"active": False}
    assert op["metadata"]["annotations"] == {"reasoning-operator.dev/held-by-suspend": "true"}
    held = {
        **wl,
        "metadata": {**wl["metadata"], "annotations": op["metadata"]["annotations"]},
        "spec": {"active": False},
    }
    evicted = with_spec_suspend(running, True)
    plan, obj = step(obj, jobs=[evicted], workloads=[held])
    assert [o for o in plan.apply if o["kind"] in ("Job", "Workload")] == []
    plan, _ = step(suspended(obj, False), jobs=[evicted], workloads=[held])
    (op,) = [o for o in plan.apply if o["kind"] in ("Job", "Workload")]
    assert op["kind"] == "Workload" and op["spec"] == {"active": True}
    # A Workload someone else deactivated stays as it is.
    theirs = {**wl, "spec": {"active": False}}
    plan, _ = step(suspended(obj, False), jobs=[evicted], workloads=[theirs])
    assert [o for o in plan.apply if o["kind"] in ("Job", "Workload")] == []


def test_a_last_job_admitted_and_finished_between_two_reconciles_leaves_the_run_admitted(make_run: Any) -> None:
    done = [job("demo-curation", "curation", "complete"), job("demo-training", "training", "complete")]
    done_pods = [
        pod("c-1", "curation", "Succeeded", json.dumps(CURATION)),
        pod("t-1", "training", "Succeeded", json.dumps(TRAINING)),
    ]
    ready = {
        "metadata": {"name": "demo-serving"},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1, "availableReplicas": 1},
    }
    obj = make_run(spec={"queueName": "gpu"})
    plan, obj = step(obj, jobs=done, pods=done_pods, deployment=ready, service={"metadata": {}})
    plan, obj = step(obj, jobs=done, pods=done_pods, deployment=ready, service={"metadata": {}})
    assert plan.status.phase == Phase.EVALUATING
    waiting = with_spec_suspend(job("demo-evaluation", "evaluation", "pending"), True)
    plan, obj = step(obj, jobs=[*done, waiting], pods=done_pods, deployment=ready, service={"metadata": {}})
    assert condition(plan, "Admitted").reason == "WaitingForAdmission"
    # The next event already shows it admitted and complete: the run ends Succeeded and Admitted.
    finished = [*done, job("demo-evaluation", "evaluation", "complete")]
    pods = [*done_pods, pod("e-1", "evaluation", "Succeeded", json.dumps(EVALUATION))]
    plan, _ = step(obj, jobs=finished, pods=pods, deployment=ready, service={"metadata": {}})
    assert plan.status.phase == Phase.SUCCEEDED
    admitted = condition(plan, "Admitted")
    assert admitted.status == "True" and "queue gpu" in admitted.message
