"""What a reconcile no longer spends CPU on must not change what it does: kopf's diff-base is off
(handlers.NoDiffBase), safe only while no handler needs it; a spec text is validated once (core.run); a
curation pod's log is first read once it has run a while; a podless Job's FailedCreate events are read once per
period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import pytest
from pydantic import ValidationError

from reasoning_operator import handlers
from reasoning_operator import kube as kube_module
from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.core import run as run_module
from reasoning_operator.core.run import STAGE_LABEL
from reasoning_operator.kube import Children, Kube
from reasoning_operator.reconcile import CURATION_FIRST_LOG, Memo, reconcile


def test_no_registered_handler_detects_changes_so_an_empty_diff_base_loses_nothing() -> None:
    registry = kopf.get_default_registry()
    run = kopf.Resource(GROUP, VERSION, PLURAL)
    assert registry._watching.has_handlers(resource=run)  # kopf.on.event: the one handler
    assert not registry._changing.has_handlers(resource=run)  # on.create/update/resume/delete
    assert not registry._spawning.has_handlers(resource=run)  # daemons, timers
    storage = handlers.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "r"}, "spec": {"model": {"name": "x"}}, "status": {}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None


def test_a_spec_is_validated_once_per_text_and_an_invalid_one_is_never_cached() -> None:
    """Run.from_object reuses the model of a spec text seen before (the same text validates the same), and a
    changed text is validated afresh."""
    first = run_module.parsed_spec({"model": {"name": "m-a"}})
    assert run_module.parsed_spec({"model": {"name": "m-a"}}) is first
    other = run_module.parsed_spec({"model": {"name": "m-b"}})
    assert other is not first and other.model.name == "m-b"
    with pytest.raises(ValidationError):
        run_module.parsed_spec({"model": {"name": "m-a"}, "nonsense": 1})
    with pytest.raises(ValidationError):  # still raises: a failure leaves nothing behind
        run_module.parsed_spec({"model": {"name": "m-a"}, "nonsense": 1})


class _CuratingKube:
    """Kube's read side for one run whose curation pod is Running: what reconcile asks, and which logs."""

    def __init__(self, obj: dict[str, Any], started: str) -> None:
        self.cache = self  # children come from "caches": a quiet reconcile may be memoised
        self.obj = obj
        self.logs_read: list[str] = []
        job = {"metadata": {"name": "demo-curation", "labels": {STAGE_LABEL: "curation"}}, "status": {"active": 1}}
        pod = {
            "metadata": {"name": "demo-curation-x", "labels": {STAGE_LABEL: "curation"}},
            "status": {"phase": "Running", "startTime": started},
        }
        self.children_ = Children(None, None, [job], [pod], None, None, [])

    def fingerprint(self, namespace: str, name: str) -> tuple[()]:
        return ()

    def get_run(self, namespace: str, name: str) -> dict[str, Any]:
        return self.obj

    def children(self, run: Any) -> Children:
        return self.children_

    def log_tail(self, namespace: str, pod: str, lines: int = 20) -> str:
        self.logs_read.append(pod)
        return '{"blocksDone":1,"blocksTotal":4}\n'

    def execute_children(self, plan: Any) -> tuple[None, bool]:
        return None, False

    def execute(self, run: Any, plan: Any, old_status: dict[str, Any]) -> bool:
        return False


def test_a_curation_pod_just_started_is_not_asked_for_its_log_until_it_has_run_a_while(make_run: Any) -> None:
    """Runs created at once would otherwise cost one log request each as their pods come up, before any block
    could be done; the memo then holds the run until the first read is due."""
    obj = make_run()
    obj["status"] = {"phase": "Curating"}
    obj["metadata"]["resourceVersion"] = "7"
    start = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    kube = _CuratingKube(obj, "2026-12-03T12:00:00Z")
    memo = Memo()
    plan = reconcile(cast(Kube, kube), "default", "demo", now=start + timedelta(seconds=3), memo=memo)
    assert plan is not None and kube.logs_read == []
    assert plan.status.curation_progress is None or plan.status.curation_progress.blocks_total == 0
    version, children = "7", ()
    assert memo.unchanged(("default", "demo"), version, children, start + timedelta(seconds=9))
    assert not memo.unchanged(("default", "demo"), version, children, start + CURATION_FIRST_LOG)  # read due
    plan = reconcile(cast(Kube, kube), "default", "demo", now=start + CURATION_FIRST_LOG, memo=memo)
    assert kube.logs_read == ["demo-curation-x"]
    assert plan is not None and plan.status.curation_progress is not None
    assert (plan.status.curation_progress.blocks_done, plan.status.curation_progress.blocks_total) == (1, 4)


