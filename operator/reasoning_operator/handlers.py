"""The kopf shell: every handler only finds the run, and calls `reconcile` (fetch -> core -> apply).

Level-triggered: watch events on runs and their children make it prompt, and one operator-wide resync loop
makes it certain (and reads training progress, which changes without any watch event). Handlers return
nothing (kopf would store return values in status) and kopf keeps no state of its own on our objects: no
on.create/on.update (no progress or diff-base annotations) and no per-object timers (kopf would add a
finalizer, and a run could not be deleted while the operator is down)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import kopf

from reasoning_operator.api import GROUP, PLURAL, VERSION

from . import metrics
from .core.run import MANAGED_BY, RUN_LABEL
from .kube import Kube, load_config
from .reconcile import note_transient_failure, reconcile

log = logging.getLogger(__name__)
RESYNC_SECONDS = float(os.environ.get("REASONING_RESYNC_SECONDS", "10"))
CHILD_FILTER: Mapping[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    RUN_LABEL: kopf.PRESENT,
}


class _Shell:
    """The API client and per-run locks: plumbing, not state (everything is re-read from the cluster)."""

    kube: Kube | None = None
    locks: ClassVar[defaultdict[tuple[str, str], threading.Lock]] = defaultdict(threading.Lock)
    guard: ClassVar[threading.Lock] = threading.Lock()
    #: Failed reconciles in a row per run, only to know when to raise the Stalled condition.
    failures: ClassVar[defaultdict[tuple[str, str], int]] = defaultdict(int)


def _reconcile(namespace: str | None, name: str | None) -> None:
    if not namespace or not name or _Shell.kube is None:
        return
    with _Shell.guard:
        lock = _Shell.locks[(namespace, name)]
    with lock:
        try:
            reconcile(_Shell.kube, namespace, name)
        except Exception as err:
            metrics.RECONCILE_ERRORS.labels(namespace, name, type(err).__name__).inc()
            log.exception("reconcile of %s/%s failed", namespace, name)
            _Shell.failures[(namespace, name)] += 1
            note_transient_failure(_Shell.kube, namespace, name, err, _Shell.failures[(namespace, name)])
            raise kopf.TemporaryError(f"reconcile failed: {err}", delay=5) from err
        _Shell.failures.pop((namespace, name), None)


class ForeverBackoffs:
    """kopf's API retry delays: its default schedule, then every 30 s for as long as the apiserver is away.

    kopf's default gives up after ~54 s and escalates, and the operator process exits (in a cluster: a crash
    loop through every apiserver outage longer than that). A fresh iterator per request, never exhausted."""

    def __iter__(self) -> Iterator[float]:
        yield from (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
        yield from itertools.repeat(30.0)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # our own Events, one per stage transition
    settings.scanning.disabled = True  # no CRD/namespace scans: least-privilege RBAC, and no start-up delay
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 60
    settings.networking.error_backoffs = ForeverBackoffs()  # wait out apiserver outages, never exit on them
    settings.execution.max_workers = int(os.environ.get("REASONING_WORKERS", "8"))
    _Shell.kube = Kube(load_config(os.environ.get("KUBECONFIG")))
    port = int(os.environ.get("REASONING_METRICS_PORT", "0"))
    if port:
        metrics.serve(port, addr=os.environ.get("REASONING_METRICS_ADDR", "0.0.0.0"))


@kopf.on.event(GROUP, VERSION, PLURAL)
def run_event(namespace: str | None, name: str | None, type: str | None, **_: Any) -> None:
    if type == "DELETED":
        if namespace and name:
            metrics.forget(namespace, name)
        return
    _reconcile(namespace, name)


def _resync_all() -> None:
    if _Shell.kube is None:
        return
    namespaces = [n for n in os.environ.get("REASONING_NAMESPACES", "").split(",") if n]
    for namespace, name in _Shell.kube.list_runs(namespaces or None):
        with contextlib.suppress(kopf.TemporaryError):  # counted and logged in _reconcile; next pass retries
            _reconcile(namespace, name)


async def _resync_loop() -> None:
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            await asyncio.to_thread(_resync_all)
        except Exception:
            log.exception("resync pass failed")


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo.resync = asyncio.get_running_loop().create_task(_resync_loop())


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


def _owner_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    _reconcile(namespace, labels.get(RUN_LABEL))


for _group, _version, _plural in (
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
):
    kopf.on.event(_group, _version, _plural, labels=CHILD_FILTER, id=f"child-{_plural}")(_owner_event)
