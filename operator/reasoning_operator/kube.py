"""The only module that writes to the apiserver: read a run and its children (from the watch-fed caches of
cache.py when given, else by listing), apply the plan, patch status, post events. One field manager,
server-side apply for what we own, create-if-absent for immutable children (Jobs, PVCs). Requests are plain
JSON over the client's own pool (rest.py)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from reasoning_operator.api import GROUP, KIND, PLURAL, VERSION, Stage, seconds_between, timestamp

from .cache import ChildCache, RunStore
from .core.decide import CREATE, Event, Plan
from .core.observe import WORKLOAD_JOB_UID_LABEL as JOB_UID_LABEL
from .core.rejection import ApiFailure, ChildRejection, parse_failure, stage_of
from .core.run import RUN_LABEL, STAGE_LABEL, Run
from .rest import APPLY_PATCH, MERGE_PATCH, RESOURCES, Resource, Rest

FIELD_MANAGER = "reasoning-operator"
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
log = logging.getLogger(__name__)

KINDS: dict[str, Resource] = {
    **RESOURCES,
    # spec.curation.cluster only (KubeRay's CRD must be installed): listed from the apiserver, not watched.
    "RayJob": Resource("ray.io/v1", "rayjobs"),
    "Workload": Resource(f"{KUEUE_GROUP}/{KUEUE_VERSION}", "workloads"),
    KIND: Resource(f"{GROUP}/{VERSION}", PLURAL),
}
#: (connect, read) seconds for one request: a connection the apiserver never answers must not hold a worker.
TIMEOUT = (10.0, 60.0)
#: Waits between attempts at one write that failed transiently (5xx, 429, 409, timeout): then the reconcile
#: gives up, the next one (event or resync) tries again and Stalled counts the failures.
RETRY_DELAYS = (0.5, 1.0, 2.0)


class TransientApiError(Exception):
    """A write kept failing on errors that may pass (the reconcile is retried later)."""

    def __init__(self, what: str, failure: ApiFailure) -> None:
        super().__init__(f"{what}: {failure.describe()}")
        self.failure = failure


def failure_of(err: Exception) -> ApiFailure:
    """Any client error as an ApiFailure: an ApiException's Status body, or a network error's text."""
    if isinstance(err, ApiException):
        return parse_failure(err.status, err.body, str(err.reason or ""))
    return parse_failure(None, None, f"{type(err).__name__}: {err}")


def with_retries(what: str, call: Callable[[], Any], delays: tuple[float, ...] = RETRY_DELAYS) -> Any:
    """Run one write; a refusal raises at once (ApiException), a transient failure is retried with backoff
    and then raises TransientApiError."""
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except (ApiException, HTTPError, OSError) as err:
            failure = failure_of(err)
            if failure.refused:
                raise
            if attempt == len(delays):
                raise TransientApiError(what, failure) from err
            log.warning("%s failed (%s), retrying in %.1f s", what, failure.describe(), delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def load_config(kubeconfig: str | None = None, pool_size: int = 16) -> client.ApiClient:
    """In-cluster config inside a pod, else the given or default kubeconfig. `pool_size` connections, so
    that concurrent reconciles do not queue for one (the client's default is 5 per core)."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("a kubeconfig was given")
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def contains(desired: Any, actual: Any) -> bool:
    """Whether every field of `desired` has that value in `actual` (which may hold more: the apiserver's
    defaults): an applied object that still contains what we apply needs no new apply."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(k in actual and contains(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(map(contains, desired, actual))
    return bool(desired == actual)


def _owned_by(obj: dict[str, Any], uids: set[str]) -> bool:
    return any(ref.get("uid") in uids for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


@dataclass
class Children:
    claim: dict[str, Any] | None
    config_map: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    deployment: dict[str, Any] | None
    service: dict[str, Any] | None
    job_events: list[dict[str, Any]]
    ray_jobs: list[dict[str, Any]] = field(default_factory=list)
    #: Kueue Workloads of this run's suspended Jobs (read only with a queue name; not cached).
    workloads: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds until a podless Job's FailedCreate events are next read (None: no Job waits for its pod).
    events_due: float | None = None


class Kube:
    """`cache`: watch-fed children (children() then reads memory, and a write that would change nothing is
    skipped); without one, every read goes to the apiserver."""

    def __init__(self, api: client.ApiClient, cache: ChildCache | None = None, runs: RunStore | None = None) -> None:
        self.api = api
        self.cache = cache
        self.runs = runs
        self.rest = Rest(api)
        #: The last FailedCreate read of each podless Job (by uid): monotonic time and what it found.
        self._failed_reads: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._failed_lock = threading.Lock()

    def _call(self, method: str, kind: str, namespace: str | None, name: str | None = None, **kwargs: Any) -> Any:
        sub = kwargs.pop("sub", None)
        return self.rest.request(method, KINDS[kind].path(namespace, name, sub), timeout=TIMEOUT, **kwargs)

    # -- reads -------------------------------------------------------------------------------------
    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The run as the watch (or our last status write) showed it; a GET when the store has none."""
        if self.runs is not None and (body := self.runs.get(namespace, name)) is not None:
            return body
        return self._get(KIND, namespace, name)

    def list_runs(self, namespaces: list[str] | None) -> list[tuple[str, str]]:
        """(namespace, name) of every run in the watched namespaces (all when None)."""
        scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
        listed = [self._call("GET", KIND, ns) for ns in scopes]
        return [(item["metadata"]["namespace"], item["metadata"]["name"]) for page in listed for item in page["items"]]

    def runs_in(self, namespace: str) -> list[dict[str, Any]]:
        """Every run of one namespace, whole (spec.cache reads the others' status)."""
        return self._items(KIND, namespace)

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call("GET", kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _items(self, kind: str, namespace: str, **query: str) -> list[dict[str, Any]]:
        """A list's items, each with its kind (a list's items carry none on the wire)."""
        page = self._call("GET", kind, namespace, query=query)
        return [{"kind": kind, **item} for item in page.get("items") or []]

    def _list(self, kind: str, namespace: str, run: str) -> list[dict[str, Any]]:
        return self._items(kind, namespace, labelSelector=f"{RUN_LABEL}={run}")

    def children(self, run: Run) -> Children:
        if self.cache is not None:
            return self._cached_children(run)
        ns, name = run.ref.namespace, run.ref.name
        serving = f"{name}-serving"
        jobs = self._list("Job", ns, name)
        return Children(
            claim=self._get("PersistentVolumeClaim", ns, run.claim_name),
            config_map=self._get("ConfigMap", ns, run.config_map_name),
            jobs=jobs,
            pods=self._list("Pod", ns, name),
            deployment=self._get("Deployment", ns, serving),
            service=self._get("Service", ns, serving),
            job_events=self._failed_creates(ns, jobs),
            ray_jobs=self._ray_jobs(run),
            workloads=self._workloads(run, jobs),
            events_due=self.failed_creates_due(jobs),
        )

    def _cached_children(self, run: Run) -> Children:
        """Only this run's own children (same owner uid): a deleted namesake's Jobs, which the garbage
        collector has not removed yet, must not count as this run's."""
        cache, ns, name = cast(ChildCache, self.cache), run.ref.namespace, run.ref.name
        mine = {run.ref.uid}
        jobs = [j for j in cache.of_run("Job", ns, name) if _owned_by(j, mine)]
        job_uids = {j["metadata"].get("uid") for j in jobs} - {None}
        # Stage pods belong to this run's Jobs; serving pods to a ReplicaSet of its Deployment (by label).
        ray_jobs = self._ray_jobs(run)
        pods = [
            p
            for p in cache.of_run("Pod", ns, name)
            if _owned_by(p, job_uids) or _is_serving(p) or _of_ray_job(p, ray_jobs)
        ]
        serving = f"{name}-serving"
        deployment = cache.get("Deployment", ns, serving)
        if deployment is not None and not _owned_by(deployment, mine):
            deployment = None
        service = cache.get("Service", ns, serving)
        config_map = cache.get("ConfigMap", ns, run.config_map_name)
        claim = None if run.spec.storage.existing_claim else cache.get("PersistentVolumeClaim", ns, run.claim_name)
        return Children(
            claim=claim,
            config_map=config_map if config_map is not None and _owned_by(config_map, mine) else None,
            jobs=jobs,
            pods=pods,
            deployment=deployment,
            service=service if service is not None and _owned_by(service, mine) else None,
            job_events=self._failed_creates(ns, jobs),
            ray_jobs=ray_jobs,
            workloads=self._workloads(run, jobs),
            events_due=self.failed_creates_due(jobs),
        )

    def _ray_jobs(self, run: Run) -> list[dict[str, Any]]:
        """The run's RayJob, read from the apiserver (no informer: KubeRay's CRD is optional), only for a run
        whose curation asks for a cluster; owned by this very run (not a deleted namesake's)."""
        if run.spec.curation.cluster is None:
            return []
        listed = self._list("RayJob", run.ref.namespace, run.ref.name)
        return [r for r in listed if _owned_by(r, {run.ref.uid})]

    def _failed_creates(self, namespace: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """FailedCreate events of Jobs that have no active pod: how a pod refused by the apiserver (Pod
        Security, quota, an invalid image) shows; the Job's own status says nothing about it. One read stands
        for FAILED_CREATE_EVERY seconds: in a burst, Jobs wait for their pods through several reconciles each."""
        events: list[dict[str, Any]] = []
        now = time.monotonic()
        for job in jobs:
            uid = _job_key(job)
            if not awaits_pod(job):
                with self._failed_lock:
                    self._failed_reads.pop(uid, None)
                continue
            if _age_seconds(job) < FAILED_CREATE_AFTER:
                continue  # a Job just created has not failed to create a pod yet: the next pass looks
            with self._failed_lock:
                last = self._failed_reads.get(uid)
            if last is not None and now - last[0] < FAILED_CREATE_EVERY:
                events += last[1]
                continue
            selector = f"involvedObject.kind=Job,involvedObject.name={job['metadata']['name']},reason=FailedCreate"
            try:
                found = self._items("Event", namespace, fieldSelector=selector)
            except ApiException as err:  # e.g. RBAC without `list events`: the run still progresses, less told
                log.warning("cannot list FailedCreate events in %s: %s", namespace, failure_of(err).describe())
                return events
            with self._failed_lock:
                self._failed_reads[uid] = (now, found)
                self._failed_reads.move_to_end(uid)
                while self._failed_reads and now - next(iter(self._failed_reads.values()))[0] > FAILED_CREATE_FORGET:
                    self._failed_reads.popitem(last=False)  # Jobs deleted while waiting
            events += found
        return events

    def failed_creates_due(self, jobs: list[dict[str, Any]]) -> float | None:
        """Seconds until _failed_creates would send a request for one of these Jobs (None: none waits)."""
        due: float | None = None
        now = time.monotonic()
        for job in jobs:
            if not awaits_pod(job):
                continue
            with self._failed_lock:
                last = self._failed_reads.get(_job_key(job))
            wait = FAILED_CREATE_AFTER - _age_seconds(job)
            if last is not None:
                wait = max(wait, FAILED_CREATE_EVERY - (now - last[0]))
            due = max(wait, 0.0) if due is None else min(due, max(wait, 0.0))
        return due

    def _workloads(self, run: Run, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Kueue Workloads of the run's unfinished Jobs: why they wait, and the Workload to deactivate for
        spec.suspend (best effort: without Kueue's CRD or the RBAC to read it, status says less and a
        suspension suspends the Job itself)."""
        if run.queue_name is None:
            return []
        found: list[dict[str, Any]] = []
        for job in jobs:
            uid = job["metadata"].get("uid")
            conditions = (job.get("status") or {}).get("conditions") or []
            if not uid or any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
            ):
                continue
            try:
                found += self._items("Workload", run.ref.namespace, labelSelector=f"{JOB_UID_LABEL}={uid}")
            except (ApiException, HTTPError, OSError) as err:
                log.debug("cannot read Kueue workloads in %s: %s", run.ref.namespace, failure_of(err).describe())
                return found
        return found

    def log_tail(self, namespace: str, pod: str, lines: int = 20) -> str | None:
        """Best effort: a fake kubelet (kwok) or a rotated log simply yields no progress."""
        try:
            return self.rest.text(KINDS["Pod"].path(namespace, pod, "log"), query={"tailLines": lines}, timeout=5)
        except (ApiException, HTTPError, OSError, ValueError) as err:
            log.debug("no log for %s/%s: %s", namespace, pod, err)
            return None

    # -- writes ------------------------------------------------------------------------------------
    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        if self.cache is not None and obj["kind"] in self.cache.informers:
            # The cache may lag our own last create: then the apiserver says 409, and nothing is duplicated.
            if self.cache.get(obj["kind"], meta["namespace"], meta["name"]) is not None:
                return False
        elif self._get(obj["kind"], meta["namespace"], meta["name"]) is not None:
            return False
        try:
            query = {"fieldManager": FIELD_MANAGER}
            created = self._call("POST", obj["kind"], meta["namespace"], body=obj, query=query)
        except ApiException as err:
            if err.status == 409:  # a concurrent reconcile won the race: same deterministic name, no duplicate
                return False
            raise
        if self.cache is not None:
            self.cache.put(obj["kind"], created)
        return True

    def apply(self, obj: dict[str, Any]) -> bool:
        """Server-side apply, unless the cached object already holds every applied field (then no write)."""
        meta = obj["metadata"]
        if self.cache is not None and obj["kind"] in self.cache.informers:
            cached = self.cache.get(obj["kind"], meta["namespace"], meta["name"])
            if cached is not None and contains({k: v for k, v in obj.items() if k != "kind"}, cached):
                return False
        applied = self._call(
            "PATCH",
            obj["kind"],
            meta["namespace"],
            meta["name"],
            body=obj,
            content_type=APPLY_PATCH,
            query={"fieldManager": FIELD_MANAGER, "force": True},
        )
        if self.cache is not None:
            self.cache.put(obj["kind"], applied)
        return True

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", kind, namespace, name, body={"propagationPolicy": "Background"})
        except ApiException as err:
            if err.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        patched = self._call(
            "PATCH",
            KIND,
            namespace,
            name,
            sub="status",
            body={"status": status},
            content_type=MERGE_PATCH,
            query={"fieldManager": FIELD_MANAGER},
        )
        if self.runs is not None and isinstance(patched, dict):
            self.runs.update(patched)

    def post_event(self, run: Run, event: Event) -> None:
        now = timestamp(datetime.now(UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{run.ref.name}.", "namespace": run.ref.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": run.ref.name,
                "namespace": run.ref.namespace,
                "uid": run.ref.uid,
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
        }
        try:
            self._call("POST", "Event", run.ref.namespace, body=body)
        except (ApiException, HTTPError, OSError) as err:  # events are best effort; never fail a reconcile on them
            log.warning("could not post event %s for %s: %s", event.reason, run.ref.name, err)

    def execute_children(self, plan: Plan) -> tuple[ChildRejection | None, bool]:
        """Create/apply the plan's children in its (dependency) order and stop at the first one the apiserver
        refuses: what depends on it is not created. Transient failures are retried, then raise. Returns the
        refusal, if any, and whether anything was written."""
        wrote = False
        for op, obj in plan.ops:
            what = f"{op} {obj['kind']} {obj['metadata']['name']}"
            try:
                call = functools.partial(self.create_if_absent if op == CREATE else self.apply, obj)
                wrote = bool(with_retries(what, call)) or wrote
            except ApiException as err:
                failure = failure_of(err)
                if not failure.refused:
                    raise
                log.warning("%s refused: %s", what, failure.describe())
                return ChildRejection(obj["kind"], obj["metadata"]["name"], stage_of(obj), failure), True
        return None, wrote

    def execute(self, run: Run, plan: Plan, old_status: dict[str, Any]) -> bool:
        """Apply a plan (children, deletions, then status and events); returns whether status changed.
        The caller handles a refused child (see reconcile)."""
        for kind, name in plan.delete:
            self.delete(kind, run.ref.namespace, name)
        new_status = plan.status.model_dump(mode="json", by_alias=True)
        changed = bool(_strip(new_status) != _strip(old_status))
        if changed:
            self.patch_status(run.ref.namespace, run.ref.name, new_status)
            for event in plan.events:
                self.post_event(run, event)
        return changed


#: How old a podless Job must be before its FailedCreate events are worth a request; how long one read of
#: them stands; when the read of a Job that no reconcile asked about since (deleted meanwhile) is forgotten.
FAILED_CREATE_AFTER = 3.0
FAILED_CREATE_EVERY = 10.0
FAILED_CREATE_FORGET = 10 * FAILED_CREATE_EVERY


def _age_seconds(obj: dict[str, Any]) -> float:
    """Since creation; an object without a readable creationTimestamp counts as old (it is asked about)."""
    age = seconds_between((obj.get("metadata") or {}).get("creationTimestamp"), timestamp(datetime.now(UTC)))
    return float("inf") if age is None else age


def _job_key(job: dict[str, Any]) -> str:
    """A Job's FailedCreate read is kept by uid (a recreated namesake is another Job)."""
    return str(job["metadata"].get("uid") or job["metadata"]["name"])


def awaits_pod(job: dict[str, Any]) -> bool:
    """A Job with no pod and no outcome yet: only its FailedCreate events (not cached) can say why."""
    status = job.get("status") or {}
    return not (status.get("active") or status.get("succeeded") or status.get("conditions"))


def _of_ray_job(pod: dict[str, Any], ray_jobs: list[dict[str, Any]]) -> bool:
    """A pod KubeRay made for the run's RayJob (head, workers, submitter: they carry the run's labels from our
    templates) and not older than it: the owners in between (RayCluster, submitter Job) are KubeRay's."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    return labels.get(STAGE_LABEL) == Stage.CURATION.value and any(
        created >= str(r["metadata"].get("creationTimestamp") or "") for r in ray_jobs
    )


def _is_serving(pod: dict[str, Any]) -> bool:
    return bool(((pod.get("metadata") or {}).get("labels") or {}).get("reasoning-operator.dev/stage") == "serving")


def _strip(value: Any) -> Any:
    """Compare statuses ignoring nulls (merge-patch nulls delete keys, so they never round-trip)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
