"""One reconcile of one run: fetch, call the pure core, apply. Used by the kopf handlers and the tests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from reasoning_operator.api import Stage

from . import metrics
from .core.decide import Event, Plan, decide
from .core.invalid import invalid_spec_status
from .core.observe import observe
from .core.rejection import CHILD_REJECTED, rejected_status, transient_status
from .core.run import Run
from .kube import Kube, TransientApiError, failure_of

log = logging.getLogger(__name__)


def reconcile(kube: Kube, namespace: str, name: str, now: datetime | None = None) -> Plan | None:
    obj = kube.get_run(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
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
        log_tail = None
        training_pods = [
            p
            for p in children.pods
            if p["metadata"]["labels"].get("reasoning-operator.dev/stage") == Stage.TRAINING.value
        ]
        running = [p for p in training_pods if (p.get("status") or {}).get("phase") == "Running"]
        if running:
            log_tail = kube.log_tail(namespace, running[-1]["metadata"]["name"])
        observed = observe(
            claim=children.claim,
            config_map=children.config_map,
            jobs=children.jobs,
            pods=children.pods,
            deployment=children.deployment,
            service=children.service,
            training_log_tail=log_tail,
            job_events=children.job_events,
        )
        plan = decide(run, observed, moment)
        rejection = kube.execute_children(plan)
        if rejection is not None:
            # Refused again on every retry: fail once, name the child, stop asking (a failed run plans nothing).
            plan.status = rejected_status(plan.status, rejection, moment, run.ref.generation)
            plan.events = [Event("Warning", CHILD_REJECTED, rejection.message())]
            plan.ops, plan.delete = [], []
        if kube.execute(run, plan, old_status):
            log.info("%s/%s: phase %s (%s)", namespace, name, plan.status.phase, plan.status.progress)
    metrics.observe_status(namespace, name, plan.status)
    return plan


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
