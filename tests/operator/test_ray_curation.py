"""spec.curation.cluster: the curation child becomes a KubeRay RayJob (pure builder and decide); without it,
nothing changes."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.controlplane import REPO_ROOT

from reasoning_operator.api import (
    CurationCluster,
    CurationProgress,
    CurationStageConfig,
    Phase,
    StagePhase,
    stage_configs,
)
from reasoning_operator.api.contract import progress_line
from reasoning_operator.core import builders, stage_cache
from reasoning_operator.core.builders.ray import RAY_VERSION
from reasoning_operator.core.decide import decide
from reasoning_operator.core.observe import observe, ray_job_obs
from reasoning_operator.core.run import Run

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
CLUSTER = {
    "workers": 3,
    "workerResources": {"cpu": "6", "memory": "24Gi"},
    "headResources": {"cpu": "1", "memory": "4Gi"},
}
CURATION = {"samplesRead": 100, "samplesWritten": 80, "dropped": {"language": 20}}
LABELS = {"reasoning-operator.dev/stage": "curation"}


def _run(make_run: Any, cluster: dict[str, Any] | None = CLUSTER) -> Run:
    return Run.from_object(make_run(spec={"curation": {"cluster": cluster}} if cluster else {}))


def _pods(ray_job: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = ray_job["spec"]["rayClusterSpec"]
    return [
        cluster["headGroupSpec"]["template"]["spec"],
        *(g["template"]["spec"] for g in cluster["workerGroupSpecs"]),
        ray_job["spec"]["submitterPodTemplate"]["spec"],
    ]


def test_without_a_cluster_curation_stays_the_single_pod_job(make_run: Any) -> None:
    run = _run(make_run, cluster=None)
    assert builders.build_curation(run) == builders.build_curation_job(run)
    assert builders.build_curation(run)["kind"] == "Job"
    with pytest.raises(ValueError, match=r"spec\.curation\.cluster"):
        builders.build_curation_rayjob(run)


def test_the_ray_job_runs_the_same_cli_and_config_on_a_sized_cluster(make_run: Any) -> None:
    run = _run(make_run)
    rj = builders.build_curation(run)
    assert (rj["apiVersion"], rj["kind"], rj["metadata"]["name"]) == ("ray.io/v1", "RayJob", "demo-curation")
    assert rj["metadata"]["ownerReferences"][0]["uid"] == "0123456789abcdef"  # deleting the run deletes it
    job_args = builders.build_curation_job(run)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert rj["spec"]["entrypoint"] == "reasoning " + " ".join(job_args)
    assert rj["spec"]["shutdownAfterJobFinishes"] is True and rj["spec"]["ttlSecondsAfterFinished"] > 0
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]
    (workers,) = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 3
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "6", "memory": "24Gi"}
    assert head["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}
    assert head["rayStartParams"]["num-cpus"] == "0"
    for pod in _pods(rj)[:2]:
        (c,) = pod["containers"]
        assert c["image"] == run.spec.images.curation
        assert "command" not in c  # KubeRay writes `ray start`
        assert {"workspace", "config", "dshm"} <= {m["name"] for m in c["volumeMounts"]}
    assert builders.build_curation(run) == rj  # pure and deterministic


def test_the_submitter_hands_the_summary_over_as_its_termination_message(make_run: Any) -> None:
    run = _run(make_run)
    (sub,) = builders.build_curation(run)["spec"]["submitterPodTemplate"]["spec"]["containers"]
    script = sub["command"][-1]  # a command of our own: KubeRay keeps it (configureSubmitterContainer)
    assert '--submission-id "$RAY_JOB_SUBMISSION_ID"' in script
    assert f"{run.run_dir}/curated/summary.json" in script and "/dev/termination-log" in script
    assert script.index('s != "SUCCEEDED"') < script.index("/dev/termination-log")


def test_every_ray_pod_satisfies_restricted_pod_security(make_run: Any) -> None:
    for pod in _pods(builders.build_curation(_run(make_run))):
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["containers"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_ray_container_has_scratch_space(make_run: Any) -> None:
    for c in _ray_containers(builders.build_curation(_run(make_run))):
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_cluster_needs_one_worker_at_least() -> None:
    with pytest.raises(ValidationError):
        CurationCluster(workers=0)


def test_the_job_config_says_it_runs_on_a_cluster(make_run: Any) -> None:
    run = _run(make_run)
    config = stage_configs(run.spec, run.run_dir, "http://x:8000").curation
    again = CurationStageConfig.model_validate(config.to_wire())
    assert again.curation.cluster == CurationCluster.model_validate(CLUSTER)


def _ray_job(deployment: str | None, job_status: str | None = None, **extra: Any) -> dict[str, Any]:
    status = {k: v for k, v in {"jobDeploymentStatus": deployment, "jobStatus": job_status}.items() if v}
    return {"metadata": {"name": "demo-curation", "labels": LABELS}, "status": status | extra}


def _submitter_pod(message: str | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message}} if message else {"terminated": {"exitCode": 0}}
    return {
        "metadata": {"name": "demo-curation-abcde", "creationTimestamp": "2026-11-27T11:00:01Z", "labels": LABELS},
        "status": {"phase": "Succeeded", "containerStatuses": [{"state": state}]},
    }


def _step(
    run: Run, ray_jobs: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None, log: str | None = None
) -> Any:
    observed = observe(
        claim=None,
        config_map=None,
        jobs=[],
        pods=pods or [],
        deployment=None,
        service=None,
        ray_jobs=ray_jobs,
        curation_log_tail=log,
    )
    return decide(run, observed, NOW)


def test_decide_creates_the_ray_job_once_and_reads_its_status(make_run: Any) -> None:
    run = _run(make_run)
    first = _step(run, [])
    assert [o["kind"] for o in first.create if o["metadata"]["name"] == "demo-curation"] == ["RayJob"]
    running = _step(run, [_ray_job("Running", "RUNNING")])
    assert not [o for o in running.create if o["kind"] in ("RayJob", "Job")]
    assert running.status.stages.curation.phase == StagePhase.RUNNING
    done = _step(run, [_ray_job("Complete", "SUCCEEDED")], [_submitter_pod(json.dumps(CURATION))])
    assert done.status.stages.curation.phase == StagePhase.SUCCEEDED
    assert done.status.curation is not None and done.status.curation.samples_written == 80
    assert [o["kind"] for o in done.create if o["metadata"]["name"] == "demo-training"] == ["Job"]


def _next(
    obj: dict[str, Any],
    ray_jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]] | None = None,
    log: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`_step` on the run as an object; with the status it wrote, as the next reconcile reads it."""
    plan = _step(Run.from_object(obj), ray_jobs, pods, log)
    return plan, {**obj, "status": plan.status.to_wire()}


