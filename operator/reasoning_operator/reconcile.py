"""One reconcile of one run: fetch, call the pure core, apply. Used by the kopf handlers and the tests.

`Memo` remembers, per run, the inputs of the last reconcile that changed nothing: the run's and its cached
children's resourceVersions, and until when time alone changes nothing. decide() is pure, so a check with
the same inputs gives the same (empty) plan, and the periodic pass skips it: an idle operator costs nothing
per waiting run. Anything read outside the caches is never memoised (a training log), or only until it is due
to be read again (a curation log, a podless Job's FailedCreate events)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from reasoning_operator.api import Stage, StagePhase, seconds_between, timestamp

from . import metrics
from .core import stage_cache
from .core.decide import Event, Plan, decide
from .core.invalid import invalid_spec_status
from .core.observe import observe
from .core.rejection import CHILD_REJECTED, rejected_status, transient_status
from .core.run import STAGE_LABEL, Run
from .kube import Kube, TransientApiError, failure_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    run_version: str
    children: tuple[tuple[str, str, str], ...]
    until: datetime | None  # None: no deadline ahead


class Memo:
    """Inputs of each run's last reconcile that changed nothing (a cache of a pure function's answer)."""

    def __init__(self) -> None:
        self._inputs: dict[tuple[str, str], Inputs] = {}
        self._lock = threading.Lock()

    def unchanged(self, key: tuple[str, str], run_version: str | None, children: Any, now: datetime) -> bool:
        with self._lock:
            last = self._inputs.get(key)
        return (
            last is not None
            and run_version == last.run_version
            and children == last.children
            and (last.until is None or now < last.until)
        )

    def record(self, key: tuple[str, str], inputs: Inputs | None) -> None:
        with self._lock:
            if inputs is None:
                self._inputs.pop(key, None)
            else:
                self._inputs[key] = inputs

    def forget(self, key: tuple[str, str]) -> None:
        self.record(key, None)


def reconcile(
    kube: Kube, namespace: str, name: str, now: datetime | None = None, memo: Memo | None = None
) -> Plan | None:
    children_before = kube.cache.fingerprint(namespace, name) if kube.cache is not None else None
    obj = kube.get_run(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        if memo is not None:
            memo.forget((namespace, name))
        return None
    moment = now or datetime.now(UTC)
    old_status: dict[str, Any] = obj.get("status") or {}
    try:
        run = Run.from_object(obj)
    except ValidationError as err:
        status = invalid_spec_status(obj, err, moment)
        if status != old_status:
            kube.patch_status(namespace, name, status)
        return None
    with metrics.RECONCILE_SECONDS.time():
        children = kube.children(run)
        # Progress lines: the running training pod's, and the curation pod's (the single-pod Job's, or on a
        # KubeRay cluster the RayJob's submitter, which follows the driver's log; not a Ray head or worker).
        running = _running_pods(children.pods, Stage.TRAINING)
        log_tail = kube.log_tail(namespace, running[-1]["metadata"]["name"]) if running else None
        curation_pods = _running_pods(children.pods, Stage.CURATION)
        curating = [p for p in curation_pods if RAY_NODE_LABEL not in p["metadata"]["labels"]]
        # A curation pod that has just started has printed no block yet: its first read waits (runs started at
        # once would otherwise cost one log request each as their pods come up).
        started = (curating[-1].get("status") or {}).get("startTime") if curating else None
        ran = seconds_between(started, timestamp(moment))  # None: start unknown, read now
        read_curation = bool(curating) and (ran is None or ran >= CURATION_FIRST_LOG.total_seconds())
        curation_log = kube.log_tail(namespace, curating[-1]["metadata"]["name"], lines=50) if read_curation else None
        # spec.cache: other runs' status is read outside the caches, so such a check is never memoised (a run
        # waiting for another's stage output sees it finish on the next resync). A RayJob is not watched: its
        # status changes reach no fingerprint, so such a run is not memoised either.
        may_reuse = _may_reuse(run, children.jobs)
        uncached = bool(running or children.workloads or children.ray_jobs or kube.cache is None or may_reuse)
        observed = observe(
            claim=children.claim,
            config_map=children.config_map,
            jobs=children.jobs,
            pods=children.pods,
            deployment=children.deployment,
            service=children.service,
            training_log_tail=log_tail,
            curation_log_tail=curation_log,
            job_events=children.job_events,
            ray_jobs=children.ray_jobs,
            workloads=children.workloads,
            namespace_runs=kube.runs_in(namespace) if may_reuse else None,
        )
        plan = decide(run, observed, moment)
        rejection, wrote = kube.execute_children(plan)
        if rejection is not None:
            # Refused again on every retry: fail once, name the child, stop asking (a failed run plans nothing).
            plan.status = rejected_status(plan.status, rejection, moment, run.ref.generation)
            plan.events = [Event("Warning", CHILD_REJECTED, rejection.message())]
            plan.ops, plan.delete = [], []
        changed = kube.execute(run, plan, old_status)
        if changed:
            log.info("%s/%s: phase %s (%s)", namespace, name, plan.status.phase, plan.status.progress)
    metrics.observe_status(namespace, name, plan.status)
    if memo is not None:
        still = not (changed or wrote or plan.delete or uncached or rejection is not None)
        version = str(obj["metadata"].get("resourceVersion"))
        until = plan.recheck_at
        if curating:  # its blocks move in its log, which no watch sees: read it again after a while
            # ran is known when the read waits: the first read is due that much later
            wait = CURATION_LOG_SECONDS if read_curation else CURATION_FIRST_LOG - timedelta(seconds=ran or 0)
            until = _sooner(until, moment + wait)
        if children.events_due is not None:  # a Job waiting for its pod: its FailedCreate events are read then
            until = _sooner(until, moment + timedelta(seconds=children.events_due))
        memo.record((namespace, name), Inputs(version, children_before or (), until) if still else None)
    return plan


def _sooner(until: datetime | None, again: datetime) -> datetime:
    return again if until is None else min(until, again)


#: How long an otherwise unchanged curating run goes without its log being read again (its block progress):
#: unlike training's, which is read on every reconcile, so that runs waiting in curation at scale cost one
#: log read each per this period, not one per resync.
CURATION_LOG_SECONDS = timedelta(seconds=30)
#: How long a curation pod runs before its log is first read.
CURATION_FIRST_LOG = timedelta(seconds=10)


#: KubeRay's label on a Ray head or worker pod (its value: head, worker).
RAY_NODE_LABEL = "ray.io/node-type"


def _running_pods(pods: list[dict[str, Any]], stage: Stage) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if p["metadata"]["labels"].get(STAGE_LABEL) == stage.value and (p.get("status") or {}).get("phase") == "Running"
    ]


def _may_reuse(run: Run, jobs: list[dict[str, Any]]) -> bool:
    """Whether another run's status could still spare this one a stage: spec.cache, and a cached stage
    neither finished nor with a Job of its own."""
    started = {(j.get("metadata") or {}).get("labels", {}).get(STAGE_LABEL) for j in jobs}
    return stage_cache.enabled(run) and any(
        run.status.stages.get(stage).phase != StagePhase.SUCCEEDED and stage.value not in started
        for stage in stage_cache.CACHED_STAGES
    )


def note_transient_failure(kube: Kube, namespace: str, name: str, err: Exception, attempts: int) -> None:
    """After a few failed reconciles in a row, say so in Stalled (best effort: the apiserver may be down)."""
    try:
        obj = kube.get_run(namespace, name)
        if obj is None:
            return
        run = Run.from_object(obj)
        failure = err.failure if isinstance(err, TransientApiError) else failure_of(err)
        status = transient_status(run.status, failure, attempts, datetime.now(UTC), run.ref.generation)
        if status is not None:
            kube.patch_status(namespace, name, status.model_dump(mode="json", by_alias=True))
    except Exception as again:  # the apiserver is still away: the log and the metric say it
        log.debug("could not record the transient failure of %s/%s: %s", namespace, name, again)
