"""The only module that talks to the apiserver: list a run's children, apply the plan, patch status,
post events. One field manager, server-side apply for what we own, create-if-absent for immutable
children (Jobs, PVCs)."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from urllib3.exceptions import HTTPError

from reasoning_operator.api import GROUP, KIND, PLURAL, VERSION

from .core.decide import CREATE, Event, Plan
from .core.rejection import ApiFailure, ChildRejection, parse_failure, stage_of
from .core.run import RUN_LABEL, Run

FIELD_MANAGER = "reasoning-operator"
log = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Service": "v1",
    "Pod": "v1",
    "Job": "batch/v1",
    "Deployment": "apps/v1",
    "Event": "v1",
}
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


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config inside a pod, else the given or default kubeconfig."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


@dataclass
class Children:
    claim: dict[str, Any] | None
    config_map: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    deployment: dict[str, Any] | None
    service: dict[str, Any] | None
    job_events: list[dict[str, Any]]


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _resource(self, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=KINDS[kind], kind=kind)

    # -- reads -------------------------------------------------------------------------------------
    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = cast(
                dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return obj

    def list_runs(self, namespaces: list[str] | None) -> list[tuple[str, str]]:
        """(namespace, name) of every run in the watched namespaces (all when None)."""
        listed: list[dict[str, Any]]
        if namespaces is None:
            listed = [cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))]
        else:
            listed = [
                cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL))
                for ns in namespaces
            ]
        return [(item["metadata"]["namespace"], item["metadata"]["name"]) for page in listed for item in page["items"]]

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._resource(kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        return obj

    def _list(self, kind: str, namespace: str, run: str) -> list[dict[str, Any]]:
        result = self._resource(kind).get(namespace=namespace, label_selector=f"{RUN_LABEL}={run}")
        return [item.to_dict() for item in result.items]

    def children(self, run: Run) -> Children:
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
        )

    def _failed_creates(self, namespace: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """FailedCreate events of Jobs that have no active pod: how a pod refused by the apiserver (Pod
        Security, quota, an invalid image) shows; the Job's own status says nothing about it."""
        events: list[dict[str, Any]] = []
        for job in jobs:
            status = job.get("status") or {}
            if status.get("active") or status.get("succeeded") or status.get("conditions"):
                continue
            selector = f"involvedObject.kind=Job,involvedObject.name={job['metadata']['name']},reason=FailedCreate"
            try:
                found = self._resource("Event").get(namespace=namespace, field_selector=selector)
            except ApiException as err:  # e.g. RBAC without `list events`: the run still progresses, less told
                log.warning("cannot list FailedCreate events in %s: %s", namespace, failure_of(err).describe())
                return events
            events += [item.to_dict() for item in found.items]
        return events

    def log_tail(self, namespace: str, pod: str, lines: int = 20) -> str | None:
        """Best effort: a fake kubelet (kwok) or a rotated log simply yields no progress."""
        try:
            text: str = self.core.read_namespaced_pod_log(pod, namespace, tail_lines=lines, _request_timeout=5)
        except (ApiException, OSError, ValueError) as err:
            log.debug("no log for %s/%s: %s", namespace, pod, err)
            return None
        return text

    # -- writes ------------------------------------------------------------------------------------
    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        if self._get(obj["kind"], meta["namespace"], meta["name"]) is not None:
            return False
        try:
            self._resource(obj["kind"]).create(body=obj, namespace=meta["namespace"])
        except ApiException as err:
            if err.status == 409:  # a concurrent reconcile won the race: same deterministic name, no duplicate
                return False
            raise
        return True

    def apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self._resource(obj["kind"]).server_side_apply(
            body=obj, name=meta["name"], namespace=meta["namespace"], field_manager=FIELD_MANAGER, force_conflicts=True
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFoundError):
            self._resource(kind).delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}, field_manager=FIELD_MANAGER
        )

    def post_event(self, run: Run, event: Event) -> None:
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{run.ref.name}.", namespace=run.ref.namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=run.ref.name,
                namespace=run.ref.namespace,
                uid=run.ref.uid,
            ),
            reason=event.reason,
            message=event.message[:1024],
            type=event.type,
            source=client.V1EventSource(component=FIELD_MANAGER),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=FIELD_MANAGER,
            reporting_instance=FIELD_MANAGER,
        )
        try:
            self.core.create_namespaced_event(run.ref.namespace, body)
        except ApiException as err:  # events are best effort; never fail a reconcile on them
            log.warning("could not post event %s for %s: %s", event.reason, run.ref.name, err)

    def execute_children(self, plan: Plan) -> ChildRejection | None:
        """Create/apply the plan's children in its (dependency) order and stop at the first one the apiserver
        refuses: what depends on it is not created. Transient failures are retried, then raise."""
        for op, obj in plan.ops:
            what = f"{op} {obj['kind']} {obj['metadata']['name']}"
            try:
                call = functools.partial(self.create_if_absent if op == CREATE else self.apply, obj)
                with_retries(what, call)
            except ApiException as err:
                failure = failure_of(err)
                if not failure.refused:
                    raise
                log.warning("%s refused: %s", what, failure.describe())
                return ChildRejection(obj["kind"], obj["metadata"]["name"], stage_of(obj), failure)
        return None

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


def _strip(value: Any) -> Any:
    """Compare statuses ignoring nulls (merge-patch nulls delete keys, so they never round-trip)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
