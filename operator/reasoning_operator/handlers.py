"""The kopf shell: kopf watches the runs; the children come from watch-fed caches (cache.py); every event
only queues the run it concerns, and a pool of workers reconciles queued runs (fetch -> core -> apply),
one run never twice at once (workqueue.py).

Level-triggered: events make it prompt, and one operator-wide resync pass every resyncSeconds queues every
run that is not finished, so each is checked at least that often (and training progress, which changes
without any watch event, is read). A finished run gets no periodic work: only its children's events wake
it. A check whose inputs are unchanged is a memo hit (reconcile.Memo). Handlers return nothing (kopf would
store return values in status) and kopf keeps no state of its own on our objects: no on.create/on.update
(no progress or diff-base annotations) and no per-object timers (kopf would add a finalizer, and a run
could not be deleted while the operator is down)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import kopf
from aiohttp import web

from reasoning_operator.api import GROUP, PLURAL, VERSION

from . import metrics
from .cache import ChildCache, RunStore
from .kube import Kube, load_config
from .reconcile import Memo, note_transient_failure, reconcile
from .settings import OperatorSettings
from .shards import ALL, Shard
from .workqueue import EVENT, NEW, RESYNC, WorkQueue

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
TERMINAL = ("Succeeded", "Failed")
Key = tuple[str, str]


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff-base of every event's body (a deep copy of all of it, status and managedFields
    included) to detect changes for on.create/on.update handlers. This operator has none, so that copy was
    pure cost: about a third of its CPU in a burst of new runs (py-spy). An empty essence instead."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _Shell:
    """The API client, caches, queue and workers: plumbing, not state (everything is re-read from the
    cluster, and rebuilt from it after a restart)."""

    settings: OperatorSettings | None = None
    #: the runs this process reconciles (all of them unless `shards` > 1)
    shard: Shard = ALL
    #: a shard's socket for its /healthz, /readyz and /metrics, which the supervisor asks (shards.py)
    internal: socket.socket | None = None
    kube: Kube | None = None
    cache: ChildCache | None = None
    #: the runs' newest bodies from kopf's watch (and our status writes): a reconcile's first read
    runs = RunStore()
    queue: WorkQueue[Key] = WorkQueue()
    memo = Memo()
    #: resourceVersion and phase of each run as its last watch event showed it.
    seen: ClassVar[dict[Key, tuple[str, str]]] = {}
    #: Failed reconciles in a row per run, only to know when to raise the Stalled condition.
    failures: ClassVar[dict[Key, int]] = {}
    workers: ClassVar[list[threading.Thread]] = []


def _reconcile(namespace: str | None, name: str | None) -> None:
    """One check of one run: a memo hit when nothing it depends on changed, else a full reconcile."""
    if not namespace or not name or _Shell.kube is None:
        return
    key = (namespace, name)
    version = _Shell.seen.get(key, ("", ""))[0] or None
    cache = _Shell.cache
    if cache is not None and _Shell.memo.unchanged(key, version, cache.fingerprint(*key), datetime.now(UTC)):
        metrics.RECONCILES.labels("unchanged").inc()
        return
    try:
        reconcile(_Shell.kube, namespace, name, memo=_Shell.memo)
    except Exception as err:
        metrics.RECONCILES.labels("error").inc()
        metrics.RECONCILE_ERRORS.labels(namespace, name, type(err).__name__).inc()
        log.exception("reconcile of %s/%s failed", namespace, name)
        _Shell.failures[key] = _Shell.failures.get(key, 0) + 1
        note_transient_failure(_Shell.kube, namespace, name, err, _Shell.failures[key])
        _Shell.queue.add_after(key, RETRY_SECONDS)
        return
    metrics.RECONCILES.labels("full").inc()
    _Shell.failures.pop(key, None)


def _work() -> None:
    queue = _Shell.queue
    while (key := queue.get()) is not None:
        try:
            _reconcile(*key)
        finally:
            queue.done(key)
            metrics.QUEUE_DEPTH.set(len(queue))


#: A child's events within this many seconds of the first are one reconcile of its run: a new run's Job and pod
#: bring about six events in the first seconds, each a reconcile of the run before.
COALESCE_SECONDS = 1.0


def _child_changed(namespace: str, run: str) -> None:
    _Shell.queue.add_coalesced((namespace, run), COALESCE_SECONDS)


class ForeverBackoffs:
    """kopf's API retry delays: its default schedule, then every 30 s for as long as the apiserver is away.

    kopf's default gives up after ~54 s and escalates, and the operator process exits (in a cluster: a crash
    loop through every apiserver outage longer than that). A fresh iterator per request, never exhausted."""

    def __iter__(self) -> Iterator[float]:
        yield from (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
        yield from itertools.repeat(30.0)


def configure(settings: OperatorSettings, shard: Shard = ALL, internal: socket.socket | None = None) -> None:
    """The settings `reasoning operator` built from its flags and the environment; before kopf starts."""
    _Shell.settings, _Shell.shard, _Shell.internal = settings, shard, internal


def _settings() -> OperatorSettings:
    """Those settings; from the environment alone when kopf runs this module without `reasoning operator`."""
    if _Shell.settings is None:
        _Shell.settings = OperatorSettings()
    return _Shell.settings


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our own Events, one per stage transition
    settings.persistence.diffbase_storage = NoDiffBase()  # no change-detecting handlers: nothing to diff
    settings.scanning.disabled = True  # no CRD/namespace scans: least-privilege RBAC, and no start-up delay
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 60
    settings.networking.error_backoffs = ForeverBackoffs()  # wait out apiserver outages, never exit on them
    config = _settings()
    # Reconciles and watches get their own connection pools: a long watch never holds a reconcile's slot.
    _Shell.cache = ChildCache(
        load_config(config.kubeconfig, pool_size=4), config.watched, _child_changed, owns=_Shell.shard.owns
    )
    _Shell.kube = Kube(load_config(config.kubeconfig, pool_size=config.workers + 4), _Shell.cache, _Shell.runs)
    _Shell.cache.start()
    if _Shell.internal is not None:  # a shard: the supervisor serves the ports and asks this socket
        memo.health = await _serve_health(web.SockSite, sock=_Shell.internal, with_metrics=True)
    elif config.metrics_port:
        metrics.serve(config.metrics_port, addr=config.metrics_addr)
    # The workers start once every cache has its first list: before, a run would look as if it had no child.
    memo.starter = asyncio.get_running_loop().create_task(asyncio.to_thread(_start_workers))
    memo.resync = asyncio.get_running_loop().create_task(_resync_loop())
    if config.health_port and _Shell.internal is None:
        memo.health = await _serve_health(web.TCPSite, host=config.health_addr, port=config.health_port)


def _start_workers() -> None:
    if _Shell.cache is not None:
        _Shell.cache.wait_synced()
    for i in range(_settings().workers):
        worker = threading.Thread(target=_work, name=f"reconcile-{i}", daemon=True)
        worker.start()
        _Shell.workers.append(worker)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def run_event(
    namespace: str | None, name: str | None, type: str | None, body: kopf.Body, event: kopf.RawEvent, **_: Any
) -> None:
    if not namespace or not name or not _Shell.shard.owns(namespace, name):
        return
    key = (namespace, name)
    if type == "DELETED":
        _Shell.runs.forget(namespace, name)
        _Shell.seen.pop(key, None)
        _Shell.memo.forget(key)
        _Shell.failures.pop(key, None)
        metrics.forget(namespace, name)
        return
    version = str(body.get("metadata", {}).get("resourceVersion") or "")
    phase = str((body.get("status") or {}).get("phase") or "")
    first = key not in _Shell.seen and not phase
    _Shell.seen[key] = (version, phase)
    raw = event.get("object")
    if isinstance(raw, dict):
        _Shell.runs.offer(cast(dict[str, Any], raw))
    _Shell.queue.add(key, NEW if first else EVENT)


def _resync_all() -> int:
    """Queue every run that is not finished, behind the events (finished runs wait for their children's).
    A run still waiting from the previous pass moves up to the events' priority, so that a steady stream
    of events cannot hold any run back for more than about two passes."""
    queued = 0
    for key, (_, phase) in list(_Shell.seen.items()):
        if phase not in TERMINAL:
            waiting = _Shell.queue.waiting_at(key)
            _Shell.queue.add(key, EVENT if waiting == RESYNC else RESYNC)
            queued += 1
    metrics.QUEUE_DEPTH.set(len(_Shell.queue))
    return queued


async def _resync_loop() -> None:
    while True:
        await asyncio.sleep(_settings().resync_seconds)
        try:
            _resync_all()
        except Exception:
            log.exception("resync pass failed")


async def _serve_health(site: Any, *, with_metrics: bool = False, **where: Any) -> web.AppRunner:
    """/healthz (liveness): the event loop answers and every worker and cache thread runs; it stays 200
    while the apiserver is away, so the kubelet does not restart an operator that only waits.
    /readyz (readiness): the caches are synced and the apiserver answered the last time it was asked."""

    async def healthz(_: web.Request) -> web.Response:
        workers = sum(t.is_alive() for t in _Shell.workers)
        caches = _Shell.cache is not None and _Shell.cache.alive()
        ok = caches and (workers == _settings().workers or not _Shell.workers)
        return web.json_response({"workers": workers, "caches": caches}, status=200 if ok else 500)

    async def readyz(_: web.Request) -> web.Response:
        cache = _Shell.cache
        if cache is None or not cache.synced:
            return web.json_response({"ready": False, "reason": "caches not synced"}, status=503)
        health = cache.health
        body: dict[str, Any] = {"ready": health.reachable, "queued": len(_Shell.queue)}
        if not health.reachable:
            body["reason"] = f"apiserver unreachable for {time.monotonic() - health.since:.0f} s: {health.last_error}"
        return web.json_response(body, status=200 if health.reachable else 503)

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    if with_metrics:
        app.add_routes([web.get("/metrics", scrape)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await site(runner, **where).start()
    return runner


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for name in ("resync", "starter"):
        task = memo.get(name)
        if task is not None:
            task.cancel()
    if memo.get("health") is not None:
        await memo.health.cleanup()
    _Shell.queue.close()
    if _Shell.cache is not None:
        _Shell.cache.stop()