def _cluster(ready: int, desired: int = 3) -> dict[str, Any]:
    return {"rayClusterStatus": {"readyWorkerReplicas": ready, "desiredWorkerReplicas": desired}}


def test_status_shows_the_ray_workers_then_the_blocks_then_all_blocks_once_done(make_run: Any) -> None:
    """Workers from the RayJob's rayClusterStatus (known before any block), blocks from the submitter's log (it
    follows the driver's), and all of them once the result is in."""
    obj = make_run(spec={"curation": {"cluster": CLUSTER}})
    plan, obj = _next(obj, [_ray_job("Initializing", **_cluster(1))])
    assert plan.status.curation_progress == CurationProgress(
        blocks_done=0, blocks_total=0, workers_ready=1, workers_desired=3
    )
    assert plan.status.progress == "1/3 Ray workers ready"
    line = progress_line(CurationProgress(blocks_done=5, blocks_total=8))
    log = f"curating 4 files (9.1 MB) in 8 blocks\n{line}\nRunning Dataset: 5/8\n"
    plan, obj = _next(obj, [_ray_job("Running", "RUNNING", **_cluster(3))], log=log)
    assert plan.status.curation_progress == CurationProgress(
        blocks_done=5, blocks_total=8, workers_ready=3, workers_desired=3
    )
    assert plan.status.progress == "blocks 5/8, 3/3 Ray workers ready"
    # A retried cluster's new submitter has printed no progress yet: the blocks seen stay.
    plan, obj = _next(obj, [_ray_job("Running", "RUNNING", **_cluster(2))], log="submitting")
    assert plan.status.curation_progress == CurationProgress(
        blocks_done=5, blocks_total=8, workers_ready=2, workers_desired=3
    )
    result = json.dumps(CURATION | {"blocks": 8})
    plan, obj = _next(obj, [_ray_job("Complete", "SUCCEEDED", **_cluster(0))], [_submitter_pod(result)])
    assert plan.status.stages.curation.phase == StagePhase.SUCCEEDED
    assert plan.status.curation_progress == CurationProgress(
        blocks_done=8, blocks_total=8, workers_ready=0, workers_desired=3
    )


