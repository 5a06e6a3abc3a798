"""What the operator saw of a run's children, reduced to the facts the core decides on.

The shell lists the children (raw API dicts); `observe()` parses them here, purely, so the parsing is unit
tested with plain dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoning_operator.api import CurationProgress, Stage, TrainingProgress
from reasoning_operator.api.contract import Progress, parse_progress_line

from .run import STAGE_LABEL
from .stage_cache import CacheSource, sources


@dataclass(frozen=True)
class JobObs:
    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_final: bool = False
    failure_reason: str | None = None
    failure_message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    created: str | None = None
    #: The newest FailedCreate message the Job controller posted for this Job (Pod Security, quota, …).
    create_failure: str | None = None
    #: spec.suspend of the Job (set by spec.suspend, or by Kueue until it admits the Job).
    suspended: bool = False
    #: Why Kueue has not admitted the Job yet: its Workload's QuotaReserved/Admitted condition message.
    admission_message: str | None = None
    #: When the Job controller last marked the Job resumed (its Suspended condition turned False).
    resumed_at: str | None = None
    #: Its Kueue Workload, when read: name, spec.active, and whether the operator deactivated it.
    workload: str | None = None
    workload_active: bool = True
    workload_held: bool = False


@dataclass(frozen=True)
class PodObs:
    name: str
    phase: str
    created: str | None = None
    unschedulable: str | None = None
    termination_message: str | None = None
    waiting_reason: str | None = None
    #: Why the kubelet says the container ended (``OOMKilled``, ``Error``, ``Completed``), newest run first.
    terminated_reason: str | None = None


@dataclass(frozen=True)
class DeploymentObs:
    name: str
    replicas: int = 0
    ready: int = 0
    available: int = 0
    failed_message: str | None = None
    created: str | None = None


@dataclass(frozen=True)
class Observed:
    claim_exists: bool = False
    claim_phase: str | None = None
    config_map_exists: bool = False
    jobs: dict[Stage, JobObs] = field(default_factory=dict)
    pods: dict[Stage, list[PodObs]] = field(default_factory=dict)
    deployment: DeploymentObs | None = None
    service_exists: bool = False
    training_progress: TrainingProgress | None = None
    curation_progress: CurationProgress | None = None
    #: spec.cache: the finished cached stages of the other runs in the namespace (stage_cache.sources).
    cache_sources: tuple[CacheSource, ...] = ()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _create_failure(job: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The newest FailedCreate event about this very Job (same uid: not a deleted namesake's)."""
    meta = job.get("metadata") or {}
    mine = [
        e
        for e in events
        if e.get("reason") == "FailedCreate"
        and (e.get("involvedObject") or e.get("involved_object") or {}).get("name") == meta.get("name")
        and (e.get("involvedObject") or e.get("involved_object") or {}).get("uid") in (None, meta.get("uid"))
    ]
    if not mine:
        return None
    newest = max(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return str(newest.get("message") or "FailedCreate")


#: The label Kueue puts on a Workload naming the uid of the Job it stands for.
WORKLOAD_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"


#: Set by the operator on a Workload it deactivated for spec.suspend ("true"), so that it reactivates only those.
HELD_ANNOTATION = "reasoning-operator.dev/held-by-suspend"


def find_workload(job: dict[str, Any], workloads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Kueue Workload standing for this Job: by its job-uid label or its owner reference."""
    uid = (job.get("metadata") or {}).get("uid")
    if uid is None:
        return None
    for wl in workloads:
        meta = wl.get("metadata") or {}
        owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if (meta.get("labels") or {}).get(WORKLOAD_JOB_UID_LABEL) == uid or uid in owners:
            return wl
    return None


def admission_message(job: dict[str, Any], workloads: list[dict[str, Any]]) -> str | None:
    """What Kueue says about admitting this Job: the message of its Workload's first condition that is not
    True among QuotaReserved and Admitted (e.g. "couldn't assign flavors to pod set main: insufficient quota
    for nvidia.com/gpu …")."""
    wl = find_workload(job, workloads)
    if wl is None:
        return None
    conditions = {c.get("type"): c for c in (wl.get("status") or {}).get("conditions") or []}
    for kind in ("QuotaReserved", "Admitted"):
        cond = conditions.get(kind)
        if cond is not None and cond.get("status") != "True" and cond.get("message"):
            return str(cond["message"])
    return None


def _workload_facts(wl: dict[str, Any] | None) -> dict[str, Any]:
    if wl is None:
        return {}
    meta = wl.get("metadata") or {}
    return {
        "workload": meta.get("name"),
        "workload_active": (wl.get("spec") or {}).get("active") is not False,
        "workload_held": (meta.get("annotations") or {}).get(HELD_ANNOTATION) == "true",
    }


def _resumed_at(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Suspended" and cond.get("status") == "False":
            return str(cond.get("lastTransitionTime") or "") or None
    return None


def job_obs(
    job: dict[str, Any], events: list[dict[str, Any]] | None = None, workloads: list[dict[str, Any]] | None = None
) -> JobObs:
    status = job.get("status") or {}
    failed = _condition(job, "Failed")
    return JobObs(
        name=job["metadata"]["name"],
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=_condition(job, "Complete") is not None,
        failed_final=failed is not None,
        failure_reason=failed.get("reason") if failed else None,
        failure_message=failed.get("message") if failed else None,
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        created=job["metadata"].get("creationTimestamp"),
        create_failure=_create_failure(job, events or []),
        suspended=bool((job.get("spec") or {}).get("suspend")),
        admission_message=admission_message(job, workloads or []),
        resumed_at=_resumed_at(job),
        **_workload_facts(find_workload(job, workloads or [])),
    )


#: RayJob jobDeploymentStatus values after which KubeRay does nothing more (retries happen before them).
_RAY_FAILED = ("Failed", "ValidationFailed")


def ray_job_obs(ray_job: dict[str, Any]) -> JobObs:
    """A KubeRay RayJob seen as a Job: Complete only with jobStatus SUCCEEDED, Failed once KubeRay gives up
    (after its own backoffLimit); the reason/message are KubeRay's."""
    status = ray_job.get("status") or {}
    deployment = status.get("jobDeploymentStatus")
    job_status = status.get("jobStatus")
    complete = deployment == "Complete" and job_status == "SUCCEEDED"
    failed = deployment in _RAY_FAILED or (deployment == "Complete" and job_status not in (None, "SUCCEEDED"))
    return JobObs(
        name=ray_job["metadata"]["name"],
        active=1 if deployment in ("Initializing", "Running", "Retrying", "Waiting") else 0,
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=complete,
        failed_final=failed,
        failure_reason=(status.get("reason") or f"RayJob{job_status or deployment}") if failed else None,
        failure_message=status.get("message") if failed else None,
        start_time=status.get("startTime"),
        completion_time=status.get("endTime") if complete else None,
        created=ray_job["metadata"].get("creationTimestamp"),
    )


def pod_obs(pod: dict[str, Any]) -> PodObs:
    status = pod.get("status") or {}
    unschedulable = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            unschedulable = cond.get("message") or cond.get("reason") or "Unschedulable"
    message = None
    waiting = None
    terminated = None
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"].get("message"):
            message = state["terminated"]["message"]
        if "waiting" in state:
            waiting = state["waiting"].get("reason")
        # A restarted container's previous end is in lastState; the current one wins when both are there.
        for ended in ((cs.get("lastState") or {}).get("terminated"), state.get("terminated")):
            if ended and ended.get("reason"):
                terminated = ended["reason"]
    return PodObs(
        name=pod["metadata"]["name"],
        phase=status.get("phase") or "Pending",
        created=pod["metadata"].get("creationTimestamp"),
        unschedulable=unschedulable,
        termination_message=message,
        waiting_reason=waiting,
        terminated_reason=terminated,
    )


def deployment_obs(deployment: dict[str, Any]) -> DeploymentObs:
    status = deployment.get("status") or {}
    failed = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failed = cond.get("message") or "ProgressDeadlineExceeded"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            failed = cond.get("message") or "ReplicaFailure"
    return DeploymentObs(
        name=deployment["metadata"]["name"],
        replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        failed_message=failed,
        created=deployment["metadata"].get("creationTimestamp"),
    )


def parse_progress(log_tail: str) -> TrainingProgress | None:
    """The last progress line a training job printed (the contract's `progress_line`), if any."""
    return _last_progress(log_tail, TrainingProgress)


def _last_progress(log_tail: str, kind: type[Progress]) -> Progress | None:
    for line in reversed(log_tail.splitlines()):
        progress = parse_progress_line(line, kind)
        if progress is not None:
            return progress
    return None


def curation_progress(log_tail: str | None, ray_jobs: list[dict[str, Any]]) -> CurationProgress | None:
    """Blocks from the curation pod's last progress line; on a KubeRay cluster, the workers KubeRay counts
    ready and wants (the RayJob's ``rayClusterStatus``), which are known before the first block is."""
    progress = _last_progress(log_tail, CurationProgress) if log_tail else None
    cluster = next(
        ((r.get("status") or {}).get("rayClusterStatus") for r in ray_jobs if _stage_of(r) == Stage.CURATION), None
    )
    if not cluster:
        return progress
    workers = {
        "workers_ready": int(cluster.get("readyWorkerReplicas") or 0),
        "workers_desired": int(cluster.get("desiredWorkerReplicas") or 0),
    }
    if progress is None:
        return CurationProgress(blocks_done=0, blocks_total=0, **workers)
    return progress.model_copy(update=workers)


def _stage_of(obj: dict[str, Any]) -> Stage | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(STAGE_LABEL)
    try:
        return Stage(value) if value else None
    except ValueError:
        return None


def observe(
    *,
    claim: dict[str, Any] | None,
    config_map: dict[str, Any] | None,
    jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    deployment: dict[str, Any] | None,
    service: dict[str, Any] | None,
    training_log_tail: str | None = None,
    curation_log_tail: str | None = None,
    job_events: list[dict[str, Any]] | None = None,
    workloads: list[dict[str, Any]] | None = None,
    namespace_runs: list[dict[str, Any]] | None = None,
    ray_jobs: list[dict[str, Any]] | None = None,
) -> Observed:
    job_map = {stage: job_obs(j, job_events, workloads) for j in jobs if (stage := _stage_of(j)) is not None}
    # A run's curation is a Job or (spec.curation.cluster) a RayJob; the RayJob is read as that stage's Job.
    job_map.update({stage: ray_job_obs(r) for r in ray_jobs or [] if (stage := _stage_of(r)) is not None})
    pod_map: dict[Stage, list[PodObs]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        stage = _stage_of(pod)
        if stage is not None:
            pod_map.setdefault(stage, []).append(pod_obs(pod))
    return Observed(
        claim_exists=claim is not None,
        claim_phase=((claim or {}).get("status") or {}).get("phase"),
        config_map_exists=config_map is not None,
        jobs=job_map,
        pods=pod_map,
        deployment=deployment_obs(deployment) if deployment else None,
        service_exists=service is not None,
        training_progress=parse_progress(training_log_tail) if training_log_tail else None,
        curation_progress=curation_progress(curation_log_tail, ray_jobs or []),
        cache_sources=sources(namespace_runs or []),
    )
