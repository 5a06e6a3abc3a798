"""Watch-fed caches of the runs' children (informers): one list+watch per kind, filtered on the server by
the operator's managed-by label, so a reconcile reads its children from memory instead of listing them.

A view of the cluster, never state: rebuilt from a list on start and after any watch error, and an object
is cached only as the apiserver last reported it. Each change calls `on_change(namespace, run)` so that only
the run it concerns is reconciled. Objects are kept trimmed (no managedFields; no spec for Jobs and Pods,
whose status is all the operator reads, but a Job's spec.suspend) to keep memory flat at a thousand runs."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import client
from urllib3.exceptions import HTTPError

from .core.run import MANAGED_BY, RUN_LABEL
from .rest import RESOURCES, Query, Resource, Rest

log = logging.getLogger(__name__)
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{RUN_LABEL}"
#: Server-side watch timeout: the watch is reopened from the last version after it (cheap, no relist).
WATCH_SECONDS = 240
ERROR_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class KindSpec:
    kind: str
    keep_spec: bool

    @property
    def resource(self) -> Resource:
        return RESOURCES[self.kind]


KIND_SPECS = (
    KindSpec("Job", keep_spec=False),
    KindSpec("Pod", keep_spec=False),
    KindSpec("Deployment", keep_spec=True),
    KindSpec("Service", keep_spec=True),
    KindSpec("ConfigMap", keep_spec=True),
    KindSpec("PersistentVolumeClaim", keep_spec=False),
)


#: The spec fields kept of a kind whose spec is otherwise dropped.
KEPT_SPEC_KEYS = ("suspend",)


def trim(obj: dict[str, Any], keep_spec: bool) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if keep_spec:
        return {**obj, "metadata": meta}
    # A Job's spec.suspend is the one spec field the core reads (spec.suspend and Kueue hold a Job with it).
    kept = {k: v for k, v in (obj.get("spec") or {}).items() if k in KEPT_SPEC_KEYS}
    slim = {"kind": obj.get("kind"), "metadata": meta, "spec": kept, "status": obj.get("status")}
    return {k: v for k, v in slim.items() if v}


class Health:
    """Whether the apiserver answered the last time the informers asked (for /readyz and a gauge)."""

    def __init__(self) -> None:
        self.reachable = True
        self.since = time.monotonic()
        self.last_error: str | None = None

    def ok(self) -> None:
        if not self.reachable:
            log.info("the apiserver answers again")
            self.reachable, self.since = True, time.monotonic()

    def failed(self, err: Exception) -> None:
        self.last_error = f"{type(err).__name__}: {err}"[:300]
        if self.reachable:
            log.warning("the apiserver is unreachable: %s", self.last_error)
            self.reachable, self.since = False, time.monotonic()


class Informer(threading.Thread):
    """One kind in one namespace (or all): list, then watch from the list's version; relist on any error."""

    def __init__(
        self,
        api: client.ApiClient,
        spec: KindSpec,
        namespace: str | None,
        on_change: Callable[[str, str], None],
        health: Health,
        owns: Callable[[str, str], bool] = lambda namespace, run: True,
    ) -> None:
        super().__init__(name=f"informer-{spec.kind}-{namespace or 'all'}", daemon=True)
        self._rest = Rest(api)
        self._path = spec.resource.path(namespace)
        self.namespace = namespace
        self.spec = spec
        self.objects: dict[Key, dict[str, Any]] = {}
        self.by_run: defaultdict[Key, set[str]] = defaultdict(set)
        self.synced = threading.Event()
        self.lock = threading.Lock()
        self._on_change = on_change
        self._health = health
        self._owns = owns
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    # -- reads (any thread) --------------------------------------------------------------------------
    def of_run(self, namespace: str, run: str) -> list[dict[str, Any]]:
        with self.lock:
            return [self.objects[(namespace, n)] for n in sorted(self.by_run.get((namespace, run), ()))]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get((namespace, name))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                version = self._relist()
                self._health.ok()
                failures = 0
                while not self._stopped.is_set():
                    version = self._watch(version)
            except _ExpiredError:
                log.info("%s: watch expired, listing again", self.name)
            except (client.ApiException, HTTPError, OSError, ValueError) as err:
                self._health.failed(err)
                delay = ERROR_DELAYS[min(failures, len(ERROR_DELAYS) - 1)]
                failures += 1
                log.debug("%s: %s; again in %.1f s", self.name, err, delay)
                self._stopped.wait(delay)

    def _relist(self) -> str:
        body = self._rest.request("GET", self._path, query={"labelSelector": SELECTOR}, timeout=60)
        fresh = {
            (item["metadata"]["namespace"], item["metadata"]["name"]): trim(
                {"kind": self.spec.kind, **item}, self.spec.keep_spec
            )
            for item in body.get("items") or []
            if self._mine(self._run_key(item))
        }
        with self.lock:
            old = self.objects
            changed = {
                k
                for k in old.keys() | fresh.keys()
                if (old.get(k) or {}).get("metadata", {}).get("resourceVersion")
                != (fresh.get(k) or {}).get("metadata", {}).get("resourceVersion")
            }
            runs = {self._run_key(old.get(k) or fresh[k]) for k in changed}
            self.objects = fresh
            self.by_run = defaultdict(set)
            for (ns, name), obj in fresh.items():
                self.by_run[self._run_key(obj) or (ns, "")].add(name)
        was_synced = self.synced.is_set()
        self.synced.set()
        if was_synced:  # a relist after an error: what changed meanwhile concerns these runs
            for key in runs:
                if key is not None:
                    self._on_change(*key)
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        query: Query = {
            "labelSelector": SELECTOR,
            "watch": True,
            "resourceVersion": version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": WATCH_SECONDS,
        }
        response = self._rest.raw("GET", self._path, query=query, timeout=(10, WATCH_SECONDS + 30), stream=True)
        try:
            for line in _lines(response):
                event = orjson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _ExpiredError()
                    raise ValueError(f"watch error: {obj.get('message')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                self._apply(kind, trim({"kind": self.spec.kind, **obj}, self.spec.keep_spec))
                if self._stopped.is_set():
                    break
        finally:
            response.release_conn()
        return version

    def put(self, obj: dict[str, Any]) -> None:
        """Our own write's answer, until the watch brings it: the next reconcile then knows the object exists
        (no second create answered 409, no second apply). Never replaces a newer version."""
        obj = trim({"kind": self.spec.kind, **obj}, self.spec.keep_spec)
        meta = obj["metadata"]
        key, run = (meta["namespace"], meta["name"]), self._run_key(obj)
        with self.lock:
            cached = self.objects.get(key)
            if cached is not None and not _older(cached, obj):
                return
            self.objects[key] = obj
            if run is not None:
                self.by_run[run].add(key[1])

    def _mine(self, run: Key | None) -> bool:
        """A child of a run this process reconciles (another shard's are neither kept nor announced)."""
        return run is None or self._owns(*run)

    def _apply(self, kind: str | None, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        run = self._run_key(obj)
        if not self._mine(run):
            return
        with self.lock:
            if kind == "DELETED":
                self.objects.pop(key, None)
                if run is not None:
                    self.by_run[run].discard(key[1])
                    if not self.by_run[run]:
                        del self.by_run[run]
            else:
                self.objects[key] = obj
                if run is not None:
                    self.by_run[run].add(key[1])
        if run is not None:
            self._on_change(*run)

    @staticmethod
    def _run_key(obj: dict[str, Any]) -> Key | None:
        meta = obj.get("metadata") or {}
        run = (meta.get("labels") or {}).get(RUN_LABEL)
        return (meta["namespace"], run) if run else None


def _older(cached: dict[str, Any], new: dict[str, Any]) -> bool:
    """etcd's resourceVersions are increasing integers (opaque to clients in principle: unknown → newer)."""
    try:
        return int(cached["metadata"]["resourceVersion"]) < int(new["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class RunStore:
    """The newest body of each run that kopf's watch or our own status write showed, so a reconcile starts
    from memory instead of a GET (one request in five of a new run's). Newer only, by resourceVersion: a
    late watch event never hides our own write, so no transition is seen twice. Our writes only update a
    run already here: one deleted meanwhile (its DELETED event forgot it) does not come back. Bodies are
    shared with kopf and never modified."""

    def __init__(self) -> None:
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get((namespace, name))

    def offer(self, obj: dict[str, Any]) -> None:
        """A watch event's body: kept unless an equal or newer one is."""
        self._keep(obj, insert=True)

    def update(self, obj: dict[str, Any]) -> None:
        """Our own write's answer: kept if the run is here and this is newer."""
        self._keep(obj, insert=False)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._bodies.pop((namespace, name), None)

    def _keep(self, obj: dict[str, Any], *, insert: bool) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name:
            return
        key = (str(namespace), str(name))
        with self._lock:
            cached = self._bodies.get(key)
            if cached is None and not insert:
                return
            # another uid: a namesake made after the one we held was deleted
            if cached is None or not _same_uid(cached, obj) or _older(cached, obj):
                self._bodies[key] = obj


def _same_uid(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("metadata", {}).get("uid") == b.get("metadata", {}).get("uid"))


class _ExpiredError(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(amt=65536, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from (line for line in lines if line.strip())
    if buffer.strip():
        yield buffer


def _each(namespaces: list[str] | None) -> list[str | None]:
    return [None] if not namespaces else list(namespaces)


class ChildCache:
    """The informers for every child kind over the watched namespaces (None: all)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespaces: list[str] | None,
        on_change: Callable[[str, str], None],
        owns: Callable[[str, str], bool] = lambda namespace, run: True,
    ) -> None:
        """`owns(namespace, run)`: whether this process reconciles the run (shards.Shard.owns)."""
        self.health = Health()
        self.informers: dict[str, list[Informer]] = {
            spec.kind: [Informer(api, spec, ns, on_change, self.health, owns) for ns in _each(namespaces)]
            for spec in KIND_SPECS
        }

    def start(self) -> None:
        for informers in self.informers.values():
            for informer in informers:
                informer.start()

    def stop(self) -> None:
        for informers in self.informers.values():
            for informer in informers:
                informer.stop()

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for informers in self.informers.values():
            for informer in informers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not informer.synced.wait(left):
                    return False
        return True

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for informers in self.informers.values() for i in informers)

    def alive(self) -> bool:
        return all(i.is_alive() for informers in self.informers.values() for i in informers)

    def _informer(self, kind: str, namespace: str) -> Informer:
        informers = self.informers[kind]
        if len(informers) == 1 and informers[0].namespace is None:
            return informers[0]
        return next(i for i in informers if i.namespace == namespace)

    def of_run(self, kind: str, namespace: str, run: str) -> list[dict[str, Any]]:
        return self._informer(kind, namespace).of_run(namespace, run)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._informer(kind, namespace).get(namespace, name)

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in self.informers:
            self._informer(kind, obj["metadata"]["namespace"]).put(obj)

    def fingerprint(self, namespace: str, run: str) -> tuple[tuple[str, str, str], ...]:
        """(kind, name, resourceVersion) of every cached child of the run: equal means nothing changed."""
        return tuple(
            (kind, o["metadata"]["name"], str(o["metadata"].get("resourceVersion")))
            for kind in self.informers
            for o in self.of_run(kind, namespace, run)
        )