class _CountingRest:
    """Kube's REST side for FailedCreate reads: counts them, answers with what `events` holds."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.events: list[dict[str, Any]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.paths.append(path)
        return {"items": self.events}


def test_a_job_waiting_for_its_pod_has_its_failed_creates_read_once_per_period(monkeypatch: Any) -> None:
    """In a burst, Jobs wait for their pods through several reconciles each: one read of their FailedCreate
    events stands for FAILED_CREATE_EVERY seconds (a refused pod is still reported, at most that much later)."""
    clock = [1000.0]
    monkeypatch.setattr(kube_module.time, "monotonic", lambda: clock[0])
    kube = Kube.__new__(Kube)
    rest = _CountingRest()
    kube.rest = rest  # type: ignore[assignment]
    kube._failed_reads, kube._failed_lock = kube_module.OrderedDict(), kube_module.threading.Lock()
    old = (datetime.now(UTC) - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    young = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    waiting = {"metadata": {"name": "r-curation", "uid": "j1", "creationTimestamp": old}, "status": {}}
    just_made = {"metadata": {"name": "r2-curation", "uid": "j2", "creationTimestamp": young}, "status": {}}
    running = {"metadata": {"name": "r3-curation", "uid": "j3", "creationTimestamp": old}, "status": {"active": 1}}
    assert kube._failed_creates("ns", [waiting, just_made, running]) == []
    assert len(rest.paths) == 1 and rest.paths[0].endswith("/namespaces/ns/events")
    due = kube.failed_creates_due([waiting, just_made, running])
    assert due is not None and 0 < due <= kube_module.FAILED_CREATE_AFTER  # the young Job's first read
    assert kube.failed_creates_due([waiting]) == kube_module.FAILED_CREATE_EVERY
    assert kube.failed_creates_due([running]) is None
    rest.events = [{"reason": "FailedCreate", "message": "forbidden: violates PodSecurity"}]
    clock[0] += kube_module.FAILED_CREATE_EVERY - 1
    assert kube._failed_creates("ns", [waiting]) == []  # the last read still stands
    assert len(rest.paths) == 1
    clock[0] += 1
    found = kube._failed_creates("ns", [waiting])
    assert len(rest.paths) == 2 and [e["message"] for e in found] == ["forbidden: violates PodSecurity"]
    assert kube._failed_creates("ns", [waiting]) == found  # what the read found stands too
    assert len(rest.paths) == 2
    kube._failed_creates("ns", [{**waiting, "status": {"active": 1}}])  # it got its pod: forgotten
    assert "j1" not in kube._failed_reads


def test_a_run_whose_job_waits_for_its_pod_is_memoised_until_its_failed_creates_are_due(make_run: Any) -> None:
    obj = make_run()
    obj["status"] = {"phase": "Curating"}
    obj["metadata"]["resourceVersion"] = "7"
    kube = _CuratingKube(obj, "2026-12-03T12:00:00Z")
    job = {"metadata": {"name": "demo-curation", "labels": {STAGE_LABEL: "curation"}}, "status": {}}
    kube.children_ = Children(None, None, [job], [], None, None, [], events_due=4.0)
    memo, start = Memo(), datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    reconcile(cast(Kube, kube), "default", "demo", now=start, memo=memo)
    assert memo.unchanged(("default", "demo"), "7", (), start + timedelta(seconds=3.9))
    assert not memo.unchanged(("default", "demo"), "7", (), start + timedelta(seconds=4))