def test_a_failed_ray_job_fails_the_run_with_kuberays_reason(make_run: Any) -> None:
    failed = _ray_job("Failed", "FAILED", reason="AppFailed", message="driver exited 1")
    plan = _step(_run(make_run), [failed])
    assert plan.status.phase == Phase.FAILED
    assert "AppFailed" in (plan.status.failure_reason or "") and "driver exited 1" in (plan.status.failure_reason or "")


def test_a_succeeded_ray_job_without_a_result_is_not_a_silent_success(make_run: Any) -> None:
    plan = _step(_run(make_run), [_ray_job("Complete", "SUCCEEDED")], [_submitter_pod(None)])
    assert plan.status.stages.curation.phase == StagePhase.FAILED
    assert "empty termination message" in (plan.status.stages.curation.message or "")


@pytest.mark.parametrize(
    ("deployment", "job_status", "complete", "failed"),
    [
        ("Initializing", None, False, False),
        ("Running", "RUNNING", False, False),
        ("Retrying", "FAILED", False, False),  # KubeRay is within its backoffLimit: not final
        ("Complete", "SUCCEEDED", True, False),
        ("Complete", "STOPPED", False, True),
        ("Failed", "FAILED", False, True),
        ("ValidationFailed", None, False, True),
    ],
)
def test_ray_job_states(deployment: str, job_status: str | None, complete: bool, failed: bool) -> None:
    obs = ray_job_obs(_ray_job(deployment, job_status))
    assert (obs.complete, obs.failed_final) == (complete, failed)


@pytest.mark.parametrize("claim", ["shared-cache", "demo-data"])
def test_with_the_stage_cache_the_submitter_reads_the_summary_where_curation_writes_it(
    make_run: Any, claim: str
) -> None:
    """spec.cache moves curation's output to the cache claim (its own, or a subPath of the run's claim): the
    submitter must mount that claim and read the summary from the directory the curation config names."""
    run = Run.from_object(
        make_run(spec={"curation": {"cluster": CLUSTER}, "cache": {"enabled": True, "claimName": claim}})
    )
    configs = stage_configs(run.spec, run.run_dir, "http://x", curated_dir=stage_cache.output_dirs(run)[0])
    assert configs.curation is not None
    curated = str(configs.curation.output_dir)
    assert curated.startswith("/cache/curation/")
    pod = builders.build_curation(run)["spec"]["submitterPodTemplate"]["spec"]
    (sub,) = pod["containers"]
    assert f"{curated}/summary.json" in sub["command"][-1]
    mounted = {m["mountPath"]: m["name"] for m in sub["volumeMounts"]}
    assert "/cache" in mounted and mounted["/cache"] in {v["name"] for v in pod["volumes"]}


def _ray_containers(ray_job: dict[str, Any]) -> list[dict[str, Any]]:
    """Head, workers and submitter: every container that talks to Ray."""
    return [c for pod in _pods(ray_job) for c in pod["containers"]]


def test_token_auth_is_kuberays_own_and_no_container_of_ours_sets_it(make_run: Any) -> None:
    """KubeRay v1.6.0 makes the token Secret and adds RAY_AUTH_MODE/RAY_AUTH_TOKEN where a container lacks them
    (SetContainerTokenAuthEnvVars): a value of ours would win over its Secret and lock its controller out."""
    rj = builders.build_curation(_run(make_run))
    spec = rj["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}
    for pod in _pods(rj):
        assert "initContainers" not in pod
        for c in pod["containers"]:
            assert not [e["name"] for e in c["env"] if e["name"].startswith("RAY_AUTH")], c["name"]


def test_the_ray_version_kuberay_checks_is_the_curation_images_ray() -> None:
    """KubeRay enables token auth only for a declared rayVersion >= 2.52; the image installs uv.lock's ray."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    (ray,) = [p["version"] for p in lock["package"] if p["name"] == "ray"]
    assert ray == RAY_VERSION
    assert tuple(int(x) for x in RAY_VERSION.split(".")[:2]) >= (2, 52)
