"""Runs spread over operator processes, by a hash of namespace/name.

One kopf operator is one Python process: in a burst of new runs it runs flat out on one core (the GIL) while
the others idle. With `shards` > 1, `reasoning operator` forks that many operator processes once everything is
imported (the imported code stays shared), and each reconciles only the runs whose hash falls to it: kopf's
watch of the runs still reads every run's events in every process (a few per run), but the children's caches,
the queue, the reconciles and their requests are split. A run's name always hashes to the same shard, and
all shards start and stop together (one pod), so no run is ever reconciled by two processes.

The first process stays as supervisor: it serves the metrics (the shards' summed) and the health endpoints
(healthy only while every shard is), forwards SIGTERM, and exits as soon as any shard exits, so that a
kubelet restarts the whole pod: a lost shard is never silently missing."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import ClientSession, ClientTimeout, web

log = logging.getLogger(__name__)
#: The most shards `shards: 0` (one per usable CPU) picks.
AUTO_MAX = 8
PR_SET_PDEATHSIG = 1


def shard_of(namespace: str, name: str, count: int) -> int:
    """Stable across processes and restarts (Python's hash() is salted per process)."""
    return zlib.crc32(f"{namespace}/{name}".encode()) % count


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, namespace: str, name: str) -> bool:
        return self.count == 1 or shard_of(namespace, name, self.count) == self.index


#: One process reconciling every run.
ALL = Shard()


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, bounded by a cgroup v2 CPU quota (a container's limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def shard_count(requested: int) -> int:
    return requested if requested > 0 else min(AUTO_MAX, usable_cpus())


# -- in a shard ------------------------------------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """A shard must not outlive its supervisor (a SIGKILL cannot be forwarded): it would go on reconciling
    beside the operator that replaces it. Linux delivers SIGKILL on the parent's death; elsewhere, poll."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it died before prctl took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# -- the supervisor --------------------------------------------------------------------------------------------
@dataclass
class _Child:
    shard: Shard
    pid: int
    port: int  # its internal /healthz, /readyz and /metrics, on 127.0.0.1


def supervise(
    count: int,
    run_shard: Callable[[Shard, socket.socket], None],
    *,
    metrics: tuple[str, int] | None,
    health: tuple[str, int] | None,
) -> int:
    """Fork `count` shards, each calling `run_shard(shard, listener)` with a bound socket for its internal
    endpoints; serve the summed metrics and the health of all; return the exit code for the process.

    Must be called before any thread starts: fork copies only the calling thread."""
    parent = os.getpid()
    children: list[_Child] = []
    gc.freeze()  # what is imported so far stays shared: the collector would touch (and so copy) its pages
    for index in range(count):
        listener = socket.create_server(("127.0.0.1", 0))
        shard = Shard(index, count)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent(parent)
                run_shard(shard, listener)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException:
                log.exception("shard %d/%d failed", index, count)
            finally:
                logging.shutdown()
                os._exit(code)
        children.append(_Child(shard, pid, listener.getsockname()[1]))
        listener.close()
    log.info("operator supervising %d shards: %s", count, ", ".join(str(c.pid) for c in children))
    return asyncio.run(_supervise(children, metrics, health))


async def _supervise(children: list[_Child], metrics: tuple[str, int] | None, health: tuple[str, int] | None) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    exited: asyncio.Future[tuple[int, int]] = loop.create_future()

    def first_exit(pid: int, status: int) -> None:
        if not exited.done():
            exited.set_result((pid, status))

    def reap() -> None:  # the first shard to exit, for any reason
        pid, status = os.wait()
        loop.call_soon_threadsafe(first_exit, pid, status)

    threading.Thread(target=reap, name="reap", daemon=True).start()
    async with ClientSession(timeout=ClientTimeout(total=5)) as session:
        app = _app(children, session)
        runners = [await _serve(*where, app) for where in (metrics, health) if where is not None]
        stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
        await asyncio.wait([stop, cast("asyncio.Future[Any]", exited)], return_when=asyncio.FIRST_COMPLETED)
        code, gone = 0, set()
        if exited.done():
            pid, status = exited.result()
            code, gone = os.waitstatus_to_exitcode(status) or 1, {pid}
            which = next((c.shard.index for c in children if c.pid == pid), "?")
            log.error("shard %s (pid %d) exited with %d: stopping every shard", which, pid, code)
        stop.cancel()
        await _stop_all(children, gone)
        for runner in runners:
            await runner.cleanup()
    return code


async def _stop_all(children: list[_Child], gone: set[int], grace: float = 20.0) -> None:
    alive = [c for c in children if c.pid not in gone]
    for child in alive:
        _signal(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        alive = [c for c in alive if _running(c.pid)]
    for child in alive:
        _signal(child.pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _running(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _app(children: list[_Child], session: ClientSession) -> web.Application:
    async def ask(child: _Child, path: str) -> tuple[int, str]:
        try:
            async with session.get(f"http://127.0.0.1:{child.port}{path}") as response:
                return response.status, await response.text()
        except (TimeoutError, OSError) as err:
            return 0, f"{type(err).__name__}: {err}"

    async def each(path: str) -> list[tuple[int, str]]:
        return list(await asyncio.gather(*(ask(c, path) for c in children)))

    async def probe(request: web.Request) -> web.Response:
        answers = await each(request.path)
        ok = all(status == 200 for status, _ in answers)
        shards = zip(children, answers, strict=True)
        body = {"shards": [{"shard": c.shard.index, "status": s, "body": b[:500]} for c, (s, b) in shards]}
        return web.json_response(body, status=200 if ok else (500 if request.path == "/healthz" else 503))

    async def scrape(_: web.Request) -> web.Response:
        answers = await each("/metrics")
        if any(status != 200 for status, _ in answers):
            return web.Response(status=503, text="a shard did not answer\n")
        return web.Response(text=merge_metrics([text for _, text in answers]), content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/healthz", probe), web.get("/readyz", probe), web.get("/metrics", scrape)])
    return app


async def _serve(addr: str, port: int, app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, addr, port).start()
    return runner


def merge_metrics(texts: list[str]) -> str:
    """The shards' expositions as one: equal series (same name and labels) summed, which is right for
    every series here: the per-run ones live in exactly one shard, and counters, histograms and the queue
    depth add up across shards (a `_created` timestamp takes the earliest)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            series = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif sample.name.endswith("_created"):
                    series[key] = min(series[key], sample.value)
                else:
                    series[key] += sample.value
    for name, merged in families.items():
        for (sample_name, labels), value in values[name].items():
            merged.add_sample(sample_name, dict(labels), value)

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry).decode()
