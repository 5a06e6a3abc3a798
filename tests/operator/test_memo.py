"""What lets an idle operator skip work: the applied-fields check, the memo of a quiet reconcile, and the
time at which a waiting stage's plan changes on its own (the progress deadline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reasoning_operator.core.decide import decide
from reasoning_operator.core.observe import observe
from reasoning_operator.core.run import Run
from reasoning_operator.kube import contains
from reasoning_operator.reconcile import Inputs, Memo

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def test_an_applied_object_with_the_apiservers_defaults_still_contains_what_we_apply() -> None:
    desired = {"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}, "spec": {"ports": [{"port": 1}]}}
    actual = {
        "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}, "uid": "u", "resourceVersion": "7"},
        "data": {"k": "v"},
        "spec": {"ports": [{"port": 1, "protocol": "TCP"}], "type": "ClusterIP"},
    }
    assert contains(desired, actual)


def test_a_changed_value_a_missing_key_or_another_list_length_needs_an_apply() -> None:
    base: dict[str, Any] = {"data": {"k": "v"}, "spec": {"ports": [{"port": 1}]}}
    assert not contains(base, {"data": {"k": "edited"}, "spec": {"ports": [{"port": 1}]}})
    assert not contains(base, {"data": {}, "spec": {"ports": [{"port": 1}]}})
    assert not contains(base, {"data": {"k": "v"}, "spec": {"ports": [{"port": 1}, {"port": 2}]}})


def test_the_memo_hits_only_on_the_same_run_version_children_and_before_the_deadline() -> None:
    memo = Memo()
    key = ("ns", "r")
    children = (("Job", "r-curation", "5"),)
    memo.record(key, Inputs("10", children, NOW + timedelta(seconds=60)))
    assert memo.unchanged(key, "10", children, NOW)
    assert not memo.unchanged(key, "11", children, NOW)  # the run changed (or our own status patch)
    assert not memo.unchanged(key, "10", (("Job", "r-curation", "6"),), NOW)  # a child changed
    assert not memo.unchanged(key, None, children, NOW)  # never seen by the watch
    assert not memo.unchanged(key, "10", children, NOW + timedelta(seconds=61))  # the deadline passed
    memo.forget(key)
    assert not memo.unchanged(key, "10", children, NOW)


def _waiting_run(make_run: Any, deadline: int) -> tuple[Run, Any]:
    obj = make_run(spec={"progressDeadlineSeconds": deadline})
    jobs = [
        {
            "metadata": {"name": "demo-curation", "labels": {"reasoning-operator.dev/stage": "curation"}},
            "status": {"active": 1},
        }
    ]
    pods = [
        {
            "metadata": {
                "name": "c-1",
                "creationTimestamp": "2026-11-27T11:59:00Z",
                "labels": {"reasoning-operator.dev/stage": "curation"},
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no"}],
            },
        }
    ]
    observed = observe(claim=None, config_map=None, jobs=jobs, pods=pods, deployment=None, service=None)
    return Run.from_object(obj), observed


def test_a_waiting_stage_says_when_its_deadline_runs_out_and_then_stalls(make_run: Any) -> None:
    run, observed = _waiting_run(make_run, deadline=300)
    plan = decide(run, observed, NOW)
    assert plan.recheck_at == datetime(2026, 11, 27, 12, 4, 0, tzinfo=UTC)  # pod created 11:59 + 300 s
    later = decide(run, observed, plan.recheck_at)
    assert any(c.type == "Stalled" and c.status == "True" for c in later.status.conditions)
    assert later.recheck_at is None  # stalled: nothing more changes with time alone


def test_a_progressing_run_has_no_deadline_ahead(make_run: Any) -> None:
    obj = make_run()
    plan = decide(
        Run.from_object(obj), observe(claim=None, config_map=None, jobs=[], pods=[], deployment=None, service=None), NOW
    )
    assert plan.recheck_at is None
